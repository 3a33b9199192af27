"""The static view encoder: MiniLM-derived token rows, spans by prefix sums, the cached token table
and the ``screen.view_encoder`` setting."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from guard.errors import PolicyError
from guard.policy import load_policy
from guard.screen import static_embed
from guard.screen.embedder import get_embedder
from guard.screen.normalize import normalize, segments
from guard.screen.static_embed import (
    StaticEncoder,
    StaticUnavailable,
    _load_table,
    get_static_encoder,
    table_path,
    token_table,
)

# float32 rows summed in float64 and normalised: spans and batch layouts agree to float32 rounding
TOL = 1e-5

PROMPTS = [
    "a portrait of an old fisherman, oil painting, highly detailed, trending on artstation",
    "Ein Foto von einem Hund im Park; hyperrealistisch, 8k",
    "a naked woman on a beach, sunset",
    "𝕒 𝕔𝕒𝕥 🍑 naïve café, ＷＯＭＡＮ, (masterpiece:1.2), [[best quality]]",
    " ".join(f"word{i} pretty garden" for i in range(40)),  # one piece of > 32 words: word windows
    "pills in a p h a r m a c y, macro photo",
]


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


@pytest.fixture(scope="module")
def enc(embedder):
    return get_static_encoder(embedder)


def test_rows_do_not_depend_on_the_batch(enc):
    texts = [normalize(p).text for p in PROMPTS]
    together = enc.encode(texts)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    reversed_ = enc.encode(texts[::-1])[::-1]
    np.testing.assert_allclose(together, alone, atol=TOL)
    np.testing.assert_allclose(together, reversed_, atol=TOL)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=TOL)


def test_a_span_equals_its_text_encoded_alone(enc):
    checked = 0
    for p in PROMPTS:
        text = normalize(p).text
        spans = segments(text, spans=True)
        rows = enc.encode_spans(text, spans + [None])
        alone = enc.encode([text[a:b] for a, b in spans] + [text])
        np.testing.assert_allclose(rows, alone, atol=TOL, err_msg=text)
        checked += len(spans)
    assert checked >= 10  # the prompts have segments and windows to compare


def test_texts_without_known_tokens_are_similar_to_nothing(enc):
    rows = enc.encode(["", "🍑🍆", "   "])
    assert not rows.any()
    assert not enc.encode_spans("🍑 🍆", [(0, 1), None]).any()


def test_static_vectors_live_in_the_sentence_model_space(enc, embedder):
    """The fitted map puts a text's static vector near its MiniLM vector, and nearest a related
    phrase rather than an unrelated one."""
    texts = ["a naked woman", "a bowl of ramen", "a mutilated corpse", "a red sports car", "a pistol"]
    s, m = enc.encode(texts), embedder.encode(texts)
    assert float((s * m).sum(1).mean()) > 0.6
    sims = enc.calibrate(s @ m.T)
    assert (sims.argmax(1) == np.arange(len(texts))).all()


def test_cached_table_checks(enc, embedder, tmp_path):
    table = token_table(embedder)  # the cached one (built by the encoder fixture)
    path = table_path(embedder)
    assert path.is_file()
    key, shape = embedder.cache_key, table.shape
    good = tmp_path / "good.npz"
    good.write_bytes(path.read_bytes())
    np.testing.assert_array_equal(_load_table(good, key, shape), table)
    assert _load_table(tmp_path / "missing.npz", key, shape) is None
    assert _load_table(good, key + "-other", shape) is None  # another model / runtime: stale
    assert _load_table(good, key, (shape[0] + 1, shape[1])) is None  # another vocabulary
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert _load_table(cut, key, shape) is None  # truncated: unreadable
    bad = tmp_path / "bad.npz"
    with np.load(path) as z:
        t2, meta = z["table"].copy(), str(z["meta"])
    t2[100, 5] += 0.5
    np.savez(bad, table=t2, meta=np.asarray(meta))
    assert _load_table(bad, key, shape) is None  # checksum
    np.savez(bad, table=table, meta=np.asarray(json.dumps({**json.loads(meta), "format": "0"})))
    assert _load_table(bad, key, shape) is None  # an older table format


@pytest.mark.slow
def test_corrupt_cached_table_is_rebuilt_the_same(enc, embedder, tmp_path, monkeypatch):
    table = token_table(embedder)
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path))
    path = table_path(embedder)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a table")
    rebuilt = token_table(embedder)
    np.testing.assert_allclose(rebuilt, table, atol=TOL)  # deterministic across runs
    assert _load_table(path, embedder.cache_key, table.shape) is not None  # and the file was rewritten


def test_fit_for_another_model_is_refused(embedder, tmp_path):
    arrays, meta = static_embed.load_fit()
    out = tmp_path / "fit"
    np.savez(str(out) + ".npz", **arrays)
    (tmp_path / "fit.json").write_text(json.dumps({**meta, "model_fingerprint": "0000"}))
    with pytest.raises(StaticUnavailable, match="made for model 0000"):
        StaticEncoder(embedder, out)
    with pytest.raises(StaticUnavailable, match="cannot read"):
        StaticEncoder(embedder, tmp_path / "nothing")


def test_setting_is_validated(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        textwrap.dedent(
            """\
            version: 1
            name: bad
            extends: default
            screen:
              view_encoder: fast
            """
        )
    )
    with pytest.raises(PolicyError) as ei:
        load_policy(p)
    msg = str(ei.value)
    assert "p.yaml:5:17" in msg and "screen.view_encoder" in msg and "'minilm' or 'static'" in msg


def _screen(encoder: str):
    from conftest import TEST_POLICY, make_policy
    from guard.screen.screen import PromptScreen

    return PromptScreen(load_policy(make_policy(screen={**TEST_POLICY["screen"], "view_encoder": encoder})))


def test_screen_embeds_the_whole_text_with_minilm_and_sub_views_statically(enc, embedder):
    s = _screen("static")
    m = _screen("minilm")
    assert s.static is enc and m.static is None
    assert s.index_key != m.index_key  # feature caches of the two designs never mix
    prompt = "a quiet harbour at dawn, a naked woman on the pier, oil painting"
    views = s._views(prompt)
    emb, is_static = s._embed_views([views]), s._static_rows([views])
    vs = views[0]
    assert not is_static[0] and is_static[1:].all() and len(vs) > 2
    np.testing.assert_allclose(emb[0], embedder.encode([vs[0]])[0], atol=TOL)
    np.testing.assert_allclose(emb[1:], enc.encode(vs[1:]), atol=TOL)
    sims = s._similarities(emb, is_static)
    np.testing.assert_allclose(sims[1:], enc.calibrate(emb[1:] @ s._phrase_mat.T), atol=TOL)
    # one-word segments stay with the sentence model, packed with the whole text
    one = "a quiet landscape at dawn, bouguereau, oil on canvas"
    v1 = s._views(one)
    e1, st1 = s._embed_views([v1]), s._static_rows([v1])
    k = v1[0].index("bouguereau")
    assert not st1[k] and st1.sum() == len(v1[0]) - 2
    np.testing.assert_allclose(e1[k], embedder.encode(["bouguereau"])[0], atol=TOL)
    # the naked-woman segment is the view nearest the nudity concept, in both designs
    for scr in (s, m):
        sc = scr._score([prompt])[0]
        ci = scr._concept_pos["sexual.nudity"]
        assert "segment" in sc.view_kind[ci]
        assert sc.scores[ci] > 0.6


def test_screen_falls_back_when_the_static_encoder_is_unavailable(monkeypatch, caplog):
    import guard.screen.screen as screen_mod

    def refuse(_embedder):
        raise StaticUnavailable("no fit for this model")

    monkeypatch.setattr(screen_mod, "get_static_encoder", refuse)
    with caplog.at_level("WARNING", logger="guard.screen.screen"):
        s = _screen("static")
    assert s.static is None
    assert "no fit for this model" in caplog.text
    assert s.screen("a naked woman").decision == "block"


def test_default_policy_batch_equals_single_with_static_views():
    from guard.screen.screen import PromptScreen

    default = load_policy("default")
    cfg = default.screen.model_copy(update={"view_encoder": "static"})
    scr = PromptScreen(default.model_copy(update={"screen": cfg}))
    assert scr.static is not None
    prompts = [
        "masterpiece, best quality, mountains at sunrise, a naked woman, trending on artstation",
        "a cat sleeping on a sofa",
        "",
        "a ph0t0 of a n4ked w0man",
        "ein Hund im Park",
    ]
    scr.embedder.clear_cache()
    batch = scr.screen_batch(prompts)
    scr.embedder.clear_cache()
    single = [scr.screen(p) for p in prompts]
    assert [r.decision for r in batch] == [r.decision for r in single]
    for b, s in zip(batch, single):
        assert b.score == pytest.approx(s.score, abs=1e-5)
    assert batch[0].decision == "block" and batch[0].category == "sexual"
    assert batch[1].decision == "allow"
