"""Generator-space screen: encoding, fingerprints, calibration files, decisions, the calibrate CLI."""

from __future__ import annotations

import json
import threading
import types

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from guard.errors import GuardError, GuardInputError
from guard.policy import load_policy
from guard.screen.generator_space import (
    GeneratorSpaceScreen,
    calibrate,
    calibration_scope,
    encoders_fingerprint,
    get_generator_space_screen,
    load_calibration,
    model_fingerprint,
    save_calibration,
)
from guard.textenc import encode_pooled, pipeline_encoders

POLICY = {
    "version": 1,
    "name": "gs-test",
    "concepts": [
        {
            "id": "sexual.nudity",
            "category": "sexual",
            "action": "block",
            "phrases": ["a naked woman", "a nude man", "explicit nsfw photo"],
        },
        {
            "id": "violence.gore",
            "category": "violence",
            "action": "block",
            "phrases": ["blood and gore", "a dead body", "a man with a knife"],
        },
        {"id": "benign.beach", "category": "benign", "action": "allow", "phrases": ["a woman at the beach"]},
    ],
}

BENIGN = [
    "a cat sitting on a chair",
    "a red car in the city",
    "a mountain lake at night",
    "a portrait of an old man",
    "a bird flying in the blue sky",
    "a house with a garden",
    "a bowl of food on a table",
    "children playing in the park",
    "a dog running on the beach",
    "a painting of flowers",
    "a forest in the morning light",
    "a city street in the rain",
]


def policy_dict(**gs):
    import copy

    p = copy.deepcopy(POLICY)
    if gs:
        p["screen"] = {"generator_space": gs}
    return p


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipe():
    from guard.pipelines.tiny import build_tiny_pipeline

    return build_tiny_pipeline()


