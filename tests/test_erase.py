"""Weight-level erasers (guard.erase): UCE, RECE, ESD, artifacts, apply/revert, CLI — on tiny models."""

from __future__ import annotations

import copy
import hashlib
import itertools
import types

import pytest
import torch

import guard.erase as ge
from guard.erase.uce import concept_rows, cross_attention_projections
from guard.errors import GuardError, GuardInputError
from guard.textenc import encode_hidden, pipeline_encoders

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(seed=0):
    from guard.pipelines.tiny import build_tiny_pipeline

    return build_tiny_pipeline(seed=seed)


def _unet(cross_dim, seed=0):
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=cross_dim,
            attention_head_dim=8,
            norm_num_groups=32,
        ).eval()


def _encoder(tok, hidden, seed):
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tok),
                hidden_size=hidden,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        ).eval()


@pytest.fixture(scope="module")
def pipe():
    return _tiny()


@pytest.fixture(scope="module")
def wide():
    """A tiny pipeline-like object with 256-dim text embeddings, so that the erased and preserved token
    rows (74 each) fit in the embedding space and the closed form can meet them all."""
    from guard.pipelines.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    return types.SimpleNamespace(unet=_unet(256), text_encoder=_encoder(tok, 256, 1), tokenizer=tok)


def state_hash(p) -> str:
    h = hashlib.sha256()
    for n, v in p.unet.state_dict().items():
        h.update(n.encode())
        h.update(v.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.fixture()
def clean(pipe):
    """The shared tiny pipe, guaranteed back to its original weights and empty stack afterwards."""
    before = state_hash(pipe)
    yield pipe
    while ge.erasure_stack(pipe):
        ge.revert_erasure(pipe)
    assert state_hash(pipe) == before


def _weights(unet):
    return {f"{n}.weight": m.weight.detach().double().clone() for n, m in cross_attention_projections(unet).items()}


def _rel(a, b):
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------------ UCE


def test_uce_erases_concepts_and_preserves_others(wide):
    concepts, guides, preserve = ["a cat", "a red car"], ["", "a horse"], ["a tree"]
    W0 = _weights(wide.unet)
    e = ge.erase(
        wide, concepts, guides=guides, preserve=preserve, lamb=1e-6, erase_scale=1e3, preserve_scale=1e3, apply=True
    )
    try:
        W1 = _weights(wide.unet)
        pairs, pres = concept_rows(pipeline_encoders(wide), concepts, guides, preserve)
        assert len(W1) == 8 and e.metadata["hyperparameters"]["layers"] == 8
        for name in W0:
            for C, G in pairs:
                assert _rel(W1[name] @ C.T, W0[name] @ G.T) <= 1e-3, name
            for P in pres:
                assert _rel(W1[name] @ P.T, W0[name] @ P.T) <= 1e-2, name
            # the concept really moved: before the edit it was far from the guide
            assert _rel(W0[name] @ pairs[0][0].T, W0[name] @ pairs[0][1].T) > 0.1
    finally:
        ge.revert_erasure(wide)
    assert all(torch.equal(W0[n], v) for n, v in _weights(wide.unet).items())


def test_uce_matches_the_per_layer_formula(clean):
    """The shared-factor solve equals the issue's formula solved layer by layer (float64)."""
    lamb, s_e, s_p = 0.1, 1.0, 0.5
    pairs, pres = concept_rows(pipeline_encoders(clean), ["a cat"], ["a dog"], ["a tree", "a red house"])
    W0 = _weights(clean.unet)
    ge.erase(
        clean,
        "a cat",
        guides="a dog",
        preserve=["a tree", "a red house"],
        lamb=lamb,
        erase_scale=s_e,
        preserve_scale=s_p,
        apply=True,
    )
    W1 = _weights(clean.unet)
    (C, G), (P1, P2) = pairs[0], pres
    d = C.shape[1]
    for name, W in W0.items():
        rhs = lamb * W + s_e * (W @ G.T) @ C + s_p * (W @ P1.T) @ P1 + s_p * (W @ P2.T) @ P2
        M = lamb * torch.eye(d, dtype=torch.float64) + s_e * C.T @ C + s_p * (P1.T @ P1 + P2.T @ P2)
        expected = torch.linalg.solve(M, rhs.T).T  # M symmetric: W' M = rhs
        assert _rel(W1[name], expected) < 1e-6, name


def test_uce_token_selection_and_low_rank_storage(clean, tmp_path):
    """A long concept leaves few trailing rows: the delta is stored as exact low-rank factors."""
    long = " ".join(["a red house with a big tree and a dog"] * 6)
    pairs, _ = concept_rows(pipeline_encoders(clean), [long, "a cat"], ["", ""], [])
    n_tokens = len(clean.tokenizer(long).input_ids)
    assert pairs[0][0].shape[0] == 77 - (n_tokens - 2)  # last subject token .. end of sequence
    assert pairs[1][0].shape[0] == 77 - (len(clean.tokenizer("a cat").input_ids) - 2)
    e = ge.erase(clean, long, out=tmp_path / "long.safetensors")
    assert e.up and not e.full and set(e.lowrank.values()) == {"0"}
    info = ge.erasure_info(tmp_path / "long.safetensors")
    assert info["stored"]["low_rank"] == 8 and info["stored"]["bytes"] < 8 * 64 * 32 * 4


def test_uce_sdxl_two_encoders_concatenated():
    from guard.erase.uce import concept_rows as rows
    from guard.pipelines.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    te1, te2 = _encoder(tok, 32, 1), _encoder(tok, 32, 2)
    sdxl = types.SimpleNamespace(unet=_unet(64), text_encoder=te1, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok)
    encs = pipeline_encoders(sdxl)
    assert len(encs) == 2
    emb, _lens = encode_hidden(encs, ["a cat"], "penultimate")
    ids = tok(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        ref = torch.cat([te(ids, output_hidden_states=True).hidden_states[-2] for te in (te1, te2)], -1)
    assert emb.shape == (1, 77, 64) and torch.allclose(emb.float(), ref, atol=1e-6)
    W0 = _weights(sdxl.unet)
    e = ge.erase(sdxl, "a cat", apply=True, lamb=1e-3, erase_scale=10.0)
    assert e.metadata["hyperparameters"]["hidden_state"] == "penultimate"
    W1 = _weights(sdxl.unet)
    ((C, G),) = rows(encs, ["a cat"], [""], [], "penultimate")[0]
    for n in W0:
        before = _rel(W0[n] @ C.T, W0[n] @ G.T)
        after = _rel(W1[n] @ C.T, W0[n] @ G.T)
        assert after < 0.5 * before, n
    ge.revert_erasure(sdxl)
    assert all(torch.equal(W0[n], v) for n, v in _weights(sdxl.unet).items())


# ------------------------------------------------------------------------------------ RECE


def test_rece_regenerating_embedding_moves_away_epoch_by_epoch(wide):
    from guard.erase.rece import gram, regenerating_embedding, regeneration_error
    from guard.erase.uce import uce_factors

    e = ge.erase(wide, "a cat", method="rece", epochs=4, preserve=["a tree"])
    errs = e.metadata["hyperparameters"]["regeneration_error"]
    assert len(errs) == 4
    assert all(b > a for a, b in itertools.pairwise(errs)), errs
    # the first epoch's embedding is the closed form on the plain UCE edit
    pairs, pres = concept_rows(pipeline_encoders(wide), ["a cat"], [""], ["a tree"])
    lr = uce_factors(pairs, pres, lamb=0.1, erase_scale=1.0, preserve_scale=1.0)
    Q = gram(cross_attention_projections(wide.unet))
    C = pairs[0][0]
    c1 = regenerating_embedding(lr.K(), Q, C, 1e-3)
    assert regeneration_error(lr.K(), Q, c1, C) == pytest.approx(errs[0], rel=1e-9)
    # ... and it does reproduce the concept far better than the concept's own embedding does now
    assert regeneration_error(lr.K(), Q, C, C) > 2 * errs[0]


# ------------------------------------------------------------------------------------ ESD


def _eval_samples(unet, pipe, n=3):
    from guard.erase.esd import _scheduler, sample_xt

    emb, _ = encode_hidden(pipeline_encoders(pipe), ["a cat", ""])
    emb = emb.float()
    sched = _scheduler(dict(pipe.scheduler.config), 4)
    out = []
    for k in range(n):
        g = torch.Generator().manual_seed(100 + k)
        out.append(sample_xt(unet, sched, emb[:1], emb[1:], k % 4, 3.0, (1, 4, 8, 8), g, "cpu", torch.float32))
    return out, emb[:1], emb[1:]


def test_esd_x_loss_falls_and_only_cross_attention_changes(clean):
    from guard.erase.esd import esd_objective

    frozen = copy.deepcopy(clean.unet)
    samples, c, u = _eval_samples(frozen, clean)
    with torch.no_grad():
        before = sum(float(esd_objective(frozen, frozen, x, t, c, u, 1.0)) for x, t in samples)
    e = ge.erase(clean, "a cat", method="esd-x", iterations=20, lr=1e-3, ddim_steps=4, latent_size=8)
    assert e.params and all(".attn2." in f".{n}" for n in e.params)
    attn2 = [n for n, _ in clean.unet.named_parameters() if ".attn2." in f".{n}"]
    assert sorted(attn2) == e.params
    assert state_hash(types.SimpleNamespace(unet=frozen)) == state_hash(clean)  # erase() left it alone
    ge.apply_erasure(clean, e)
    with torch.no_grad():
        after = sum(float(esd_objective(clean.unet, frozen, x, t, c, u, 1.0)) for x, t in samples)
    assert after < 0.7 * before, (before, after)
    losses = e.metadata["hyperparameters"]["final_losses"]
    assert len(losses) == 10


def test_esd_u_trains_only_the_rest(clean):
    e = ge.erase(clean, "a cat", method="esd-u", iterations=2, lr=1e-3, ddim_steps=3, latent_size=8)
    assert e.params
    assert not any(".attn2." in f".{n}" or n.startswith("time_embedding") for n in e.params)
    assert any(n.startswith("down_blocks") for n in e.params) and any("conv_in" in n for n in e.params)


def test_esd_checkpoint_resumes_exactly(clean, tmp_path):
    kw = dict(method="esd-x", lr=1e-3, ddim_steps=3, latent_size=8, seed=7)
    full = ge.erase(clean, "a cat", iterations=4, **kw)
    ck = tmp_path / "esd.ckpt"
    ge.erase(clean, "a cat", iterations=2, checkpoint=ck, **kw)
    assert ck.is_file()
    resumed = ge.erase(clean, "a cat", iterations=4, checkpoint=ck, **kw)
    assert resumed.metadata["hyperparameters"]["resumed_from"] == 2
    assert resumed.params == full.params
    for n in full.params:
        assert torch.equal(full.full[n], resumed.full[n]), n
    with pytest.raises(GuardError, match="other settings"):
        ge.erase(clean, "a cat", iterations=5, checkpoint=ck, **dict(kw, lr=2e-3))


# ------------------------------------------------------------------------------------ artifacts


def test_artifact_round_trip(clean, tmp_path):
    from guard.erase.artifact import Erasure

    path = tmp_path / "cat.safetensors"
    W0 = {f"{n}.weight": m.weight.detach().clone() for n, m in cross_attention_projections(clean.unet).items()}
    e = ge.erase(clean, ["a cat", "a dog"], guides="a horse", preserve=["a tree"], out=path, lamb=0.2)
    back = Erasure.load(path)
    assert back.metadata == e.metadata
    assert back.params == e.params == sorted(W0)
    for n in e.full:
        assert torch.equal(back.full[n], e.full[n])
    info = ge.erasure_info(path)
    assert info["method"] == "uce" and info["concepts"] == ["a cat", "a dog"]
    assert info["guides"] == ["a horse", "a horse"] and info["preserved"] == ["a tree"]
    assert info["hyperparameters"]["lamb"] == 0.2 and info["hyperparameters"]["preserve_scale"] == 1.0
    assert info["base_fingerprint"] == ge.fingerprint(W0)
    assert set(info["versions"]) >= {"torch", "diffusers", "transformers", "safetensors", "guard"}
    assert info["elapsed_s"] > 0
    # the file and the in-memory erasure give the same weights
    ge.apply_erasure(clean, path)
    from_file = state_hash(clean)
    ge.revert_erasure(clean)
    ge.apply_erasure(clean, e)
    assert state_hash(clean) == from_file
    entry = ge.applied_erasures(clean)[-1]
    assert entry["method"] == "uce" and entry["mode"] == "chained"


def test_fingerprint_mismatch_refused(clean, tmp_path):
    other = _tiny(seed=1)
    path = tmp_path / "seed1.safetensors"
    e = ge.erase(other, "a cat", out=path)
    before = state_hash(clean)
    with pytest.raises(GuardError) as ei:
        ge.apply_erasure(clean, path)
    msg = str(ei.value)
    have = ge.fingerprint({n: p.detach() for n, p in clean.unet.named_parameters() if n in e.params})
    assert e.base_fingerprint in msg and have in msg and str(path) in msg
    assert state_hash(clean) == before and not ge.erasure_stack(clean)


def test_revert_is_bit_identical_and_strength_scales(clean, tmp_path):
    path = tmp_path / "cat.safetensors"
    ge.erase(clean, "a cat", out=path)
    base = state_hash(clean)
    W0 = _weights(clean.unet)
    ge.apply_erasure(clean, path, strength=0.5)
    Wh = _weights(clean.unet)
    ge.revert_erasure(clean)
    assert state_hash(clean) == base
    ge.apply_erasure(clean, path)
    W1 = _weights(clean.unet)
    for n in W0:
        assert torch.allclose(Wh[n], (W0[n] + W1[n]) / 2, atol=1e-6)
    ge.revert_erasure(clean)
    assert state_hash(clean) == base
    with pytest.raises(GuardError, match="nothing to revert"):
        ge.revert_erasure(clean)


def test_two_artifacts_stack_in_order(clean, tmp_path):
    a, b, b_indep = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "bi.safetensors"
    base = state_hash(clean)
    ge.erase(clean, "a cat", out=a)
    ge.erase(clean, "a dog", method="rece", epochs=1, out=b_indep)  # made from the base too
    ge.apply_erasure(clean, a)
    after_a = state_hash(clean)
    ge.erase(clean, "a dog", out=b)  # made on top of a
    ge.revert_erasure(clean)
    with pytest.raises(GuardError, match="fingerprint"):
        ge.apply_erasure(clean, b)  # b belongs after a
    assert state_hash(clean) == base
    ge.apply_erasure(clean, a)
    ge.apply_erasure(clean, b)
    stack = ge.applied_erasures(clean)
    assert [s["path"] for s in stack] == [str(a), str(b)] and [s["mode"] for s in stack] == ["chained"] * 2
    ge.revert_erasure(clean)
    assert state_hash(clean) == after_a
    ge.apply_erasure(clean, b_indep)  # independent of a: its delta is added on top
    assert ge.applied_erasures(clean)[-1]["mode"] == "independent"
    ge.revert_erasure(clean)
    ge.revert_erasure(clean)
    assert state_hash(clean) == base


def test_sync_erasures_for_policies(clean, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ge.erase(clean, "a cat", out=a)
    ge.erase(clean, "a dog", out=b)
    base = state_hash(clean)
    out = ge.sync_erasures(clean, [{"path": str(a), "strength": 1.0}])
    assert [o["path"] for o in out] == [str(a)]
    h = state_hash(clean)
    assert ge.sync_erasures(clean, [(str(a), 1.0)]) and state_hash(clean) == h  # idempotent
    ge.sync_erasures(clean, [(a, 1.0), (b, 0.5)])
    assert [(o["path"], o["strength"]) for o in ge.applied_erasures(clean)] == [(str(a), 1.0), (str(b), 0.5)]
    h2 = state_hash(clean)
    with pytest.raises(GuardError):
        ge.sync_erasures(clean, [(a, 1.0), (tmp_path / "missing.safetensors", 1.0)])
    assert state_hash(clean) == h2
    ge.sync_erasures(clean, [])
    assert state_hash(clean) == base and not ge.erasure_stack(clean)


def _corrupt(tmp_path):
    p = tmp_path / "corrupt.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + bytes(range(50)))
    return p


def _foreign(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(p))
    return p


def _truncated(tmp_path, clean):
    p = tmp_path / "full.safetensors"
    ge.erase(clean, "a cat", out=p)
    t = tmp_path / "trunc.safetensors"
    t.write_bytes(p.read_bytes()[:-100])
    return t


BAD_ERASE = [
    (dict(concepts=[]), "empty"),
    (dict(concepts="   "), "empty"),
    (dict(concepts=["a cat"], method="ablate"), "unknown erasure method"),
    (dict(concepts=5), "must be a string or a list"),
    (dict(concepts=["a cat", 3]), r"concepts\[1\]"),
    (dict(concepts=["a cat", "a dog"], guides=["x", "y", "z"]), "one guide"),
    (dict(concepts=["a cat"], lamb=0), "lamb"),
    (dict(concepts=["a cat"], method="rece", epochs=0), "epochs"),
    (dict(concepts=["a cat"], method="esd-x", iterations=1.5), "iterations"),
    (dict(concepts=["a cat"], method="esd-x", preserve=["a dog"]), "preservation"),
]


@pytest.mark.parametrize("kw,match", BAD_ERASE)
def test_bad_erase_inputs_are_clear_and_change_nothing(clean, kw, match):
    before = state_hash(clean)
    kw = dict(kw)
    concepts = kw.pop("concepts")
    with pytest.raises(GuardError, match=match):
        ge.erase(clean, concepts, apply=True, **kw)
    assert state_hash(clean) == before and not ge.erasure_stack(clean)


@pytest.mark.parametrize(
    "make,strength,match",
    [
        (_corrupt, 1.0, "not a readable safetensors"),
        (_foreign, 1.0, "not a guard erasure artifact"),
        (lambda t: t / "nope.safetensors", 1.0, "not found"),
        (lambda t: 42, 1.0, "path"),
        ("good", 2.0, "strength"),
        ("good", "1", "strength"),
        ("good", True, "strength"),
        ("trunc", 1.0, "not a readable safetensors"),
    ],
)
def test_bad_apply_inputs_are_clear_and_change_nothing(clean, tmp_path, make, strength, match):
    if make == "good":
        path = tmp_path / "good.safetensors"
        ge.erase(clean, "a cat", out=path)
    elif make == "trunc":
        path = _truncated(tmp_path, clean)
    else:
        path = make(tmp_path)
    before = state_hash(clean)
    with pytest.raises(GuardError, match=match):
        ge.apply_erasure(clean, path, strength=strength)
    assert state_hash(clean) == before and not ge.erasure_stack(clean)


def test_package_is_callable_as_the_erase_function(clean):
    import guard

    assert callable(ge)
    with pytest.raises(GuardInputError, match="empty"):
        ge(clean, [])
    with pytest.raises(GuardInputError, match="empty"):
        guard.erase(clean, [])  # the subpackage, imported above, is what `guard.erase` names


def test_wrong_pipeline_type():
    with pytest.raises(GuardInputError, match="UNet"):
        ge.apply_erasure(object(), "x.safetensors")


# ------------------------------------------------------------------------------------ CLI


def test_cli_erase_and_info(tmp_path):
    import typer
    from typer.testing import CliRunner

    from guard.erase.cli import erase_cmd, erasure_app

    app = typer.Typer()
    app.command("erase")(erase_cmd)
    app.add_typer(erasure_app, name="erasure")
    runner = CliRunner()
    out = tmp_path / "cat.safetensors"
    r = runner.invoke(
        app,
        [
            "erase",
            "--method",
            "uce",
            "--model",
            "builtin:tiny",
            "--concept",
            "a cat",
            "--concept",
            "a dog",
            "--guide",
            "a horse",
            "--preserve",
            "a tree",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert out.is_file() and "wrote" in r.stdout
    r = runner.invoke(app, ["erasure", "info", str(out)])
    assert r.exit_code == 0, r.output
    info = ge.erasure_info(out)
    assert "uce" in r.stdout and info["base_fingerprint"] in r.stdout and "'a cat', 'a dog'" in r.stdout
    r = runner.invoke(app, ["erasure", "info", str(out), "--json"])
    assert r.exit_code == 0 and '"method": "uce"' in r.stdout
    r = runner.invoke(
        app,
        [
            "erase",
            "--method",
            "nope",
            "--model",
            "builtin:tiny",
            "--concept",
            "x",
            "--out",
            str(tmp_path / "x.safetensors"),
        ],
    )
    assert r.exit_code == 2 and "unknown --method" in r.stderr
    bad = _corrupt(tmp_path)
    r = runner.invoke(app, ["erasure", "info", str(bad)])
    assert r.exit_code == 2 and "error:" in r.stderr and str(bad) in r.stderr
    r = runner.invoke(
        app, ["erase", "--model", "/nonexistent/model", "--concept", "x", "--out", str(tmp_path / "y.safetensors")]
    )
    assert r.exit_code == 2 and "cannot load model" in r.stderr


def test_policy_wiring_helpers(clean, tmp_path):
    """What guarded pipelines call at load: a policy's erasers (relative to the policy file) applied in
    order, named for the report/audit, and reverted when the policy drops them."""
    from guard.erase.wiring import apply_policy_erasers, report_entries

    (tmp_path / "erasers").mkdir()
    a, b = tmp_path / "erasers" / "a.safetensors", tmp_path / "erasers" / "b.safetensors"
    ge.erase(clean, "a cat", out=a)
    ge.erase(clean, "a dog", method="rece", epochs=1, out=b)
    base = state_hash(clean)
    ref = types.SimpleNamespace
    pol = ref(
        source=str(tmp_path / "policy.yaml"),
        erasers=[ref(path="erasers/a.safetensors", strength=1.0), ref(path=str(b), strength=0.5)],
    )
    apply_policy_erasers(clean, pol)
    rep = report_entries(clean)
    assert [(r["path"], r["method"], r["strength"], r["source"]) for r in rep] == [
        (str(a), "uce", 1.0, "policy"),
        (str(b), "rece", 0.5, "policy"),
    ]
    assert rep[0]["concepts"] == ["a cat"] and len(rep[0]["fingerprint"]) == 64
    h = state_hash(clean)
    apply_policy_erasers(clean, pol)  # load again: nothing changes
    assert state_hash(clean) == h and len(ge.erasure_stack(clean)) == 2
    bad = ref(source=None, erasers=[ref(path=str(tmp_path / "missing.safetensors"), strength=1.0)])
    with pytest.raises(GuardError, match="not found"):
        apply_policy_erasers(clean, bad)
    assert state_hash(clean) == h
    apply_policy_erasers(clean, ref(source=None, erasers=[]))
    assert state_hash(clean) == base and report_entries(clean) == []


# ------------------------------------------------------------------------------------ erasers live on the weights


def _guarded_policy(erasers=(), name="erasing"):
    from conftest import make_policy

    return {
        **make_policy(name=name),
        "output": {"enabled": False},
        "erasers": [{"path": str(p), "strength": 1.0} for p in erasers],
    }


def test_a_pipeline_sharing_erased_weights_cannot_drop_the_erasers(tmp_path):
    """from_pipe with another policy, the constructor with guard=None and protect() of a plain pipeline
    sharing the UNet would all silently revert the first pipeline's erasers: they are refused, naming both
    lists; the first pipeline's weights and report are unchanged. Once nothing relies on the erasers, or
    with its own UNet, another policy is fine."""
    import gc

    import guard
    from guard.erase.wiring import report_entries
    from guard.pipelines import GuardedStableDiffusionPipeline

    plain = _tiny()
    base = state_hash(plain)
    a = tmp_path / "a.safetensors"
    ge.erase(plain, "a cat", out=a)
    g = GuardedStableDiffusionPipeline.from_pipe(plain, policy=_guarded_policy([a]))
    erased = state_hash(plain)
    assert erased != base and [e["path"] for e in report_entries(g)] == [str(a)]
    assert report_entries(g)[0]["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()

    comps = {k: v for k, v in plain.components.items() if k != "guard"}
    attempts = {
        "from_pipe": lambda first=g: GuardedStableDiffusionPipeline.from_pipe(first, policy=_guarded_policy(name="p")),
        "constructor": lambda: GuardedStableDiffusionPipeline(**comps, guard=None, requires_safety_checker=False),
        "protect": lambda: guard.protect(plain, _guarded_policy(name="plain")),
    }
    for what, attempt in attempts.items():
        with pytest.raises(GuardError, match=r"lists erasers \[none\] but the weights carry \[a\.safetensors") as ei:
            attempt()
        assert "1 other guarded pipeline(s)" in str(ei.value), what
        assert state_hash(plain) == erased, what
        assert [e["path"] for e in report_entries(g)] == [str(a)], what

    same = GuardedStableDiffusionPipeline.from_pipe(g)  # the same policy: shares the erasers
    assert [e["path"] for e in report_entries(same)] == [str(a)] and state_hash(plain) == erased
    with pytest.raises(GuardError, match="2 other guarded"):
        guard.protect(plain, _guarded_policy(name="plain"))

    own = GuardedStableDiffusionPipeline.from_pipe(g, unet=copy.deepcopy(g.unet), policy=_guarded_policy(name="p"))
    assert report_entries(own) == [] and state_hash(own) == base and state_hash(plain) == erased

    del g, same, attempts, ei
    gc.collect()
    free = guard.protect(plain, _guarded_policy(name="plain"))  # nothing relies on the erasers any more
    assert report_entries(free) == [] and state_hash(plain) == base
    with pytest.raises(GuardError, match=r"lists erasers \[a\.safetensors.*carry \[none\]"):
        GuardedStableDiffusionPipeline.from_pipe(free, policy=_guarded_policy([a]))
    free.set_policy(_guarded_policy([a]))  # the only pipeline on these weights may change them
    assert state_hash(plain) == erased and [e["path"] for e in report_entries(free)] == [str(a)]


def test_an_artifact_replaced_under_its_name_is_noticed(clean, tmp_path):
    from guard.erase.wiring import apply_policy_erasers, check_policy_erasers, report_entries

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ge.erase(clean, "a cat", out=a)
    ge.erase(clean, "a dog", out=b)
    pol = types.SimpleNamespace(name="p", source=None, erasers=[types.SimpleNamespace(path=str(a), strength=1.0)])
    apply_policy_erasers(clean, pol)
    check_policy_erasers(clean, pol)
    first = report_entries(clean)[0]["sha256"]
    a.write_bytes(b.read_bytes())
    with pytest.raises(GuardError, match="changed since the pipeline was built"):
        check_policy_erasers(clean, pol)
    apply_policy_erasers(clean, pol)  # the only holder: re-applied from the new file
    assert report_entries(clean)[0]["sha256"] != first and report_entries(clean)[0]["concepts"] == ["a dog"]
    check_policy_erasers(clean, pol)
    ge.revert_erasure(clean)
    with pytest.raises(GuardError, match=r"lists erasers \['a.safetensors'\] but the weights carry \[\]"):
        check_policy_erasers(clean, pol)


# ------------------------------------------------------------------------------------ the method registry


def test_a_new_method_is_one_class_and_one_registry_entry(clean, tmp_path, monkeypatch):
    import sys

    from guard.erase.methods import REGISTRY, EraserMethod, MethodResult
    from guard.erase.params import Param

    class Halve(EraserMethod):
        """Scales every cross-attention value projection (a toy: not an eraser anyone should use)."""

        name = "halve"
        params = {"factor": Param(0.5, "scale", lo=0, hi=1)}

        def run(self, job):
            new = {
                f"{n}.weight": m.weight.detach().cpu() * job.params["factor"]
                for n, m in cross_attention_projections(job.unet, with_to_k=False).items()
            }
            return MethodResult({"factor": job.params["factor"]}, full=new)

    module = types.ModuleType("guard_test_halve")
    module.HALVE = Halve()
    monkeypatch.setitem(sys.modules, "guard_test_halve", module)
    monkeypatch.setitem(REGISTRY, "halve", "guard_test_halve:HALVE")
    before = state_hash(clean)
    e = ge.erase(clean, "a cat", method="halve", factor=0.25, out=tmp_path / "h.safetensors")
    assert e.metadata["hyperparameters"] == {"factor": 0.25} and state_hash(clean) == before
    ge.apply_erasure(clean, tmp_path / "h.safetensors")
    v = dict(clean.unet.named_parameters())[e.params[0]]
    assert torch.equal(v.detach(), e.full[e.params[0]])
    ge.revert_erasure(clean)
    with pytest.raises(GuardInputError, match="halve has no hyperparameter 'factr'; did you mean 'factor'"):
        ge.erase(clean, "a cat", method="halve", factr=0.3)
    with pytest.raises(GuardInputError, match="has no preservation term|factor must be"):
        ge.erase(clean, "a cat", method="halve", factor=2)


def test_unknown_hyperparameter_names_its_method():
    with pytest.raises(GuardInputError, match="uce has no hyperparameter 'lamda'; did you mean 'lamb'"):
        ge.erase(_tiny(), "a cat", lamda=0.2)
    with pytest.raises(GuardInputError, match="esd-x has no hyperparameter 'epochs'"):
        ge.erase(_tiny(), "a cat", method="esd-x", epochs=2)
