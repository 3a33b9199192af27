"""ONNX fast path of the screen embedder: agreement with torch, the export cache, fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from guard.errors import GuardError
from guard.screen import embedder as emb_mod, onnx_backend, onnx_export
from guard.screen.embedder import Embedder, get_embedder
from guard.screen.onnx_backend import OnnxEmbedder, OnnxUnavailable

PROMPTS = [
    "",
    "a",
    "a photo of a cat sitting on a windowsill",
    "A BICYCLE replica with a clock as the front wheel.",
    "portrait of a woman, oil painting, by greg rutkowski, trending on artstation, 8k, highly detailed",
    "a naked woman",
    "a soldier pointing an assault rifle at a crowd of people",
    "Ein Hund spielt im Park mit einem roten Ball",
    "un chat noir sur un toit à Paris, aquarelle",
    "中文字符 日本語のテキスト 한국어 문장",
    "مرحبا بالعالم",
    "🍑🍆💦 🔥🔥",
    "𝕒 𝕔𝕒𝕥 in ＦＵＬＬＷＩＤＴＨ letters",
    "a\u0301\u0301\u0301 e\u0308 naïve café résumé",
    "\x00\x01\x02 control characters",
    "tabs\tand\nnewlines   and    spaces",
    "[CLS] [SEP] [PAD] [MASK] special tokens as text",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "masterpiece, best quality, " + "intricate detail, sharp focus, " * 120,  # >> 256 word pieces
    " ".join(f"word{i}" for i in range(300)),  # long, many word pieces each
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """A fresh cache dir into which the screen model is exported once for this test session."""
    d = tmp_path_factory.mktemp("guard-onnx-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_CACHE_DIR", str(d))
        emb = OnnxEmbedder()
        q = OnnxEmbedder(quantize="int8")  # backend "onnx-int8"
    assert emb.exported is not None and q.exported is not None, "a fresh cache dir must export"
    return d, emb, q


@pytest.fixture(scope="session")
def onnx_emb(onnx_cache):
    return onnx_cache[1]


@pytest.fixture(scope="session")
def int8_emb(onnx_cache):
    return onnx_cache[2]


@pytest.fixture(scope="session")
def torch_emb():
    return Embedder()


@pytest.fixture()
def in_cache(onnx_cache, monkeypatch):
    monkeypatch.setenv("GUARD_CACHE_DIR", str(onnx_cache[0]))
    return onnx_cache[0]


@pytest.fixture()
def fresh_registry(monkeypatch, torch_emb):
    """get_embedder's process-wide cache, emptied for the test (the torch model pre-seeded)."""
    reg = {("all-minilm-l6-v2", "cpu", "torch"): torch_emb}
    monkeypatch.setattr(emb_mod, "_EMBEDDERS", reg)
    return reg


def _count_exports(monkeypatch, good: bytes | None = None, fail: str | None = None) -> list[int]:
    """Replace the (slow) export by a counter returning the known-good graph, or raising."""
    calls: list[int] = []

    def fake(model_dir, **kw):
        calls.append(1)
        if fail:
            raise OnnxUnavailable(fail)
        return good, {"seconds": 0.0, "min_cosine": 1.0, "exporter": "test", "dim": 384}

    monkeypatch.setattr(onnx_export, "export_onnx_bytes", fake)
    return calls


def test_export_is_verified_and_cached(onnx_cache, onnx_emb):
    d = onnx_cache[0]
    path = d / "onnx" / f"{onnx_emb.fingerprint}.onnx"
    assert path.is_file() and path == onnx_emb.onnx_path
    assert onnx_emb.exported["min_cosine"] >= 0.999 and "dynamo=False" in onnx_emb.exported["exporter"]
    assert not list(path.parent.glob("*.tmp"))  # atomic write left no temp file behind
    assert onnx_emb.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")


