"""Exporting the screen model to ONNX (and, optionally, to int8), apart from the runtime.

:mod:`guard.screen.onnx_backend` runs a cached graph with onnxruntime and the ``tokenizers`` library
only; this module is what it calls, once per model, when no valid cached graph exists. It needs torch,
transformers and the ``onnx`` package; the runtime never imports it otherwise.

    data, info = export_onnx_bytes(model_dir)        # verified fp32 graph (cosine >= 0.999 vs torch)
    q, qinfo = quantize_int8(data, tokenizer, dim)   # dynamic int8 MatMuls, checked against fp32

With ``fuse=True`` the graph is FUSED: onnxruntime's transformer optimiser (``onnxruntime.transformers``, part of
the onnxruntime wheel, offline) replaces each BERT layer's attention subgraph by one ``Attention`` op,
the residual adds + layer norms by ``SkipLayerNormalization``, bias + GELU by ``BiasGelu`` and the
embedding sum + layer norm by ``EmbedLayerNormalization`` (contrib ops of onnxruntime's CPU and CUDA
providers). The fused ``Attention`` op takes a 3-D (batch, query, key) 0/1 mask, which the export
builds from ``block_ids`` and ``attention_mask`` so that packed views still attend only to themselves.
A model the optimiser cannot fuse (not BERT-like) gets the unfused graph; ``info["graph"]`` and the
graph's metadata say which. The fused graph equals the unfused one to float rounding (cosine >= 0.9999999
on MiniLM) but is not faster on CPU (measured with ``benchmarks/encoder_speed.py``: onnxruntime already
fuses the unfused graph's GELU and some layer norms when it loads it, and the GEMMs, the bulk of the
time, are the same), so the default export stays unfused (``fuse=False``).

``quantize_int8_blocks`` turns a graph's MatMuls into blockwise int8 ones (``MatMulNBits``): within
~0.002 cosine of fp32 and about 1.5x faster; ``quantize_int8`` is dynamic int8 (~2x, ~0.03 cosine).
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from guard.fileio import write_atomic
from guard.screen.model_files import _fingerprint, direct_config
from guard.screen.onnx_session import (
    _META_PREFIX,
    EXPORT_FORMAT,
    MIN_COSINE,
    OPSET,
    PROBE_TEXT,
    VERIFY_TEXTS,
    OnnxUnavailable,
    _cosines,
    _pad,
    _run_each,
    _run_sorted,
    _Tokenizer,
    make_session,
    pack,
    run_packed,
)

logger = logging.getLogger(__name__)

#: an int8 graph must agree with the fp32 one at least this well (cosine) on every check sentence
MIN_COSINE_INT8 = 0.97
#: sentences the int8 graph is checked on against the fp32 graph
INT8_CHECK_TEXTS = [
    PROBE_TEXT,
    *VERIFY_TEXTS[1:],
    "a photo of a naked woman on a bed",
    "a soldier pointing an assault rifle at a crowd",
    "portrait of a woman, oil painting, by greg rutkowski, trending on artstation, 8k",
    "a bowl of ramen on a wooden table, studio lighting",
]
#: the ops dynamic int8 quantisation rewrites: MatMuls (the feed-forward and output projections) and, in a
#: fused graph, the Attention ops' QKV projection (as QAttention)
INT8_OP_TYPES = ["MatMul", "Attention"]


def export_onnx(
    model_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    opset: int = OPSET,
    fingerprint: str | None = None,
    fuse: bool = False,
) -> dict[str, Any]:
    """Export the sentence-transformers model at ``model_dir`` to ONNX at ``out_path``.

    The graph takes ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the model uses
    them), int64 (batch, seq) with both axes dynamic, and returns ``embeddings`` (batch, dim):
    pooled and L2-normalised, as the torch path computes them, and ``token_states`` (batch, seq,
    dim), the last hidden states. Two more inputs, ``position_ids`` and ``block_ids``, let one row
    carry several texts ("packing", see :func:`~guard.screen.onnx_session.run_packed`): a token
    attends only to the tokens of its block. Uses the TorchScript exporter
    (``dynamo=False``: needs the ``onnx`` package, not onnxscript). Before the file is written
    (atomically: temp file + ``os.replace``), onnxruntime's output is compared with torch's on a few
    sentences; below ``MIN_COSINE`` nothing is written and :class:`OnnxUnavailable` is raised, as for
    any other export failure. ``fuse``: fuse the graph with onnxruntime's transformer optimiser (see the
    module docstring; falls back to the unfused graph, with a warning, when the model does not fuse).
    Returns ``{"seconds", "min_cosine", "min_cosine_packed", "path", "exporter", "graph"}``.
    """
    data, info = export_onnx_bytes(model_dir, opset=opset, fingerprint=fingerprint, fuse=fuse)
    write_atomic(Path(out_path), data)
    info["path"] = Path(out_path)
    logger.info(
        "screen model exported to ONNX in %.1f s (min cosine vs torch %.6f): %s",
        info["seconds"],
        info["min_cosine"],
        out_path,
    )
    return info


#: the attention function the fusable trace uses (registered with transformers' AttentionInterface)
_EXPORT_ATTENTION = "guard_onnx_export"


def _register_export_attention() -> None:
    """Register the attention function traced for fusion: transformers' eager attention, but the
    scores DIVIDED by 1/scale. Why: onnxruntime's BERT fusion matches ``Softmax(Add(Div(MatMul), mask))``
    (the pattern transformers 4 produced); transformers 5 multiplies by the scale, and then both inputs
    of the Add are ``Mul`` nodes and the matcher follows the wrong one (no Attention is fused). The two
    differ by float rounding only; the fused op applies 1/sqrt(head size) itself."""
    import torch
    from transformers import AttentionInterface

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        scale = float(scaling) if scaling is not None else query.size(-1) ** -0.5
        scores = torch.matmul(query, key.transpose(2, 3)) / (1.0 / scale)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = torch.softmax(scores, dim=-1)
        return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs

    AttentionInterface.register(_EXPORT_ATTENTION, attention)


def _trace(wrapper, names: list[str], example: dict[str, np.ndarray], opset: int) -> bytes:
    """``torch.onnx.export`` (TorchScript exporter) of a wrapper with outputs (embeddings, token_states)."""
    import torch

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(
                wrapper,
                tuple(torch.from_numpy(example[n]) for n in names),
                buf,
                dynamo=False,
                input_names=names,
                output_names=["embeddings", "token_states"],
                dynamic_axes={
                    **{n: {0: "batch", 1: "sequence"} for n in names},
                    "embeddings": {0: "batch"},
                    "token_states": {0: "batch", 1: "sequence"},
                },
                opset_version=opset,
                do_constant_folding=True,
            )
    except Exception as e:
        raise OnnxUnavailable(f"torch.onnx.export failed: {type(e).__name__}: {e}") from e
    return buf.getvalue()


def _fuse(data: bytes, config) -> tuple[Any, dict[str, int]]:
    """Fuse a traced BERT-like graph (2-D ``attention_mask`` input) with onnxruntime's transformer
    optimiser and give its ``Attention`` ops a 3-D mask from a new ``block_ids`` input: query token i
    may attend to key token j iff both are in the same block and j is not padding. Raises
    :class:`OnnxUnavailable` unless every layer's attention was fused. Returns the ModelProto and the
    counts of fused ops."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as e:  # pragma: no cover - part of the onnxruntime wheel
        raise OnnxUnavailable(f"onnxruntime.transformers is unavailable: {e}") from e
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    if not (heads and hidden and layers):
        raise OnnxUnavailable("the model config names no num_attention_heads / hidden_size / num_hidden_layers")
    opts = FusionOptions("bert")
    # the optimiser logs every pattern it fails to match at DEBUG and some notes at INFO/WARNING
    quiet = [logging.getLogger(n) for n in ("onnxruntime.transformers", "fusion_base", "onnx_model", "optimizer")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        om = optimize_model(
            onnx.load_model_from_string(data),
            model_type="bert",
            num_heads=heads,
            hidden_size=hidden,
            optimization_options=opts,
            opt_level=0,  # the python fusions only: onnxruntime's own optimisations run when a session loads
            use_gpu=False,
        )
    except Exception as e:
        raise OnnxUnavailable(f"onnxruntime's transformer optimiser failed: {type(e).__name__}: {e}") from e
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)
    stats = {k: int(v) for k, v in om.get_fused_operator_statistics().items() if v}
    proto = om.model
    graph = proto.graph
    attn = [n for n in graph.node if n.op_type == "Attention"]
    if len(attn) != layers:
        raise OnnxUnavailable(f"the optimiser fused {len(attn)} of {layers} attention layers ({stats})")
    for n in attn:
        # inputs: x, qkv weight, qkv bias, mask_index; nothing after (no past, no additive attention bias)
        if len(n.input) != 4 or not n.input[3]:
            raise OnnxUnavailable(f"fused attention {n.name} has inputs {list(n.input)}, expected (x, w, b, mask)")
    taken = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    if "block_ids" in taken:
        raise OnnxUnavailable("the traced graph already has a 'block_ids' input")
    graph.input.append(helper.make_tensor_value_info("block_ids", TensorProto.INT64, ["batch", "sequence"]))
    p = "guard_block_mask/"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), p + "axis1"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), p + "axis2"),
        ]
    )
    mask_nodes = [
        helper.make_node("Unsqueeze", ["block_ids", p + "axis2"], [p + "query_block"], name=p + "query_block"),
        helper.make_node("Unsqueeze", ["block_ids", p + "axis1"], [p + "key_block"], name=p + "key_block"),
        helper.make_node("Equal", [p + "query_block", p + "key_block"], [p + "same_block"], name=p + "same_block"),
        helper.make_node("Cast", ["attention_mask"], [p + "real"], name=p + "real", to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", [p + "real", p + "axis1"], [p + "real_key"], name=p + "real_key"),
        helper.make_node("And", [p + "same_block", p + "real_key"], [p + "allowed"], name=p + "allowed"),
        helper.make_node("Cast", [p + "allowed"], [p + "mask3d"], name=p + "mask3d", to=TensorProto.INT32),
    ]
    for n in attn:
        n.input[3] = p + "mask3d"
    for i, n in enumerate(mask_nodes):
        graph.node.insert(i, n)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(proto)
    return proto, stats


def export_onnx_bytes(
    model_dir: str | os.PathLike, *, opset: int = OPSET, fingerprint: str | None = None, fuse: bool = False
) -> tuple[bytes, dict[str, Any]]:
    """:func:`export_onnx` without the file: the verified serialised graph and its export info."""
    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    cfg = direct_config(model_dir)
    if cfg is None:
        raise OnnxUnavailable(f"{model_dir} is not a plain Transformer -> Pooling (-> Normalize) model")
    try:
        import onnx
    except ImportError as e:
        raise OnnxUnavailable(
            "exporting the screen model to ONNX needs the 'onnx' package (pip install onnx); "
            "torch.onnx's TorchScript exporter serialises through it"
        ) from e
    import inspect

    import torch
    from transformers import AutoModel

    fingerprint = fingerprint or _fingerprint(model_dir)
    pooling, max_len = cfg["pooling"], int(cfg["max_seq_length"])
    try:
        # eager attention: the 4-D additive mask below is used as is and traces without data-dependent
        # branches (the sdpa path and transformers' 2-D mask helpers bake the example's shapes in)
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    except Exception as e:
        raise OnnxUnavailable(f"cannot load {model_dir} with transformers for export: {e}") from e
    model.float()
    uses_tt = (
        "token_type_ids" in inspect.signature(model.forward).parameters
        and int(getattr(model.config, "type_vocab_size", 0) or 0) > 0
    )
    if "position_ids" not in inspect.signature(model.forward).parameters:
        raise OnnxUnavailable(f"{model_dir}: the model takes no position_ids (needed to pack a prompt's views)")
    names = ["input_ids", "attention_mask", "position_ids", "block_ids"] + (["token_type_ids"] if uses_tt else [])

    from guard.screen.model_files import pool_and_normalize

    class _Pooled(torch.nn.Module):
        """Packed rows: a token attends to the tokens of its own block only (``block_ids``), with
        positions that restart per block, so each block is encoded as if it were alone."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, position_ids, block_ids, token_type_ids=None):
            am = attention_mask.to(torch.float32)
            same = (block_ids[:, :, None] == block_ids[:, None, :]).to(torch.float32) * am[:, None, :]
            ext = (1.0 - same)[:, None, :, :] * torch.finfo(torch.float32).min
            kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            hidden = self.inner(
                input_ids=input_ids, attention_mask=ext, position_ids=position_ids, **kw
            ).last_hidden_state
            return pool_and_normalize(hidden, attention_mask, pooling), hidden

    class _Plain(torch.nn.Module):
        """The standard BERT mask pattern from a 2-D ``attention_mask`` (what the optimiser recognises
        and replaces by a mask input of the fused ``Attention`` op; ``_fuse`` then feeds that input the
        3-D block mask instead)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, position_ids, token_type_ids=None):
            ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
            kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            hidden = self.inner(
                input_ids=input_ids, attention_mask=ext, position_ids=position_ids, **kw
            ).last_hidden_state
            return pool_and_normalize(hidden, attention_mask, pooling), hidden

    tok = _Tokenizer(model_dir, max_len)
    texts = [PROBE_TEXT, *VERIFY_TEXTS]
    encs = tok.encode(texts)
    example = _pad(encs[:3], tok.pad_id, names)  # padded batch of 3: both axes vary in the trace

    # reference: the torch path proper (2-D mask, no wrapper), same token ids
    ref = np.empty((len(texts), int(model.config.hidden_size)), dtype=np.float32)
    with torch.no_grad():
        for i, e in enumerate(encs):
            feeds = {k: torch.from_numpy(np.array(v)) for k, v in _pad([e], tok.pad_id, names).items()}
            feeds.pop("block_ids")
            hidden = model(**feeds).last_hidden_state
            ref[i] = pool_and_normalize(hidden, feeds["attention_mask"], pooling)[0].numpy()

    graph, stats, proto = "unfused", {}, None
    if fuse:
        try:
            _register_export_attention()
            fmodel = AutoModel.from_pretrained(str(model_dir), attn_implementation=_EXPORT_ATTENTION).eval().float()
            plain = [n for n in names if n != "block_ids"]
            proto, stats = _fuse(_trace(_Plain(fmodel).eval(), plain, example, opset), model.config)
            graph = "fused"
            del fmodel
        except Exception as e:  # noqa: BLE001 - an optimisation only: the unfused graph is always possible
            logger.warning("screen model %s: no fused ONNX graph (%s); exporting the unfused one", model_dir, e)
            proto = None
    if proto is None:
        proto = onnx.load_model_from_string(_trace(_Pooled(model).eval(), names, example, opset))

    meta = {
        "format": EXPORT_FORMAT,
        "fingerprint": fingerprint,
        "pooling": pooling,
        "dim": str(ref.shape[1]),
        "max_seq_length": str(max_len),
        "probe": json.dumps([round(float(x), 7) for x in ref[0]]),
        "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=False) opset {opset}"
        + (" + onnxruntime.transformers optimize_model(bert)" if graph == "fused" else ""),
        "graph": graph,
        "fused_ops": json.dumps(stats, sort_keys=True),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = _META_PREFIX + k, v
    data = proto.SerializeToString()
    del proto

    try:
        sess = make_session(data, providers=["CPUExecutionProvider"])
        got = _run_sorted(sess, tok, encs, 8, ref.shape[1])
        sess_names = [i.name for i in sess.get_inputs()]
        packed = np.empty_like(ref)
        for row in pack([len(ids) for ids, _ in encs]):
            packed[row] = run_packed(sess, sess_names, [encs[i] for i in row], pooling)
    except Exception as e:
        raise OnnxUnavailable(f"onnxruntime cannot run the exported graph: {type(e).__name__}: {e}") from e
    min_cos = float(_cosines(got, ref).min())
    min_packed = float(_cosines(packed, ref).min())
    if not (min(min_cos, min_packed) >= MIN_COSINE):
        if graph == "fused":  # never ship a wrong fused graph: the unfused one is exported and checked instead
            logger.warning(
                "fused ONNX graph of %s disagrees with torch (min cosine %.5f, packed %.5f); exporting the unfused one",
                model_dir,
                min_cos,
                min_packed,
            )
            return export_onnx_bytes(model_dir, opset=opset, fingerprint=fingerprint, fuse=False)
        raise OnnxUnavailable(
            f"exported graph disagrees with torch: min cosine {min_cos:.5f} (packed {min_packed:.5f}) < {MIN_COSINE}"
        )

    info = {
        "seconds": time.perf_counter() - t0,
        "min_cosine": min_cos,
        "min_cosine_packed": min_packed,
        "exporter": meta["exporter"],
        "dim": int(ref.shape[1]),
        "graph": graph,
        "fused_ops": stats,
    }
    return data, info


def quantize_int8(data: bytes, tok: _Tokenizer, dim: int) -> tuple[bytes, dict[str, Any]]:
    """Dynamic int8 quantisation of an exported fp32 graph: the weights of every MatMul per output
    channel (activations stay float and are quantised per call), the embedding tables and layer norms
    untouched; the fp32 graph's metadata is kept, plus ``guard.quantized = int8``. Checked against the
    fp32 graph on ``INT8_CHECK_TEXTS``: below ``MIN_COSINE_INT8`` :class:`OnnxUnavailable` is raised.
    Returns the graph and ``{"int8_min_cosine", "int8_seconds"}``.

    Roughly 2-3x faster per prompt on CPU; embeddings move by about 0.01 in cosine, so a prompt within
    that distance of a threshold can change decision: see ``benchmarks/screen_speed.py``. Dynamic
    quantisation scales activations per call, so the runtime runs an int8 graph one text at a time
    (a text's vector then never depends on the other texts of a batch)."""
    import tempfile

    import onnx

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:  # pragma: no cover - part of onnxruntime
        raise OnnxUnavailable(f"onnxruntime.quantization is unavailable: {e}") from e
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="guard-int8-") as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(data)
        try:
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=INT8_OP_TYPES,
                # contrib ops (fused Attention) leave shape inference without a type for their outputs
                extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        except Exception as e:
            raise OnnxUnavailable(f"int8 quantisation failed: {type(e).__name__}: {e}") from e
        proto = onnx.load_model(str(dst))
    meta = {p.key: p.value for p in onnx.load_model_from_string(data).metadata_props}
    meta[_META_PREFIX + "quantized"] = "int8"
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    qdata = proto.SerializeToString()
    ref_s = make_session(data, providers=["CPUExecutionProvider"])
    q_s = make_session(qdata, providers=["CPUExecutionProvider"])
    encs = tok.encode(INT8_CHECK_TEXTS)
    cos = _cosines(_run_each(q_s, encs, dim), _run_sorted(ref_s, tok, encs, 8, dim))
    min_cos = float(cos.min())
    if not (min_cos >= MIN_COSINE_INT8):
        raise OnnxUnavailable(f"int8 graph disagrees with fp32: min cosine {min_cos:.4f} < {MIN_COSINE_INT8}")
    return qdata, {"int8_min_cosine": min_cos, "int8_seconds": time.perf_counter() - t0}


