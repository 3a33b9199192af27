"""Exporting the screen model to ONNX (and, optionally, to int8), apart from the runtime.

:mod:`guard.screen.onnx_backend` runs a cached graph with onnxruntime and the ``tokenizers`` library
only; this module is what it calls, once per model, when no valid cached graph exists. It needs torch,
transformers and the ``onnx`` package; the runtime never imports it otherwise.

    data, info = export_onnx_bytes(model_dir)        # verified fp32 graph (cosine >= 0.999 vs torch)
    q, qinfo = quantize_int8(data, tokenizer)        # dynamic int8 MatMuls, checked against fp32
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


def export_onnx(
    model_dir: str | os.PathLike, out_path: str | os.PathLike, *, opset: int = OPSET, fingerprint: str | None = None
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
    any other export failure. Returns ``{"seconds", "min_cosine", "path", "exporter"}``.
    """
    data, info = export_onnx_bytes(model_dir, opset=opset, fingerprint=fingerprint)
    write_atomic(Path(out_path), data)
    info["path"] = Path(out_path)
    logger.info(
        "screen model exported to ONNX in %.1f s (min cosine vs torch %.6f): %s",
        info["seconds"],
        info["min_cosine"],
        out_path,
    )
    return info


def export_onnx_bytes(
    model_dir: str | os.PathLike, *, opset: int = OPSET, fingerprint: str | None = None
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

    wrapper = _Pooled(model).eval()
    tok = _Tokenizer(model_dir, max_len)
    texts = [PROBE_TEXT, *VERIFY_TEXTS]
    encs = tok.encode(texts)
    example = _pad(encs[:3], tok.pad_id, names)  # padded batch of 3: both axes vary in the trace
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

    # reference: the torch path proper (2-D mask, no wrapper), same token ids
    ref = np.empty((len(texts), int(model.config.hidden_size)), dtype=np.float32)
    with torch.no_grad():
        for i, e in enumerate(encs):
            feeds = {k: torch.from_numpy(v) for k, v in _pad([e], tok.pad_id, names).items()}
            hidden = model(**feeds).last_hidden_state
            ref[i] = pool_and_normalize(hidden, feeds["attention_mask"], pooling)[0].numpy()

    proto = onnx.load_model_from_string(buf.getvalue())
    meta = {
        "format": EXPORT_FORMAT,
        "fingerprint": fingerprint,
        "pooling": pooling,
        "dim": str(ref.shape[1]),
        "max_seq_length": str(max_len),
        "probe": json.dumps([round(float(x), 7) for x in ref[0]]),
        "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=False) opset {opset}",
    }
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = _META_PREFIX + k, v
    data = proto.SerializeToString()
    del proto, buf

    try:
        sess = make_session(data, providers=["CPUExecutionProvider"])
        got = _run_sorted(sess, tok, encs, 8, ref.shape[1])
    except Exception as e:
        raise OnnxUnavailable(f"onnxruntime cannot run the exported graph: {type(e).__name__}: {e}") from e
    cos = _cosines(got, ref)
    min_cos = float(cos.min())
    if not (min_cos >= MIN_COSINE):
        raise OnnxUnavailable(f"exported graph disagrees with torch: min cosine {min_cos:.5f} < {MIN_COSINE}")

    info = {
        "seconds": time.perf_counter() - t0,
        "min_cosine": min_cos,
        "exporter": meta["exporter"],
        "dim": int(ref.shape[1]),
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
                op_types_to_quantize=["MatMul"],
                extra_options={"MatMulConstBOnly": True},
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
