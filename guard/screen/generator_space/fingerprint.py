"""Identities of text encoders: which model a calibration belongs to, and when a screen must be rebuilt.

:func:`model_fingerprint` names the encoder's weights as loaded: tokens added later (textual inversion)
do not change it, since they leave the base vocabulary, and the thresholds calibrated on it, alone.
:func:`encoders_state` changes whenever tokens are added or their vectors change, so a screen built
before a ``load_textual_inversion`` is not reused after it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from guard.errors import GuardError
from guard.textenc import Encoder, added_tokens, base_vocab_size, check_encoders

__all__ = ["encoders_fingerprint", "encoders_state", "model_fingerprint"]

#: at most this many elements of one weight tensor are hashed by :func:`model_fingerprint`
_FP_SAMPLE = 1 << 20
#: config keys that say how a model was saved or is being run, not what it computes
_FP_SKIP_KEYS = frozenset(
    {
        "transformers_version",
        "architectures",
        "dtype",
        "torch_dtype",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "use_return_dict",
        "id2label",
        "label2id",
        "problem_type",
        "chunk_size_feed_forward",
        "is_encoder_decoder",
        "attn_implementation",
        "name_or_path",
        "use_cache",
        "tf_legacy_loss",
        "pruned_heads",
        "torchscript",
    }
)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _config_for_fingerprint(text_encoder: Any, base_vocab: int | None) -> dict:
    cfg = getattr(text_encoder, "config", None)
    if cfg is None:
        d: dict = {}
    elif hasattr(cfg, "to_diff_dict") and hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
    elif isinstance(cfg, dict):
        d = dict(cfg)
    else:
        d = dict(vars(cfg))
    d = {k: v for k, v in d.items() if not str(k).startswith("_") and k not in _FP_SKIP_KEYS}
    if base_vocab is not None and "vocab_size" in d:
        d["vocab_size"] = base_vocab  # resize_token_embeddings raises it for every added token
    return _jsonable(d)


def _tensor_sample_bytes(t) -> bytes:
    """Up to ``_FP_SAMPLE`` evenly strided elements of ``t``, as float16 bytes (so a float32 model
    and its float16 copy share a fingerprint)."""
    import torch

    if t.device.type == "meta":
        raise GuardError(
            "cannot fingerprint the text encoder: its weights are not loaded (meta device, "
            "e.g. sequential CPU offload); fingerprint it before offloading"
        )
    flat = t.detach().reshape(-1)
    step = max(1, math.ceil(flat.numel() / _FP_SAMPLE))
    return flat[::step].to("cpu", torch.float16).contiguous().numpy().tobytes()


def _input_embedding(text_encoder: Any):
    get = getattr(text_encoder, "get_input_embeddings", None)
    try:
        emb = get() if get is not None else None
    except (AttributeError, NotImplementedError):
        emb = None
    return getattr(emb, "weight", None)


def model_fingerprint(text_encoder: Any, tokenizer: Any = None) -> str:
    """A short, stable id of a text encoder: sha256 over its class, its configuration (without keys
    that only say how it was saved or run), every parameter's name and shape, and a strided sample of
    the first, middle and last parameter tensors (as float16). The same weights give the same id in
    every process, in float32 or float16, on any device; other weights give another.

    With ``tokenizer``, only the base-vocabulary rows of the input embedding count: loading textual
    inversion tokens (which grows the matrix and ``config.vocab_size``) keeps the id."""
    base = base_vocab_size(tokenizer) if tokenizer is not None else None
    emb = _input_embedding(text_encoder)
    params = []
    for name, p in text_encoder.named_parameters():
        if base is not None and emb is not None and p is emb and p.shape[0] > base:
            p = p[:base]
        params.append((name, p))
    h = hashlib.sha256()
    h.update(b"guard-fp-v1\x00")
    h.update(type(text_encoder).__name__.encode() + b"\x00")
    h.update(json.dumps(_config_for_fingerprint(text_encoder, base), sort_keys=True).encode("utf-8"))
    for name, p in params:
        h.update(f"\x00{name}:{tuple(p.shape)}".encode())
    if params:
        for i in sorted({0, len(params) // 2, len(params) - 1}):
            h.update(b"\x00" + _tensor_sample_bytes(params[i][1]))
    return h.hexdigest()[:16]


def encoders_fingerprint(encoders: Sequence[Encoder]) -> str:
    """:func:`model_fingerprint` (base vocabulary) of the only encoder, or a combined id for several
    (order matters)."""
    fps = [model_fingerprint(te, tok) for te, tok in check_encoders(encoders)]
    if len(fps) == 1:
        return fps[0]
    return hashlib.sha256(("+".join(fps)).encode()).hexdigest()[:16]


def encoders_state(encoders: Sequence[Encoder]) -> tuple:
    """A cheap key that changes when tokens are added to a tokenizer, when the input embedding is
    resized or replaced, or when an added token's vector changes (the added rows are hashed; the base
    rows are the fingerprint's business)."""
    key = []
    for te, tok in check_encoders(encoders):
        added = added_tokens(tok)
        emb = _input_embedding(te)
        rows = b""
        if emb is not None and added:
            import torch

            ids = torch.tensor([i for i in added.values() if i < emb.shape[0]], dtype=torch.long)
            rows = emb.detach()[ids.to(emb.device)].to("cpu", torch.float32).contiguous().numpy().tobytes()
        key.append(
            (
                id(te),
                id(tok),
                len(tok),
                tuple(added.items()),
                None if emb is None else (emb.data_ptr(), tuple(emb.shape)),
                hashlib.sha256(rows).hexdigest(),
            )
        )
    return tuple(key)
