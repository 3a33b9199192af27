"""The screen encoder's other ONNX forms: the graph fused by onnxruntime's transformer optimiser, and
blockwise int8 (``MatMulNBits``), each against the default unfused fp32 graph on the real MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from guard.errors import GuardError
from guard.screen import onnx_export
from guard.screen.model_files import resolve_model_path
from guard.screen.onnx_backend import OnnxEmbedder
from guard.screen.onnx_session import _cosines, _pad, _run_sorted, _Tokenizer, make_session, pack, run_packed

TEXTS = [
    "a",
    "a photo of a cat sitting on a windowsill",
    "portrait of a woman, oil painting, by greg rutkowski, trending on artstation, 8k, highly detailed",
    "a soldier pointing an assault rifle at a crowd of people",
    "Ein Hund spielt im Park mit einem roten Ball",
    "[CLS] [SEP] [PAD] special tokens as text",
    "masterpiece, best quality, " + "intricate detail, sharp focus, " * 60,  # > 256 word pieces: truncated
]
#: cosine two fp32 graphs of the same model must reach on every text (float32 rounding of other kernels)
SAME = 0.99999


@pytest.fixture(scope="module")
def tok():
    return _Tokenizer(resolve_model_path("all-MiniLM-L6-v2"), 256)


@pytest.fixture(scope="module")
def unfused_graph():
    """(bytes, info) of the default export, once for this module."""
    return onnx_export.export_onnx_bytes(resolve_model_path("all-MiniLM-L6-v2"))


@pytest.fixture(scope="module")
def graphs(unfused_graph):
    """(unfused bytes, its info, fused bytes, its info)."""
    fused, finfo = onnx_export.export_onnx_bytes(resolve_model_path("all-MiniLM-L6-v2"), fuse=True)
    return *unfused_graph, fused, finfo


@pytest.fixture(scope="module")
def sessions(graphs):
    return make_session(graphs[0], threads=1), make_session(graphs[2], threads=1)


def _alone(sess, encs) -> np.ndarray:
    names = [i.name for i in sess.get_inputs()]
    return np.stack([sess.run(["embeddings"], _pad([e], 0, names))[0][0] for e in encs])


def _packed(sess, encs) -> np.ndarray:
    names = [i.name for i in sess.get_inputs()]
    out = np.empty((len(encs), 384), dtype=np.float32)
    for row in pack([len(e[0]) for e in encs]):
        out[row] = run_packed(sess, names, [encs[i] for i in row])
    return out


def test_fused_export_fuses_every_layer_and_is_verified(graphs):
    import onnx

    _, uinfo, fused, finfo = graphs
    assert uinfo["graph"] == "unfused" and finfo["graph"] == "fused"  # the default export stays unfused
    assert finfo["fused_ops"]["Attention"] == 6 and finfo["fused_ops"]["SkipLayerNormalization"] >= 12
    assert finfo["min_cosine"] >= 0.999 and finfo["min_cosine_packed"] >= 0.999  # the torch check
    proto = onnx.load_model_from_string(fused)
    ops = {n.op_type for n in proto.graph.node}
    assert "Attention" in ops and "Softmax" not in ops  # no unfused attention left
    assert {i.name for i in proto.graph.input} >= {"input_ids", "attention_mask", "position_ids", "block_ids"}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["guard.graph"] == "fused" and meta["guard.format"] == onnx_export.EXPORT_FORMAT


def test_fused_equals_unfused_on_single_texts(sessions, tok):
    unfused, fused = sessions
    encs = tok.encode(TEXTS)
    cos = _cosines(_alone(fused, encs), _alone(unfused, encs))
    assert cos.min() >= SAME, dict(zip(TEXTS, cos.round(7)))


def test_fused_equals_unfused_on_padded_batches_of_mixed_length(sessions, tok):
    unfused, fused = sessions
    encs = tok.encode(TEXTS)
    alone = _alone(unfused, encs)
    for batch_size in (2, 3, len(TEXTS)):  # padding to 3 .. 256 tokens
        got = _run_sorted(fused, tok, encs, batch_size, 384)
        assert _cosines(got, alone).min() >= SAME, batch_size


def test_fused_packed_views_equal_each_view_alone(sessions, tok):
    unfused, fused = sessions
    text = "masterpiece, a lake with reflections, a naked woman, by a famous painter, 8k"
    views = [text, *text.split(", ")]
    encs = tok.encode(views)
    packed = _packed(fused, encs)  # one row: each view a block attending only to itself
    assert len(pack([len(e[0]) for e in encs])) == 1
    assert _cosines(packed, _alone(unfused, encs)).min() >= SAME
    assert _cosines(packed, _alone(fused, encs)).min() >= SAME
    # blocks of different lengths next to a long one (several rows, a 256-token row of its own)
    encs = tok.encode(TEXTS + views)
    assert _cosines(_packed(fused, encs), _alone(unfused, encs)).min() >= SAME


def test_fused_graph_can_be_quantised_dynamically(graphs, tok):
    _q, info = onnx_export.quantize_int8(graphs[2], tok, 384)
    assert info["int8_min_cosine"] >= onnx_export.MIN_COSINE_INT8


@pytest.mark.slow  # a third export (the fallback)
def test_a_model_that_does_not_fuse_gets_the_unfused_graph(monkeypatch, caplog):
    def refuse(data, config):
        raise onnx_export.OnnxUnavailable("the optimiser fused 0 of 6 attention layers")

    monkeypatch.setattr(onnx_export, "_fuse", refuse)
    _data, info = onnx_export.export_onnx_bytes(resolve_model_path("all-MiniLM-L6-v2"), fuse=True)
    assert info["graph"] == "unfused" and "fused 0 of 6" in caplog.text
    assert info["min_cosine"] >= 0.999


# ------------------------------------------------------------------ blockwise int8


@pytest.fixture(scope="module")
def blocks(unfused_graph, tok):
    return onnx_export.quantize_int8_blocks(unfused_graph[0], tok, 384)


def test_blockwise_int8_is_close_to_fp32(blocks, unfused_graph, tok):
    import onnx

    data, info = blocks
    assert info["int8_min_cosine"] >= onnx_export.MIN_COSINE_INT8_BLOCKS
    proto = onnx.load_model_from_string(data)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("MatMulNBits") == 36 and ops.count("MatMul") == 12  # weights quantised; QK^T, PV stay
    assert {p.key: p.value for p in proto.metadata_props}["guard.quantized"] == "int8-blocks"
    q = make_session(data, threads=1)
    encs = tok.encode(TEXTS)
    cos = _cosines(_alone(q, encs), _alone(make_session(unfused_graph[0], threads=1), encs))
    assert cos.min() >= 0.995, dict(zip(TEXTS, cos.round(5)))


def test_blockwise_int8_rows_do_not_depend_on_the_batch(blocks, tok):
    """Activations are quantised per row and block: a batch, a packed row and the text alone agree."""
    q = make_session(blocks[0], threads=1)
    encs = tok.encode(TEXTS)
    alone = _alone(q, encs)
    assert _cosines(_run_sorted(q, tok, encs, len(TEXTS), 384), alone).min() >= 0.9999
    assert _cosines(_packed(q, encs), alone).min() >= 0.9999


def test_blockwise_int8_block_size_is_checked(unfused_graph, tok):
    with pytest.raises(onnx_export.OnnxUnavailable, match="power of two"):
        onnx_export.quantize_int8_blocks(unfused_graph[0], tok, 384, block_size=24)


def test_blockwise_int8_embedder(monkeypatch, tmp_path, unfused_graph):
    """``OnnxEmbedder(quantize="int8-blocks")`` (backend onnx-int8-blocks): exported, cached apart, reloaded."""
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path))
    calls = []

    def export(model_dir, **kw):  # the fp32 export of this module, instead of a second one
        calls.append(1)
        return unfused_graph[0], dict(unfused_graph[1])

    monkeypatch.setattr(onnx_export, "export_onnx_bytes", export)
    e = OnnxEmbedder(quantize="int8-blocks")
    assert calls == [1] and e.onnx_path.name.endswith(".int8b.onnx") and e.onnx_path.is_file()
    assert e.cache_key.endswith("-int8b") and e.exported["int8_min_cosine"] >= 0.995
    again = OnnxEmbedder(quantize="int8-blocks")
    assert again.exported is None and calls == [1]  # loaded from the cache, passed its probe check
    texts = TEXTS[:4]
    np.testing.assert_allclose(again.encode(texts), e.encode(texts), atol=1e-5)
    text = "a red fox, highly detailed, trending on artstation"
    spans = [(0, 9), (11, 26), (28, len(text))]
    rows = e.encode_views([text], [spans])[0]
    assert _cosines(rows, e.encode([text] + [text[a:b] for a, b in spans])).min() >= 0.9999
    with pytest.raises(GuardError, match="unknown ONNX quantisation"):
        OnnxEmbedder(quantize="int4")