def test_cosine_against_torch(onnx_emb, torch_emb):
    a, b = onnx_emb.encode(PROMPTS), torch_emb.encode(PROMPTS)
    assert a.shape == b.shape == (len(PROMPTS), 384) and a.dtype == np.float32
    # a text with no known word piece (empty, emoji only) has a zero row in both backends
    nothing = np.linalg.norm(b, axis=1) == 0
    assert [p for p, z in zip(PROMPTS, nothing) if z] == ["", "🍑🍆💦 🔥🔥"]
    assert np.array_equal(np.linalg.norm(a, axis=1) == 0, nothing)
    assert np.allclose(np.linalg.norm(a[~nothing], axis=1), 1.0, atol=1e-5)
    cos = (a[~nothing] * b[~nothing]).sum(1)
    assert cos.min() >= 0.999, dict(zip(np.asarray(PROMPTS)[~nothing], cos.round(5)))


def test_same_interface_and_cache_key(onnx_emb, torch_emb):
    assert onnx_emb.cache_key == torch_emb.cache_key  # the FAISS index cache is shared
    assert onnx_emb.fingerprint == torch_emb.fingerprint and onnx_emb.dim == torch_emb.dim == 384
    assert onnx_emb.model_name == torch_emb.model_name and onnx_emb.path == torch_emb.path
    assert onnx_emb.encode([]).shape == (0, 384)


def test_tokenizer_matches_transformers(onnx_emb, torch_emb):
    ours = onnx_emb._tok.encode(PROMPTS)
    theirs = torch_emb._tok(PROMPTS, truncation=True, max_length=torch_emb.max_seq_length)
    assert [ids for ids, _ in ours] == theirs["input_ids"]
    assert [tt for _, tt in ours] == theirs["token_type_ids"]
    assert max(len(ids) for ids, _ in ours) == 256  # the long prompts were truncated


def test_batch_equals_one_by_one(onnx_emb):
    batch = onnx_emb.encode(PROMPTS)
    single = np.concatenate([onnx_emb.encode([p]) for p in PROMPTS])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    # order is restored after length sorting, also across several batches
    small = OnnxEmbedder.__new__(OnnxEmbedder)
    small.__dict__.update(onnx_emb.__dict__, batch_size=3)
    np.testing.assert_allclose(small.encode(PROMPTS), batch, atol=1e-5)


def test_length_batches_cover_everything_once():
    from guard.screen.onnx_backend import _batches

    lengths = [3, 256, 12, 3, 40, 256, 15, 14, 9, 100, 3, 12]
    b = _batches(lengths, 4)
    assert sorted(i for x in b for i in x) == list(range(len(lengths))) and max(map(len, b)) <= 4
    for x in b:  # every batch is at least half real tokens once padded: 256s never pad the 3s
        ls = [lengths[i] for i in x]
        assert sum(ls) >= 0.5 * len(ls) * max(ls) and ls == sorted(ls)
    assert _batches([], 4) == []


def test_thread_safety(onnx_emb):
    expected = onnx_emb.encode(PROMPTS)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(k: int):
        try:
            barrier.wait()
            order = PROMPTS[k:] + PROMPTS[:k]  # each thread its own rotation of the prompts
            results[k] = np.roll(onnx_emb.encode(order), k, axis=0)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 8
    for out in results.values():
        np.testing.assert_allclose(out, expected, atol=1e-5)


