"""The screen's fast path: segment spans, a prompt's views packed in one encoder call, one matrix
product for the similarities, one BLAS thread, and the speed benchmark's RESULT line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.blas import _blas_libs, single_thread_blas
from guard.screen.normalize import normalize, segments

ROOT = Path(__file__).resolve().parents[1]

LONG = (
    "masterpiece, best quality, ultra detailed, 8k, cinematic lighting, volumetric fog, "
    "mountains at sunrise, pine forest, a lake with reflections, a naked woman, "
    "by a famous landscape painter, trending on artstation, octane render"
)


# ------------------------------------------------------------------ segment spans


@pytest.mark.parametrize(
    "text",
    [
        normalize(LONG).text,
        "a  cat; a dog (sitting) [on] {a} mat | 'quoted' - dash: colon. Next sentence.",
        " ".join(f"w{i}" for i in range(100)),
        "one, " + " ".join(f"w{i}" for i in range(70)) + ", three",
        "short",
        "",
    ],
)
def test_segment_spans_are_the_segments(text):
    spans = segments(text, spans=True)
    assert [text[a:b] for a, b in spans] == segments(text)
    assert all(0 <= a < b <= len(text) for a, b in spans)


def test_segment_spans_respect_max_views():
    text = " ".join(f"w{i}" for i in range(400))
    assert len(segments(text, spans=True, max_views=5)) == 5


# ------------------------------------------------------------------ the screen


@pytest.fixture(scope="module")
def default_policy():
    return load_policy("default")


@pytest.fixture(scope="module")
def screens(default_policy):
    """Every view by MiniLM (``screen.view_encoder: minilm``; the static sub-views are tested in
    test_static_embed.py): fp32 packed views, the opt-in int8 graph packed, and fp32 with the views in
    padded batches (the previous design)."""
    from guard.screen.embedder import get_embedder

    cfg = default_policy.screen.model_copy(update={"view_encoder": "minilm"})
    policy = default_policy.model_copy(update={"screen": cfg})
    shipped = PromptScreen(policy)
    int8 = PromptScreen(policy, embedder=get_embedder(policy.screen.model, backend="onnx-int8"))
    alone = PromptScreen(policy, embedder=shipped.embedder, pack_views=False)
    return shipped, int8, alone


def test_similarities_equal_a_faiss_search(screens):
    scr = screens[0]
    emb = scr.embedder.encode(["a photo of a cat", "a naked woman on a bed", "a mosque at dusk"])
    sims = scr._similarities(emb)
    scores, ids = scr.index.search(emb, scr.index.ntotal)
    full = np.empty_like(scores)
    np.put_along_axis(full, ids, scores, axis=1)
    np.testing.assert_allclose(sims, full, atol=1e-5)
    assert scr._similarities(np.zeros((0, scr.embedder.dim), np.float32)).shape == (0, scr.index.ntotal)


def test_nearest_phrases_is_a_small_faiss_search(screens):
    scr = screens[0]
    near = scr.nearest_phrases("a photo of a naked woman", k=3)
    assert len(near) == 3 and near[0][2] >= near[1][2] >= near[2][2]
    assert near[0][0].startswith("sexual")


def test_packed_views_make_one_call_per_text_and_equal_the_padded_batches(screens, monkeypatch):
    shipped, int8, alone = screens
    for scr in (shipped, int8):
        emb = scr.embedder
        calls: list[int] = []

        def counted(texts, spans, calls=calls, real=emb.encode_views):
            calls.append(len(texts))
            return real(texts, spans)

        monkeypatch.setattr(emb, "encode_views", counted)
        emb.clear_cache()
        r = scr.screen(LONG)
        monkeypatch.undo()
        assert calls == [1] and r.n_views > 5  # many views, one text
        assert r.decision == "block" and r.matches[0].category == "sexual"
    # fp32: the packed views are the views encoded on their own, to float rounding
    a, b = shipped._views(LONG), alone._views(LONG)
    assert a == b
    ea, eb = shipped._embed_views([a]), alone._embed_views([b])
    np.testing.assert_allclose(ea, eb, atol=1e-5)
    pa, pb = shipped._score([LONG, "a cat on a sofa"]), alone._score([LONG, "a cat on a sofa"])
    for x, y in zip(pa, pb):
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-5)


def test_packing_is_part_of_the_cache_keys(screens):
    shipped, int8, alone = screens
    assert len({shipped.index_key, int8.index_key, alone.index_key}) == 3  # their features are never mixed up


def test_batch_equals_single_with_packed_views(screens):
    for scr in screens[:2]:
        prompts = [LONG, "a cat sleeping on a sofa", "", "a ph0t0 of a n4ked w0man", "ein Hund im Park", LONG]
        scr.embedder.clear_cache()
        batch = scr.screen_batch(prompts)
        scr.embedder.clear_cache()
        single = [scr.screen(p) for p in prompts]
        assert [r.decision for r in batch] == [r.decision for r in single]
        for b, s in zip(batch, single):
            assert b.score == pytest.approx(s.score, abs=1e-5)


# ------------------------------------------------------------------ BLAS threads


def test_single_thread_blas_restores_the_setting():
    libs = _blas_libs()
    if not libs:
        pytest.skip("no BLAS thread control (threadpoolctl) in this environment")
    before = [lib.get_num_threads() for lib in libs]
    with single_thread_blas():
        assert all(lib.get_num_threads() == 1 for lib in libs)
        with single_thread_blas():  # nested / concurrent callers: restored only when the last leaves
            pass
        assert all(lib.get_num_threads() == 1 for lib in libs)
    assert [lib.get_num_threads() for lib in libs] == before


# ------------------------------------------------------------------ the benchmark


@pytest.mark.slow
def test_speed_benchmark_prints_a_result_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "screen_speed.py"), "--n", "12", "--repeat", "1", "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    kv = dict(x.split("=", 1) for x in last.split()[1:])
    for k in ("screen_p50_ms", "screen_p95_ms", "screen_b64_pps", "stfaiss_p50_ms", "screen_vs_stfaiss_p50"):
        assert float(kv[k]) > 0, k