#: a blockwise-int8 graph must agree with the fp32 one at least this well (cosine) on every check sentence
MIN_COSINE_INT8_BLOCKS = 0.995
#: weights per int8 block (one scale each) along a MatMul's input dimension
INT8_BLOCK_SIZE = 32


def quantize_int8_blocks(
    data: bytes, tok: _Tokenizer, dim: int, block_size: int = INT8_BLOCK_SIZE
) -> tuple[bytes, dict[str, Any]]:
    """Blockwise int8 weights: every MatMul with a constant 2-D weight becomes onnxruntime's
    ``MatMulNBits`` (com.microsoft, 8 bits, symmetric, one scale per ``block_size`` weights along the
    input dimension) with ``accuracy_level`` 4: onnxruntime quantises each row of activations per block
    too and multiplies in int8 (VNNI where the CPU has it). The fp32 graph's metadata is kept, plus
    ``guard.quantized = int8-blocks``. Checked against the fp32 graph on ``INT8_CHECK_TEXTS``: below
    ``MIN_COSINE_INT8_BLOCKS`` :class:`OnnxUnavailable` is raised. Returns the graph and
    ``{"int8_min_cosine", "int8_seconds"}``.

    Against dynamic int8 (:func:`quantize_int8`): one scale per 32 weights and per 32 activations of a
    row instead of one per output channel and one per call, so embeddings stay within ~0.002 cosine of
    fp32 (dynamic: ~0.03), and a row's result does not depend on the other rows of the call (packed
    views and batches behave as in fp32); about 1.5x faster than fp32 per prompt (dynamic: ~2x)."""
    import onnx
    from onnx import helper, numpy_helper

    t0 = time.perf_counter()
    if block_size < 16 or block_size & (block_size - 1):
        raise OnnxUnavailable(f"int8 block size must be a power of two >= 16, not {block_size}")
    proto = onnx.load_model_from_string(data)
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    new_nodes, done, dropped = [], 0, set()
    for n in graph.node:
        w = inits.get(n.input[1]) if n.op_type == "MatMul" and len(n.input) == 2 else None
        if w is None or len(w.dims) != 2 or w.data_type != onnx.TensorProto.FLOAT:
            new_nodes.append(n)
            continue
        wt = numpy_helper.to_array(w).astype(np.float32)  # (K, N)
        k, n_out = wt.shape
        blocks = -(-k // block_size)
        pad = np.zeros((blocks * block_size, n_out), dtype=np.float32)
        pad[:k] = wt
        cols = pad.T.reshape(n_out, blocks, block_size)  # per output column, blocks along K
        scale = np.abs(cols).max(axis=2) / 127.0
        safe = np.where(scale > 0, scale, 1.0)
        q = np.clip(np.rint(cols / safe[:, :, None]), -127, 127).astype(np.int16) + 128
        base = n.name or n.output[0]
        qname, sname = f"{w.name}/int8_blocks", f"{w.name}/int8_scales"
        graph.initializer.extend(
            [
                numpy_helper.from_array(q.astype(np.uint8), qname),
                numpy_helper.from_array(scale.astype(np.float32).reshape(-1), sname),
            ]
        )
        new_nodes.append(
            helper.make_node(
                "MatMulNBits",
                [n.input[0], qname, sname],
                list(n.output),
                name=f"{base}/int8_blocks",
                domain="com.microsoft",
                K=k,
                N=n_out,
                bits=8,
                block_size=block_size,
                accuracy_level=4,
            )
        )
        consumers[w.name] -= 1
        if consumers[w.name] == 0:
            dropped.add(w.name)
        done += 1
    if not done:
        raise OnnxUnavailable("the graph has no MatMul with a constant weight to quantise")
    del graph.node[:]
    graph.node.extend(new_nodes)
    keep = [i for i in graph.initializer if i.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    for p in proto.metadata_props:
        if p.key == _META_PREFIX + "quantized":
            p.value = "int8-blocks"
            break
    else:
        entry = proto.metadata_props.add()
        entry.key, entry.value = _META_PREFIX + "quantized", "int8-blocks"
    qdata = proto.SerializeToString()
    del proto
    try:
        ref_s = make_session(data, providers=["CPUExecutionProvider"])
        q_s = make_session(qdata, providers=["CPUExecutionProvider"])
        encs = tok.encode(INT8_CHECK_TEXTS)
        cos = _cosines(_run_sorted(q_s, tok, encs, 8, dim), _run_sorted(ref_s, tok, encs, 8, dim))
    except Exception as e:
        raise OnnxUnavailable(f"onnxruntime cannot run the blockwise int8 graph: {type(e).__name__}: {e}") from e
    min_cos = float(cos.min())
    if not (min_cos >= MIN_COSINE_INT8_BLOCKS):
        raise OnnxUnavailable(
            f"blockwise int8 graph disagrees with fp32: min cosine {min_cos:.4f} < {MIN_COSINE_INT8_BLOCKS}"
        )
    logger.info("blockwise int8: %d MatMuls quantised, min cosine vs fp32 %.5f", done, min_cos)
    return qdata, {"int8_min_cosine": min_cos, "int8_seconds": time.perf_counter() - t0}