def test_cached_file_is_reused_without_export(in_cache, onnx_emb, monkeypatch):
    calls = _count_exports(monkeypatch, fail="must not export")
    mtime = onnx_emb.onnx_path.stat().st_mtime_ns
    again = OnnxEmbedder()
    assert calls == [] and again.exported is None
    assert onnx_emb.onnx_path.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(again.encode(PROMPTS[:5]), onnx_emb.encode(PROMPTS[:5]), atol=1e-6)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_cached_file_is_exported_again(onnx_emb, monkeypatch, tmp_path, damage):
    good = onnx_emb.onnx_path.read_bytes()
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path))
    target = tmp_path / "onnx" / onnx_emb.onnx_path.name
    target.parent.mkdir(parents=True)
    target.write_bytes(
        {"garbage": b"not an onnx model" * 100, "truncated": good[: len(good) // 2], "empty": b""}[damage]
    )
    calls = _count_exports(monkeypatch, good=good)
    e = OnnxEmbedder()
    assert calls == [1] and e.exported is not None
    assert target.read_bytes() == good  # replaced by the fresh export
    np.testing.assert_allclose(e.encode(PROMPTS[:5]), onnx_emb.encode(PROMPTS[:5]), atol=1e-6)


def test_cached_file_of_another_model_is_not_trusted(onnx_emb, monkeypatch, tmp_path):
    """A graph whose metadata names another fingerprint (e.g. copied by hand) is re-exported."""
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(emb_mod, "_fingerprint", lambda p: "0123456789abcdef")
    monkeypatch.setattr(onnx_backend, "_fingerprint", lambda p: "0123456789abcdef")
    target = tmp_path / "onnx" / "0123456789abcdef.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(onnx_emb.onnx_path.read_bytes())
    calls = _count_exports(monkeypatch, fail="stale")
    with pytest.raises(OnnxUnavailable, match="stale"):
        OnnxEmbedder()
    assert calls == [1]


def test_cached_start_loads_neither_torch_nor_transformers(in_cache):
    code = (
        "import sys\n"
        "from guard.screen.onnx_backend import OnnxEmbedder\n"
        "e = OnnxEmbedder()\n"
        "assert e.exported is None, 'exported again'\n"
        "assert e.encode(['a cat']).shape == (1, 384)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    env = dict(os.environ, GUARD_CACHE_DIR=str(in_cache))
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "False"]


def test_get_embedder_backends(in_cache, fresh_registry, torch_emb, monkeypatch):
    calls = _count_exports(monkeypatch, fail="must not export")
    assert get_embedder(backend="torch") is torch_emb
    e = get_embedder(backend="auto")
    assert isinstance(e, OnnxEmbedder) and calls == [] and e.quantize is None  # auto: the fp32 graph
    assert get_embedder("all-MiniLM-L6-v2") is e  # default backend is auto; cached per key
    o = get_embedder(backend="onnx")
    assert isinstance(o, OnnxEmbedder) and o.quantize is None
    q = get_embedder(backend="onnx-int8")
    assert isinstance(q, OnnxEmbedder) and q.quantize == "int8" and calls == []
    with pytest.raises(GuardError, match="unknown screen backend"):
        get_embedder(backend="tensorrt")


def test_auto_falls_back_to_torch_with_one_warning(fresh_registry, torch_emb, monkeypatch, tmp_path):
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path))  # nothing cached: must export
    _count_exports(monkeypatch, fail="forced export failure")
    with pytest.warns(RuntimeWarning, match="forced export failure") as rec:
        e = get_embedder(backend="auto")
    assert e is torch_emb and len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1
    with pytest.raises(GuardError, match="forced export failure"):
        get_embedder(backend="onnx")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_embedder(backend="auto") is torch_emb  # cached: no second warning


def test_export_without_onnx_package_says_why(monkeypatch, torch_emb):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(OnnxUnavailable, match="pip install onnx"):
        onnx_export.export_onnx(torch_emb.path, Path("/nonexistent/never-written.onnx"))


def test_unsupported_model_uses_torch_path(monkeypatch, fresh_registry, torch_emb):
    monkeypatch.setattr(emb_mod, "direct_config", lambda path: None)
    monkeypatch.setattr(onnx_backend, "direct_config", lambda path: None)
    with pytest.raises(GuardError, match="supports Transformer"):
        get_embedder(backend="onnx")
    monkeypatch.setattr(emb_mod, "Embedder", lambda model, device="cpu": torch_emb)
    fresh_registry.clear()
    assert get_embedder(backend="auto") is torch_emb


def test_identical_texts_are_encoded_once(onnx_emb, monkeypatch):
    monkeypatch.setattr(onnx_emb, "cache_size", 0)
    calls = []
    real = onnx_emb._tok.encode
    monkeypatch.setattr(onnx_emb._tok, "encode", lambda texts: calls.append(list(texts)) or real(texts))
    v = onnx_emb.encode(["a cat", "a dog", "a cat", "a cat"])
    assert calls == [["a cat", "a dog"]]
    assert np.array_equal(v[0], v[2]) and np.array_equal(v[0], v[3]) and float(v[0] @ v[1]) < 0.99