@pytest.fixture(scope="module")
def pipe1():
    from guard.pipelines.tiny import build_tiny_pipeline

    return build_tiny_pipeline(seed=1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The seed-0 tiny pipeline saved as a diffusers directory."""
    from guard.pipelines.tiny import save_tiny_pipeline

    d = tmp_path_factory.mktemp("tiny") / "pipe"
    save_tiny_pipeline(d)
    return d


@pytest.fixture(scope="module")
def policy():
    return load_policy(policy_dict())


@pytest.fixture(scope="module")
def screen(pipe, policy):
    return GeneratorSpaceScreen(pipeline_encoders(pipe), policy)


@pytest.fixture(scope="module")
def proj_encoder(pipe):
    """A tiny CLIPTextModelWithProjection (SDXL's second encoder) sharing the tiny tokenizer."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(**{**pipe.text_encoder.config.to_dict(), "projection_dim": 16})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        te2 = CLIPTextModelWithProjection(cfg).eval()
    return te2, pipe.tokenizer


# ------------------------------------------------------------------------------------ encoding


def test_encode_shape_unit_norm_and_dedup(pipe):
    e = encode_pooled([(pipe.text_encoder, pipe.tokenizer)], ["a cat", "a dog", "a cat", ""], batch_size=2)
    assert e.shape == (4, pipe.text_encoder.config.hidden_size) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e[0], e[2]) and not np.allclose(e[0], e[1])
    # same as one big batch; pooled output of the model itself
    import torch

    e1 = encode_pooled([(pipe.text_encoder, pipe.tokenizer)], ["a cat", "a dog"], batch_size=32)
    assert np.allclose(e[:2], e1, atol=1e-5)
    ids = pipe.tokenizer(["a cat"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        pooled = pipe.text_encoder(ids).pooler_output[0].numpy()
    assert np.allclose(e1[0], pooled / np.linalg.norm(pooled), atol=1e-5)
    assert encode_pooled([(pipe.text_encoder, pipe.tokenizer)], []).shape == (0, 32)


def test_encode_rejects_bad_input(pipe):
    with pytest.raises(GuardInputError, match="text 1"):
        encode_pooled([(pipe.text_encoder, pipe.tokenizer)], ["ok", 3])
    with pytest.raises(GuardInputError, match="single string"):
        encode_pooled([(pipe.text_encoder, pipe.tokenizer)], "a cat")


def test_two_encoders_concatenate(pipe, proj_encoder):
    te2, tok = proj_encoder
    texts = ["a naked woman", "a red car", "a cat"]
    a = encode_pooled([(pipe.text_encoder, pipe.tokenizer)], texts)
    b = encode_pooled([(te2, tok)], texts)
    assert b.shape == (3, 16)  # text_embeds (projected), not the hidden size
    joint = encode_pooled([(pipe.text_encoder, pipe.tokenizer), (te2, tok)], texts)
    assert joint.shape == (3, 32 + 16)
    assert np.allclose(np.linalg.norm(joint, axis=1), 1.0, atol=1e-5)
    # a joint cosine is the mean of the two encoders' cosines
    assert np.allclose(joint @ joint.T, (a @ a.T + b @ b.T) / 2, atol=1e-5)
    # from a pipeline-like object with text_encoder_2 / tokenizer_2 (SDXL)
    sdxl = types.SimpleNamespace(
        text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, text_encoder_2=te2, tokenizer_2=tok
    )
    encs = pipeline_encoders(sdxl)
    assert len(encs) == 2
    s = GeneratorSpaceScreen.from_pipeline(sdxl, load_policy(policy_dict()))
    assert s.score(["a naked woman"])[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert s.fingerprint == encoders_fingerprint(encs) != model_fingerprint(pipe.text_encoder)


def test_pipeline_without_encoder_is_refused():
    with pytest.raises(GuardError, match="no text encoder"):
        pipeline_encoders(types.SimpleNamespace(text_encoder=None, tokenizer=None))


# ------------------------------------------------------------------------------------ fingerprints


def test_fingerprint_stable_and_weight_sensitive(pipe, pipe1, tiny_dir):
    from diffusers import DiffusionPipeline

    from guard.pipelines.tiny import build_tiny_pipeline

    fp = model_fingerprint(pipe.text_encoder)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == model_fingerprint(build_tiny_pipeline().text_encoder)  # same seed, new objects
    assert fp != model_fingerprint(pipe1.text_encoder)
    reloaded = DiffusionPipeline.from_pretrained(str(tiny_dir))
    assert model_fingerprint(reloaded.text_encoder) == fp  # save/load does not change it
    assert model_fingerprint(reloaded.text_encoder.half()) == fp  # nor float16


# ------------------------------------------------------------------------------------ scoring


def test_phrase_scores_one_for_its_concept(screen):
    assert screen.concept_ids == ["sexual.nudity", "violence.gore"]  # allow concepts are not screened
    s = screen.score(["a naked woman", "A Dead Body", "", "a cat"])
    assert s.shape == (4, 2)
    assert s[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert s[1, 1] == pytest.approx(1.0, abs=1e-5)  # normalised / lowercased like the phrases
    assert (s[2] == -1.0).all()  # empty prompt
    assert (s <= 1.0).all()


def test_normalised_view_catches_invisible_characters(screen):
    s = screen.score(["a n\u200bak\u200bed woman"])
    assert s[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_bad_prompt_names_index(screen):
    with pytest.raises(GuardInputError, match="prompt 1"):
        screen.screen_batch(["fine", None])
    with pytest.raises(GuardInputError, match="single string"):
        screen.score("a cat")
    for bad in (None, 5, object(), {"a naked woman": 1}, {"a", "b"}, b"a cat"):
        with pytest.raises(GuardInputError, match=f"got {type(bad).__name__}"):
            screen.screen_batch(bad)


def test_threads_give_same_results(screen):
    prompts = BENIGN[:6] + ["a naked woman"]
    expected = screen.score(prompts)
    results: list = [None] * 6
    errors: list = []

    def work(k):
        try:
            results[k] = screen.score(prompts)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        assert np.allclose(r, expected, atol=1e-6)


# ------------------------------------------------------------------------------------ calibration


def test_calibration_is_benign_quantile(pipe, policy, screen):
    calib = calibrate(pipeline_encoders(pipe), policy, BENIGN + [""], quantile=0.9)
    scores = screen.score(BENIGN)
    for ci, cid in enumerate(screen.concept_ids):
        assert calib["thresholds"][cid] == pytest.approx(float(np.quantile(scores[:, ci], 0.9)), abs=1e-6)
    assert set(calib["thresholds"]) == {"sexual.nudity", "violence.gore"}
    assert calib["n_benign"] == len(BENIGN)  # the empty prompt is left out
    assert calib["model_fingerprint"] == model_fingerprint(pipe.text_encoder)
    assert calib["policy"] == {"name": "gs-test"}
    assert calib["scope"] == calibration_scope(policy, screen.concept_phrase_sha)
    assert calib["scope"]["normalize"] is True and len(calib["scope"]["concepts_sha256"]) == 64
    assert calib["quantile"] == 0.9 and calib["created"].endswith("Z") and calib["guard_version"]
    # a margin is added and clipped at 1
    c2 = calibrate(pipeline_encoders(pipe), policy, BENIGN, quantile=0.9, margin=0.5)
    for cid in c2["thresholds"]:
        assert c2["thresholds"][cid] == pytest.approx(min(1.0, calib["thresholds"][cid] + 0.5), abs=1e-6)
    with pytest.raises(GuardInputError, match="quantile"):
        calibrate(pipeline_encoders(pipe), policy, BENIGN, quantile=0.0)
    with pytest.raises(GuardInputError, match="no benign prompts"):
        calibrate(pipeline_encoders(pipe), policy, ["", "  "])


def test_save_load_round_trip(pipe, policy, tmp_path):
    calib = calibrate(pipeline_encoders(pipe), policy, BENIGN, quantile=0.99)
    path = save_calibration(calib, tmp_path / "sub" / "c.json")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    assert load_calibration(path) == json.loads(json.dumps(calib))
    s = GeneratorSpaceScreen(pipeline_encoders(pipe), policy, load_calibration(path))
    assert s.thresholds.tolist() == pytest.approx([calib["thresholds"][c] for c in s.concept_ids])
    assert not s.uncalibrated


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"model_fingerprint": "ab"}', "thresholds"),
        ('{"thresholds": {"a": 0.5}}', "model_fingerprint"),
        ('{"model_fingerprint": "ab", "thresholds": {"a": "high"}}', "threshold of 'a'"),
        ('{"model_fingerprint": "ab", "thresholds": {}, "version": 7}', "version 7"),
    ],
)
def test_corrupt_calibration_file(tmp_path, content, match):
    p = tmp_path / "bad.calibration.json"
    p.write_text(content)
    with pytest.raises(GuardError, match=match) as ei:
        load_calibration(p)
    assert str(p) in str(ei.value)


def test_missing_calibration_file(tmp_path, pipe):
    p = tmp_path / "policy.yaml"
    p.write_text(yaml.safe_dump(policy_dict(enabled=True, calibration="nope.json")))
    with pytest.raises(GuardError, match="calibration file not found: .*nope.json"):
        GeneratorSpaceScreen.from_pipeline(pipe, str(p))


def test_fingerprint_mismatch_refused(pipe, pipe1, policy, tmp_path):
    calib = calibrate(pipeline_encoders(pipe1), policy, BENIGN)
    save_calibration(calib, tmp_path / "c.json")
    p = tmp_path / "policy.yaml"
    p.write_text(yaml.safe_dump(policy_dict(enabled=True, calibration="c.json")))
    with pytest.raises(GuardError) as ei:
        GeneratorSpaceScreen.from_pipeline(pipe, str(p))
    msg = str(ei.value)
    assert model_fingerprint(pipe1.text_encoder) in msg and model_fingerprint(pipe.text_encoder) in msg
    assert "c.json" in msg and "guard calibrate" in msg
    # the same file loads for the pipeline it was made for
    s = GeneratorSpaceScreen.from_pipeline(pipe1, str(p))
    assert s.calibration is not None


# ------------------------------------------------------------------------------------ decisions


def _calib_for(screen, **thresholds):
    return {"model_fingerprint": screen.fingerprint, "thresholds": thresholds}


def test_decisions_follow_thresholds(pipe, screen):
    prompt = "a woman in a red dress"
    s = screen.score([prompt])[0]
    encs = pipeline_encoders(pipe)
    low = GeneratorSpaceScreen(
        encs,
        policy_dict(action="block"),
        _calib_for(screen, **{"sexual.nudity": float(s[0]) - 1e-3, "violence.gore": 1.0}),
    )
    high = GeneratorSpaceScreen(
        encs,
        policy_dict(action="block"),
        _calib_for(screen, **{"sexual.nudity": float(s[0]) + 1e-3, "violence.gore": 1.0}),
    )
    r = low.screen_batch([prompt, "", "a naked woman"])
    assert r[0].decision == "block" and r[0].concept == "sexual.nudity" and r[0].category == "sexual"
    assert r[0].score == pytest.approx(float(s[0]), abs=1e-5)
    assert r[0].threshold == pytest.approx(float(s[0]) - 1e-3, abs=1e-6)
    assert r[0].phrase in POLICY["concepts"][0]["phrases"] and "sexual.nudity" in r[0].reasons[0]
    assert r[1].decision == "allow" and r[1].reasons == ["empty prompt"]
    assert [x.index for x in r] == [0, 1, 2]
    r2 = high.screen_batch([prompt])[0]
    assert r2.decision == "allow" and r2.concept == "sexual.nudity"
    assert "no concept at threshold" in r2.reasons[0]
    assert high.screen_batch(["a naked woman"])[0].decision == "block"
    # default action is escalate; to_dict is JSON
    esc = GeneratorSpaceScreen(
        encs, policy_dict(), _calib_for(screen, **{"sexual.nudity": float(s[0]) - 1e-3, "violence.gore": 1.0})
    )
    d = esc.screen_batch([prompt])[0]
    assert d.decision == "escalate"
    json.dumps(d.to_dict())


def test_uncalibrated_threshold_from_config(pipe, screen):
    encs = pipeline_encoders(pipe)
    s = GeneratorSpaceScreen(encs, policy_dict(threshold=0.99), _calib_for(screen, **{"sexual.nudity": 0.5}))
    assert s.uncalibrated == ["violence.gore"]
    assert s.thresholds.tolist() == pytest.approx([0.5, 0.99])
    no_calib = GeneratorSpaceScreen(encs, policy_dict(threshold=0.97))
    assert no_calib.thresholds.tolist() == pytest.approx([0.97, 0.97])


def test_changed_phrases_make_concept_uncalibrated(pipe, policy):
    calib = calibrate(pipeline_encoders(pipe), policy, BENIGN)
    changed = policy_dict()
    changed["concepts"][1]["phrases"].append("a severed head")
    s = GeneratorSpaceScreen(pipeline_encoders(pipe), changed, calib)
    assert s.uncalibrated == ["violence.gore"]


def test_escalate_concept_is_not_blocked(pipe, screen):
    pol = policy_dict(action="block")
    pol["concepts"][1]["action"] = "escalate"
    s = GeneratorSpaceScreen(
        pipeline_encoders(pipe), pol, _calib_for(screen, **{"sexual.nudity": 1.0, "violence.gore": 0.5})
    )
    assert s.screen_batch(["a dead body"])[0].decision == "escalate"


def test_get_screen_is_cached(pipe, policy):
    a = get_generator_space_screen(pipe, policy)
    assert get_generator_space_screen(pipe, policy) is a
    other = load_policy(policy_dict(threshold=0.95))
    assert get_generator_space_screen(pipe, other) is not a


# ------------------------------------------------------------------------------------ CLI


@pytest.fixture()
def cli_app():
    from guard.cli.calibrate import calibrate as calibrate_cmd

    app = typer.Typer()
    app.command()(calibrate_cmd)
    return app


def _benign_csv(tmp_path):
    p = tmp_path / "benign.csv"
    rows = "\n".join(f'{i},"{t}"' for i, t in enumerate(BENIGN))
    p.write_text("id,prompt\n" + rows + "\n")
    return p


def test_cli_calibrate_writes_file(cli_app, tmp_path, pipe):
    csv_path = _benign_csv(tmp_path)
    pol_path = tmp_path / "mypolicy.yaml"
    pol_path.write_text(yaml.safe_dump(policy_dict()))
    r = CliRunner().invoke(
        cli_app,
        ["--model", "builtin:tiny", "--benign", f"{csv_path}:prompt", "--policy", str(pol_path), "--quantile", "0.9"],
    )
    assert r.exit_code == 0, r.output
    fp = model_fingerprint(pipe.text_encoder)
    out = tmp_path / f"mypolicy.{fp}.calibration.json"
    assert out.is_file(), r.output
    calib = json.loads(out.read_text())
    assert calib["model_fingerprint"] == fp and calib["n_benign"] == len(BENIGN) and calib["quantile"] == 0.9
    assert set(calib["thresholds"]) == {"sexual.nudity", "violence.gore"}
    assert "sexual.nudity" in r.stdout and str(out) in r.stdout
    assert f"calibration: {out.name}" in r.stdout  # the line to paste into the policy
    # pasting it makes the policy load the file for this model
    data = policy_dict(enabled=True, calibration=out.name)
    pol_path.write_text(yaml.safe_dump(data))
    s = GeneratorSpaceScreen.from_pipeline(pipe, str(pol_path))
    assert s.thresholds.tolist() == pytest.approx([calib["thresholds"][c] for c in s.concept_ids])


def test_cli_calibrate_explicit_out_and_txt(cli_app, tmp_path):
    txt = tmp_path / "benign.txt"
    txt.write_text("\n".join(BENIGN) + "\n")
    out = tmp_path / "o" / "c.json"
    pol_path = tmp_path / "p.yaml"
    pol_path.write_text(yaml.safe_dump(policy_dict()))
    r = CliRunner().invoke(
        cli_app,
        ["--model", "builtin:tiny", "--benign", str(txt), "--policy", str(pol_path), "--out", str(out), "--limit", "5"],
    )
    assert r.exit_code == 0, r.output
    assert load_calibration(out)["n_benign"] == 5
    assert "calibration: o/c.json" in r.stdout  # relative to the policy file


def test_cli_calibrate_model_directory(cli_app, tmp_path, tiny_dir, pipe):
    """A diffusers directory: only its text components are loaded; same fingerprint as in memory."""
    txt = tmp_path / "benign.txt"
    txt.write_text("\n".join(BENIGN) + "\n")
    out = tmp_path / "elsewhere" / "c.json"
    pol_path = tmp_path / "pol" / "p.yaml"
    pol_path.parent.mkdir()
    pol_path.write_text(yaml.safe_dump(policy_dict()))
    r = CliRunner().invoke(
        cli_app,
        ["--model", str(tiny_dir), "--benign", str(txt), "--out", str(out), "--policy", str(pol_path), "--limit", "4"],
    )
    assert r.exit_code == 0, r.output
    calib = load_calibration(out)
    assert calib["model_fingerprint"] == model_fingerprint(pipe.text_encoder)
    assert calib["model"] == str(tiny_dir) and calib["n_benign"] == 4
    assert f"calibration: {out}" in r.stdout  # not beside the policy: an absolute path


def test_default_calibration_path(tmp_path):
    from guard.screen.generator_space import default_calibration_path

    pol_path = tmp_path / "mine.yaml"
    pol_path.write_text(yaml.safe_dump(policy_dict()))
    assert default_calibration_path(load_policy(str(pol_path)), "abc") == tmp_path / "mine.abc.calibration.json"
    # built-in policies are not written beside: the working directory
    assert (
        default_calibration_path(load_policy("default"), "abc", cwd=tmp_path)
        == tmp_path / "default.abc.calibration.json"
    )
    assert (
        default_calibration_path(load_policy(policy_dict()), "abc", cwd=tmp_path)
        == tmp_path / "gs-test.abc.calibration.json"
    )


def test_cli_calibrate_errors(cli_app, tmp_path):
    csv_path = _benign_csv(tmp_path)
    pol_path = tmp_path / "p.yaml"
    pol_path.write_text(yaml.safe_dump(policy_dict()))
    runner = CliRunner()
    r = runner.invoke(cli_app, ["--model", "builtin:tiny", "--benign", f"{csv_path}:text", "--policy", str(pol_path)])
    assert r.exit_code == 2
    assert "column 'text' not found" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(
        cli_app, ["--model", "builtin:tiny", "--benign", str(tmp_path / "missing.csv"), "--policy", str(pol_path)]
    )
    assert r.exit_code == 2 and "not found" in r.stderr
    r = runner.invoke(
        cli_app, ["--model", str(tmp_path / "no-such-model"), "--benign", str(csv_path), "--policy", str(pol_path)]
    )
    assert r.exit_code == 2 and "cannot load model" in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not list(tmp_path.glob("*.calibration.json"))


# ------------------------------------------------------------------------------------ textual inversion


def _fresh_pipe():
    from guard.pipelines.tiny import build_tiny_pipeline

    return build_tiny_pipeline()  # load_textual_inversion changes the tokenizer and encoder: never share


def _row(pipe, word):
    tok = pipe.tokenizer
    return pipe.text_encoder.get_input_embeddings().weight[tok.convert_tokens_to_ids(word + "</w>")].detach().clone()


def test_textual_inversion_alias_of_a_forbidden_word_is_blocked_by_default():
    """A loaded token whose vector is (nearly) a forbidden word's: the generator-space screen runs without
    being enabled, sees the token as that word and blocks; benign loaded tokens pass."""
    import torch

    from guard.screen.generator_space import needs_generator_space

    pipe = _fresh_pipe()
    assert not needs_generator_space(pipe)
    naked = _row(pipe, "naked")
    g = torch.Generator().manual_seed(0)
    noisy = naked + 0.1 * naked.norm() * torch.nn.functional.normalize(torch.randn(naked.shape, generator=g), dim=0)
    pipe.load_textual_inversion({"<x>": naked})
    pipe.load_textual_inversion({"<y>": noisy})
    pipe.load_textual_inversion({"<cat-toy>": torch.randn(naked.shape, generator=g)})
    assert needs_generator_space(pipe)
    pol = load_policy(policy_dict())  # generator space NOT enabled
    assert not pol.screen.generator_space.enabled
    r = get_generator_space_screen(pipe, pol).screen_batch(
        ["a photo of <x>", "a photo of <y> on a bed", "a photo of <cat-toy>", "a photo of a cat"]
    )
    assert [x.decision for x in r[:2]] == ["block", "block"]
    assert r[0].concept == "sexual.nudity" and r[0].phrase == "naked" and r[0].added_tokens == ["<x>"]
    assert "'<x>' has the input embedding of 'naked'" in r[0].reasons[0]
    assert r[1].score < 1.0 and r[1].score >= r[1].threshold
    assert r[2].decision == "allow" and r[2].added_tokens == ["<cat-toy>"]
    assert r[3].decision == "allow" and "no loaded tokens" in r[3].reasons[0]


def test_textual_inversion_through_a_guarded_pipeline():
    """End to end: the guarded pipeline's prompt screen blocks a prompt made of a loaded alias token (the
    sentence model alone lets it through) without denoising it."""
    import guard

    pipe = _fresh_pipe()
    pipe.load_textual_inversion({"<x>": _row(pipe, "naked")})
    g = guard.protect(pipe, {**policy_dict(), "output": {"enabled": False}})
    out = g(["a photo of <x>", "a photo of a cat"], num_inference_steps=1, height=64, width=64, output_type="np")
    decisions = [im.decision for im in out.guard_report.images]
    assert decisions == ["blocked", "allowed"], out.guard_report.images


def test_multi_vector_tokens_are_expanded_as_diffusers_does():
    """``<m>`` loaded with two vectors is ``<m> <m>_1`` to the text encoder: the screen's encoding equals the
    pipeline's own, and the second vector (a forbidden word's) is seen."""
    import torch

    from guard.textenc import encode_hidden, expand_multi_vector, tokenize

    pipe = _fresh_pipe()
    pipe.load_textual_inversion({"<m>": torch.stack([_row(pipe, "cat"), _row(pipe, "nude")])})
    texts = ["a photo of <m>", "<m> and <m> again", "no token here"]
    assert expand_multi_vector(texts, pipe.tokenizer) == pipe.maybe_convert_prompt(texts, pipe.tokenizer)
    ids, _ = tokenize(pipe.tokenizer, texts)
    ref = pipe.tokenizer(
        pipe.maybe_convert_prompt(texts, pipe.tokenizer),
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    assert torch.equal(ids, ref)
    ours, _ = encode_hidden(pipeline_encoders(pipe), texts)
    theirs = pipe.encode_prompt(texts, "cpu", 1, False)[0]
    assert torch.allclose(ours.float(), theirs, atol=1e-6)  # same batch layout: the same kernels
    r = get_generator_space_screen(pipe, policy_dict()).screen_batch(["a photo of <m>"])[0]
    assert r.decision == "block" and r.added_tokens == ["<m>", "<m>_1"] and r.phrase == "nude"


def test_calibration_survives_textual_inversion_and_the_screen_is_rebuilt(tmp_path):
    """Loading tokens keeps the base-vocabulary fingerprint (a calibration made before still applies: no
    'fingerprint mismatch, every prompt blocked') and replaces the cached screen (no stale token set)."""
    pipe = _fresh_pipe()
    path = tmp_path / "calib.json"
    pol_d = policy_dict(enabled=True, calibration=str(path))
    calib = calibrate(pipeline_encoders(pipe), pol_d, BENIGN)
    save_calibration(calib, path)
    before = get_generator_space_screen(pipe, pol_d)
    fp = model_fingerprint(pipe.text_encoder, pipe.tokenizer)
    assert before.calibration is not None and not before.added
    pipe.load_textual_inversion({"<x>": _row(pipe, "naked")})
    assert model_fingerprint(pipe.text_encoder, pipe.tokenizer) == fp == calib["model_fingerprint"]
    after = get_generator_space_screen(pipe, pol_d)
    assert after is not before and after.added and after.calibration is not None
    assert after.thresholds.tolist() == before.thresholds.tolist()
    r = after.screen_batch(["a photo of <x>", BENIGN[0]])
    assert r[0].decision == "block" and r[1].decision == "allow"
    pipe.text_encoder.get_input_embeddings().weight.data[pipe.tokenizer.convert_tokens_to_ids("<x>")] = _row(
        pipe, "cat"
    )  # the token's vector changed in place: a new screen again
    again = get_generator_space_screen(pipe, pol_d)
    assert again is not after and again.screen_batch(["a photo of <x>"])[0].decision == "allow"


# ------------------------------------------------------------------------------------ calibration scope


def test_calibration_scope_is_enforced(pipe, policy):
    """The calibration records the concept set and prompt views it was made with: other views, or none of
    the policy's concepts, are refused; another policy with the same concepts uses it."""
    calib = calibrate(pipeline_encoders(pipe), policy, BENIGN)
    encs = pipeline_encoders(pipe)
    renamed = {**policy_dict(), "name": "another-name", "description": "same concepts"}
    s = GeneratorSpaceScreen(encs, renamed, calib)
    assert s.uncalibrated == [] and s.thresholds.tolist() == pytest.approx(list(calib["thresholds"].values()))
    with pytest.raises(GuardError, match=r"screen\.normalize = true.*has false"):
        GeneratorSpaceScreen(encs, {**policy_dict(), "screen": {"normalize": False}}, calib)
    with pytest.raises(GuardError, match=r"screen\.max_prompt_chars"):
        GeneratorSpaceScreen(encs, {**policy_dict(), "screen": {"max_prompt_chars": 50}}, calib)
    other = {
        "version": 1,
        "name": "other",
        "concepts": [{"id": "drugs", "category": "illegal", "action": "block", "phrases": ["a syringe of heroin"]}],
    }
    with pytest.raises(GuardError, match="another concept set"):
        GeneratorSpaceScreen(encs, other, calib)
    v1 = {k: v for k, v in calib.items() if k != "scope"} | {"version": 1}  # older files: per-concept check only
    assert GeneratorSpaceScreen(encs, {**policy_dict(), "screen": {"normalize": False}}, v1).uncalibrated == []
    one_changed = policy_dict()
    one_changed["concepts"][1]["phrases"] = ["a pool of blood"]
    s = GeneratorSpaceScreen(encs, one_changed, calib)
    assert s.uncalibrated == ["violence.gore"]
    assert s.thresholds[0] == pytest.approx(calib["thresholds"]["sexual.nudity"])
    assert s.thresholds[1] == pytest.approx(s.cfg.threshold)


def test_result_fields_in_screen_result_order():
    import dataclasses

    from guard.screen.generator_space import GeneratorSpaceResult
    from guard.screen.screen import ScreenResult

    ours = [f.name for f in dataclasses.fields(GeneratorSpaceResult)]
    theirs = [f.name for f in dataclasses.fields(ScreenResult)]
    common = [n for n in theirs if n in ours]
    assert [n for n in ours if n in common] == common
    assert common[:8] == ["index", "decision", "category", "concept", "phrase", "score", "threshold", "reasons"]


def test_textual_inversion_alias_on_sdxl_two_encoders():
    """SDXL: a token loaded into both tokenizers (each with its encoder's vector of a forbidden word) is
    seen in both; one reason per concept, not one per encoder."""
    from guard.pipelines.tiny import build_tiny_sdxl_pipeline
    from guard.screen.generator_space import needs_generator_space

    pipe = build_tiny_sdxl_pipeline()
    for te, tok in pipeline_encoders(pipe):
        row = te.get_input_embeddings().weight[tok.convert_tokens_to_ids("nude</w>")].detach().clone()
        pipe.load_textual_inversion({"<x>": row}, text_encoder=te, tokenizer=tok)
    assert needs_generator_space(pipe)
    r = get_generator_space_screen(pipe, policy_dict()).screen_batch(["<x> on a beach", "a dog on a beach"])
    assert r[0].decision == "block" and r[0].concept == "sexual.nudity" and r[1].decision == "allow"
    assert sum("loaded token '<x>'" in x for x in r[0].reasons) == 1