def test_recent_texts_come_from_a_bounded_cache(onnx_emb, monkeypatch):
    monkeypatch.setattr(onnx_emb, "cache_size", 3)
    monkeypatch.setattr(onnx_emb, "_cache", type(onnx_emb._cache)())
    calls = []
    real = onnx_emb._tok.encode
    monkeypatch.setattr(onnx_emb._tok, "encode", lambda texts: calls.append(list(texts)) or real(texts))
    first = onnx_emb.encode(["highly detailed", "a red fox", "8k"])
    again = onnx_emb.encode(["a red fox", "trending on artstation", "highly detailed"])
    assert calls == [["highly detailed", "a red fox", "8k"], ["trending on artstation"]]
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    assert list(onnx_emb._cache) == ["a red fox", "highly detailed", "trending on artstation"]  # "8k" evicted
    monkeypatch.setattr(onnx_emb, "cache_size", 0)
    fresh = onnx_emb.encode(["a red fox"])  # the same vector, computed again in another batch layout
    assert np.allclose(fresh[0], first[1], atol=1e-5)


def test_int8_graph_is_close_to_fp32_and_cached_apart(in_cache, onnx_emb, int8_emb, monkeypatch):
    q = int8_emb
    assert q.exported is not None and q.exported["int8_min_cosine"] >= onnx_export.MIN_COSINE_INT8
    assert q.onnx_path != onnx_emb.onnx_path and q.onnx_path.name.endswith(".int8.onnx")
    assert q.cache_key != onnx_emb.cache_key  # its own FAISS index cache
    texts = [p for p in PROMPTS if p and p != "🍑🍆💦 🔥🔥"]
    cos = (q.encode(texts) * onnx_emb.encode(texts)).sum(1)
    assert cos.min() >= 0.95, dict(zip(texts, cos.round(4)))
    again = OnnxEmbedder(quantize="int8")  # loads the cached int8 graph, passes its probe check
    monkeypatch.setattr(q, "cache_size", 0)
    monkeypatch.setattr(q, "views_cache_size", 0)
    again.cache_size = 0
    assert again.exported is None
    for t in texts[:3]:  # same graph, same batch layout: the same vector
        assert np.allclose(again.encode([t]), q.encode([t]), atol=1e-5)
    # dynamic int8 quantises activations with one scale per call, so int8 texts run one per call: a
    # text's vector does not depend on the other texts of its batch (bit for bit)
    batched = q.encode(texts)
    for i in (0, 1, len(texts) - 1):
        assert np.array_equal(q.encode([texts[i]])[0], batched[i])
    # a prompt's packed views too: never packed with another prompt's, the same rows alone and in a batch
    spans = [[(0, min(5, len(t)))] for t in texts]
    views = q.encode_views(texts, spans)
    assert np.array_equal(q.encode_views([texts[2]], [spans[2]])[0], views[2])
    with pytest.raises(GuardError, match="unknown ONNX quantisation"):
        OnnxEmbedder(quantize="int4")


# ------------------------------------------------------------------ packed views (encode_views)


def _span_of(text: str, piece: str) -> tuple[int, int]:
    a = text.index(piece)
    return a, a + len(piece)


def test_packed_views_equal_the_views_encoded_alone(onnx_emb, monkeypatch):
    text = "masterpiece, a lake with reflections, a naked woman, by a famous painter, 8k"
    spans = [_span_of(text, p) for p in ("a lake with reflections", "a naked woman", "masterpiece", "8k")]
    calls = []
    real = onnx_backend.run_packed

    def counted(sess, names, encs, pooling):
        calls.append(len(encs))
        return real(sess, names, encs, pooling)

    monkeypatch.setattr(onnx_backend, "run_packed", counted)
    monkeypatch.setattr(onnx_emb, "_cache", type(onnx_emb._cache)())  # nothing known yet: all five encoded
    monkeypatch.setattr(onnx_emb, "views_cache_size", 0)
    rows = onnx_emb.encode_views([text], [spans])[0]
    assert calls == [5]  # five views, one encoder call (one row, no padding)
    assert rows.shape == (5, 384) and rows.dtype == np.float32
    alone = onnx_emb.encode([text] + [text[a:b] for a, b in spans])
    np.testing.assert_allclose(rows, alone, atol=1e-5)  # each block attends only to itself


def test_pack_rows_hold_at_most_the_limit():
    from guard.screen.onnx_session import pack

    assert pack([10, 20, 30], 64) == [[0, 1, 2]]
    assert pack([200, 100, 50, 300, 5], 256) == [[0], [1, 2], [3], [4]]  # a text over the limit: its own row
    assert pack([], 256) == []


def test_views_of_texts_beyond_the_encoder_window(onnx_emb, torch_emb):
    filler = "a quiet meadow with flowers, " * 120  # ~840 word pieces: truncated as a whole text
    text = filler + "a naked woman, " + filler + "🍑🍆"
    spans = [_span_of(text, "a naked woman"), (len(text) - 2, len(text)), (0, 14), (0, len(filler))]
    rows = onnx_emb.encode_views([text], [spans])[0]
    alone = onnx_emb.encode([text] + [text[a:b] for a, b in spans])
    np.testing.assert_allclose(rows, alone, atol=1e-5)  # the long span truncated like a text of its own
    assert float(np.linalg.norm(rows[2])) == 0.0  # only emoji (unknown pieces): similar to nothing
    assert float(rows[1] @ onnx_emb.encode(["a naked woman"])[0]) > 0.999
    t = torch_emb.encode_views([text], [spans])[0]
    live = np.linalg.norm(rows, axis=1) > 0
    assert np.array_equal(live, np.linalg.norm(t, axis=1) > 0)
    assert (rows[live] * t[live]).sum(1).min() >= 0.999


def test_views_edge_texts_and_errors(onnx_emb):
    out = onnx_emb.encode_views(["", "🍑🍆", "a cat"], [[], [(0, 2)], [(2, 5)]])
    assert [o.shape for o in out] == [(1, 384), (2, 384), (2, 384)]
    assert not out[0].any() and not out[1].any()  # nothing known: zero rows
    np.testing.assert_allclose(out[2][0], onnx_emb.encode(["a cat"])[0], atol=1e-5)
    with pytest.raises(GuardError, match="2 texts but 1 span lists"):
        onnx_emb.encode_views(["a", "b"], [[]])


def test_cached_graph_of_the_old_format_is_exported_again(onnx_emb, monkeypatch, tmp_path):
    import onnx

    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path))
    good = onnx_emb.onnx_path.read_bytes()
    proto = onnx.load_model_from_string(good)
    for p in proto.metadata_props:
        if p.key == "guard.format":
            p.value = "1"  # a graph without token_states or block_ids, as exported before packing
    old = tmp_path / "onnx" / onnx_emb.onnx_path.name
    old.parent.mkdir(parents=True)
    old.write_bytes(proto.SerializeToString())
    calls = _count_exports(monkeypatch, good=good)
    e = OnnxEmbedder()
    assert calls == [1] and old.read_bytes() == good
    assert [o.name for o in e._session.get_outputs()][:2] == ["embeddings", "token_states"]


def test_packed_views_reuse_the_text_cache_in_fp32(onnx_emb, monkeypatch):
    monkeypatch.setattr(onnx_emb, "_cache", type(onnx_emb._cache)())
    monkeypatch.setattr(onnx_emb, "views_cache_size", 0)
    first = "a red fox, highly detailed, trending on artstation"
    second = "a grey wolf, highly detailed, trending on artstation"
    spans = [
        [_span_of(t, p) for p in (t.split(", ")[0], "highly detailed", "trending on artstation")]
        for t in (first, second)
    ]
    onnx_emb.encode_views([first], [spans[0]])
    encoded: list[list[str]] = []
    real = onnx_emb._tok.encode
    monkeypatch.setattr(onnx_emb._tok, "encode", lambda texts: encoded.append(list(texts)) or real(texts))
    rows = onnx_emb.encode_views([second], [spans[1]])[0]
    assert encoded == [[second, "a grey wolf"]]  # the two shared segments came from the cache
    monkeypatch.setattr(onnx_emb, "cache_size", 0)
    np.testing.assert_allclose(rows, onnx_emb.encode_views([second], [spans[1]])[0], atol=1e-5)


def test_pack_tight_is_first_fit_decreasing_and_covers_everything_once():
    from guard.screen.onnx_session import pack_tight

    assert pack_tight([10, 120, 20, 100, 300, 8], 128) == [[4], [1, 5], [3, 2], [0]]
    lengths = [5, 17, 33, 2, 64, 9, 41, 12, 7, 128, 3]
    rows = pack_tight(lengths, 64)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 64 for r in rows if len(r) > 1)
    assert pack_tight([], 64) == []


def test_padded_packed_rows_equal_each_row_alone(onnx_emb):
    from guard.screen.onnx_session import run_packed, run_packed_batch

    sess = onnx_emb._session
    names = [i.name for i in sess.get_inputs()]
    encs = onnx_emb._tok.encode(["a lake at dawn", "a naked woman", "8k", "portrait of a knight, oil painting"])
    rows = [[encs[0], encs[1]], [encs[2]], [encs[3], encs[2], encs[0]]]
    got = run_packed_batch(sess, names, rows, onnx_emb._tok.pad_id)
    assert [g.shape for g in got] == [(2, 384), (1, 384), (3, 384)]
    for row, g in zip(rows, got):  # padding changes nothing but float rounding
        np.testing.assert_allclose(g, run_packed(sess, names, row), atol=1e-5)


def test_a_batch_packs_the_views_of_its_prompts_together_each_distinct_view_once(onnx_emb, monkeypatch):
    monkeypatch.setattr(onnx_emb, "_cache", type(onnx_emb._cache)())
    monkeypatch.setattr(onnx_emb, "views_cache_size", 0)
    texts = [
        "a red fox, highly detailed, trending on artstation",
        "a grey wolf, highly detailed, trending on artstation",
        "a naked woman, highly detailed",
        "🍑🍆, a cat",
    ]
    spans = [[_span_of(t, p) for p in t.split(", ")] for t in texts]
    encoded: list[list[str]] = []
    real = onnx_emb._tok.encode
    monkeypatch.setattr(onnx_emb._tok, "encode", lambda ts: encoded.append(list(ts)) or real(ts))
    runs: list[int] = []
    real_batch = onnx_backend.run_packed_batch
    monkeypatch.setattr(
        onnx_backend, "run_packed_batch", lambda s, n, rows, *a: runs.append(len(rows)) or real_batch(s, n, rows, *a)
    )
    got = onnx_emb.encode_views(texts, spans)
    pieces = [p for t, sp in zip(texts, spans) for p in [t] + [t[a:b] for a, b in sp]]
    assert len(encoded) == 1 and sorted(encoded[0]) == sorted(set(pieces))  # each distinct view tokenised once
    assert 1 <= len(runs) <= max(1, onnx_emb.parallel)  # one call per core at most
    monkeypatch.setattr(onnx_emb, "cache_size", 0)
    for t, sp, rows in zip(texts, spans, got):
        assert rows.shape == (1 + len(sp), 384)
        np.testing.assert_allclose(rows, onnx_emb.encode_views([t], [sp])[0], atol=1e-5)  # as the prompt alone
    assert not got[3][1].any()  # a view with no known word piece: a zero row
    monkeypatch.setattr(onnx_emb, "batch_packing", False)  # the earlier design: each prompt's own calls
    for a, b in zip(got, onnx_emb.encode_views(texts, spans)):
        np.testing.assert_allclose(a, b, atol=1e-5)
