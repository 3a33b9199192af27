"""Prompt encoding with a pipeline's own tokenizer(s) and text encoder(s), exactly as diffusers does it.

One home for every part of guard that needs the generator's view of a text: the generator-space
screen (pooled embeddings), the erasers (token rows, last or penultimate layer) and negative guidance
(the UNet conditioning). Each text goes through diffusers' textual-inversion multi-vector expansion
(``<tok>`` becomes ``<tok> <tok>_1 ...`` when ``<tok>_1`` is a loaded token), is padded to the
tokenizer's ``model_max_length`` and truncated, then encoded on the encoder's own device and dtype.

    encs = pipeline_encoders(pipe)                  # [(text_encoder, tokenizer), ...]: two for SDXL
    pooled = encode_pooled(encs, ["a cat"])         # (n, d) unit-norm float32 numpy
    rows, lengths = encode_hidden(encs, ["a cat"])  # (n, L, D) float64 torch, token counts
    embeds, pooled = encode_conditioning(pipe, ["a cat"])  # what the UNet is conditioned on

Tokens a user loaded after the model (``load_textual_inversion``, ``tokenizer.add_tokens``) are the
ids at or above the tokenizer's base vocabulary: :func:`added_tokens`.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from guard.errors import GuardError, GuardInputError

logger = logging.getLogger(__name__)

Encoder = tuple[Any, Any]  # (text_encoder, tokenizer)
HiddenState = Literal["auto", "last", "penultimate"]

__all__ = [
    "Encoder",
    "added_tokens",
    "base_vocab_size",
    "check_encoders",
    "device_of",
    "encode_conditioning",
    "encode_hidden",
    "encode_pooled",
    "expand_multi_vector",
    "pipeline_encoders",
    "resolve_hidden_state",
    "tokenize",
]

_PAIRS = (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2"))


# ------------------------------------------------------------------------------------ encoders


def pipeline_encoders(pipe: Any) -> list[Encoder]:
    """The (text_encoder, tokenizer) pairs of a diffusers pipeline: ``text_encoder``/``tokenizer`` and,
    when present (SDXL), ``text_encoder_2``/``tokenizer_2``."""
    out: list[Encoder] = []
    for te_name, tok_name in _PAIRS:
        te, tok = getattr(pipe, te_name, None), getattr(pipe, tok_name, None)
        if te is not None and tok is not None:
            out.append((te, tok))
    if not out:
        raise GuardError(
            f"{type(pipe).__name__} has no text encoder and tokenizer "
            "(text_encoder/tokenizer or text_encoder_2/tokenizer_2) to encode prompts with"
        )
    return out


def check_encoders(encoders: Any) -> list[Encoder]:
    """``encoders`` as a list of (text_encoder, tokenizer) pairs; one bare pair is accepted too."""
    if isinstance(encoders, tuple) and len(encoders) == 2 and not isinstance(encoders[0], tuple):
        encoders = [encoders]
    out = list(encoders)
    if not out:
        raise GuardError("no text encoder given")
    for i, pair in enumerate(out):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise GuardError(f"encoders[{i}] must be a (text_encoder, tokenizer) pair")
        te, tok = pair
        if te is None or tok is None:
            raise GuardError(f"encoders[{i}] has no {'text encoder' if te is None else 'tokenizer'}")
    return [tuple(p) for p in out]  # type: ignore[misc]


def device_of(module: Any):
    """The device a module computes on (its first non-meta parameter's; CPU when it has none)."""
    import torch

    dev = getattr(module, "device", None)
    if isinstance(dev, torch.device) and dev.type != "meta":
        return dev
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def resolve_hidden_state(pipe: Any, hidden_state: HiddenState = "auto") -> str:
    """``auto``: the penultimate layer for SDXL-style pipelines (they have ``text_encoder_2``), as
    diffusers' SDXL pipelines condition on it; the final layer (after layer norm) otherwise."""
    if hidden_state not in ("auto", "last", "penultimate"):
        raise GuardInputError(f"hidden_state must be 'auto', 'last' or 'penultimate', got {hidden_state!r}")
    if hidden_state != "auto":
        return hidden_state
    return "penultimate" if hasattr(pipe, "text_encoder_2") else "last"


# ------------------------------------------------------------------------------------ tokens


def base_vocab_size(tokenizer: Any) -> int:
    """The vocabulary the tokenizer was loaded with, without tokens added since (HF ``vocab_size``)."""
    n = getattr(tokenizer, "vocab_size", None)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    return len(tokenizer)


def added_tokens(tokenizer: Any) -> dict[str, int]:
    """``{token: id}`` of the tokens added to ``tokenizer`` after it was loaded (textual inversion,
    ``add_tokens``): the added tokens whose id is past the base vocabulary, sorted by id."""
    base = base_vocab_size(tokenizer)
    enc = getattr(tokenizer, "added_tokens_encoder", None) or {}
    return dict(sorted(((t, int(i)) for t, i in enc.items() if int(i) >= base), key=lambda kv: kv[1]))


def expand_multi_vector(texts: Sequence[str], tokenizer: Any) -> list[str]:
    """diffusers' multi-vector textual-inversion rule (``TextualInversionLoaderMixin.maybe_convert_prompt``):
    each loaded token ``<t>`` in a text becomes ``<t> <t>_1 <t>_2 ...`` for as many ``<t>_k`` as are loaded.
    Texts are returned unchanged when the tokenizer has no added tokens."""
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    if not added_tokens(tokenizer):
        return list(texts)
    out = []
    for text in texts:
        for token in sorted(set(tokenizer.tokenize(text))):
            if token not in added:
                continue
            replacement, k = token, 1
            while f"{token}_{k}" in added:
                replacement += f" {token}_{k}"
                k += 1
            if replacement != token:
                text = text.replace(token, replacement)
        out.append(text)
    return out


def _max_length(tokenizer: Any) -> int:
    n = getattr(tokenizer, "model_max_length", None)
    if not isinstance(n, int) or n <= 0 or n > 100_000:
        return 77
    return n


def tokenize(tokenizer: Any, texts: Sequence[str]):
    """``(input_ids, attention_mask)`` as diffusers makes them: multi-vector expansion, padding to the
    tokenizer's maximum length, truncation."""
    enc = tokenizer(
        expand_multi_vector(texts, tokenizer),
        padding="max_length",
        max_length=_max_length(tokenizer),
        truncation=True,
        return_tensors="pt",
    )
    return enc.input_ids, enc.get("attention_mask")


# ------------------------------------------------------------------------------------ encodings


def _pooled(text_encoder: Any, input_ids, attention_mask):
    """The pooled prompt embedding: ``text_embeds`` (with projection), else ``pooler_output`` (the
    EOS-token state after the final layer norm), else the attention-masked mean of the last hidden
    states (encoders without a pooled output, e.g. T5)."""
    dev = device_of(text_encoder)
    kwargs: dict[str, Any] = {}
    if attention_mask is not None and getattr(getattr(text_encoder, "config", None), "use_attention_mask", False):
        kwargs["attention_mask"] = attention_mask.to(dev)
    out = text_encoder(input_ids.to(dev), **kwargs)
    if not isinstance(out, (tuple, list)):
        for name in ("text_embeds", "pooler_output"):
            v = getattr(out, name, None)
            if v is not None:
                return v
    hidden = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state
    if attention_mask is None:
        return hidden.mean(dim=1)
    m = attention_mask.to(hidden.device, hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise GuardInputError("expected a list of texts, got a single string")
    texts = list(texts or [])
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise GuardInputError(f"text {i} must be a string, got {type(t).__name__}")
    return texts


def _pooled_dim(encoders: list[Encoder]) -> int:
    dim = 0
    for te, _ in encoders:
        cfg = getattr(te, "config", None)
        dim += int(
            getattr(cfg, "projection_dim", 0)
            if hasattr(te, "text_projection")
            else getattr(cfg, "hidden_size", getattr(cfg, "d_model", 0))
        )
    return dim


def encode_pooled(
    encoders: Any, texts: Sequence[str], batch_size: int = 32, *, progress: bool | None = None, desc: str = "encoding"
) -> np.ndarray:
    """(n, d) unit-norm float32 pooled embeddings of ``texts`` in the generator's text space.

    With several encoders (SDXL) each encoder's pooled output is L2-normalised, the outputs are
    concatenated and normalised again, so a cosine in the joint space is the mean of the per-encoder
    cosines. Runs in inference mode; texts with identical token ids are encoded once. ``progress``: a
    tqdm bar on stderr (None: only for several batches and when stderr is a tty).
    """
    import torch

    encoders = check_encoders(encoders)
    texts = _check_texts(texts)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise GuardInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(texts)
    if n == 0:
        return np.zeros((0, _pooled_dim(encoders)), np.float32)
    tokenized = [tokenize(tok, texts) for _, tok in encoders]
    keys = [b"".join(ids[i].numpy().tobytes() for ids, _ in tokenized) for i in range(n)]
    first: dict[bytes, int] = {}  # token ids -> index among the distinct rows
    unique_rows: list[int] = []
    inverse = np.empty(n, dtype=np.int64)
    for i, k in enumerate(keys):
        if k not in first:
            first[k] = len(unique_rows)
            unique_rows.append(i)
        inverse[i] = first[k]
    rows = np.asarray(unique_rows, dtype=np.int64)
    n_batches = math.ceil(len(rows) / batch_size)
    if progress is None:
        progress = n_batches > 1 and sys.stderr.isatty()
    parts: list[list[np.ndarray]] = [[] for _ in encoders]
    from tqdm import tqdm

    with (
        torch.inference_mode(),
        tqdm(total=len(rows), desc=desc, unit="text", disable=not progress, file=sys.stderr, leave=False) as bar,
    ):
        for s in range(0, len(rows), batch_size):
            sel = torch.from_numpy(rows[s : s + batch_size])
            for e, ((te, _), (ids, mask)) in enumerate(zip(encoders, tokenized)):
                pooled = _pooled(te, ids[sel], mask[sel] if mask is not None else None)
                parts[e].append(pooled.detach().to("cpu", torch.float32).numpy())
            bar.update(len(sel))
    per_encoder = [_unit(np.concatenate(p, axis=0)) for p in parts]
    joint = per_encoder[0] if len(per_encoder) == 1 else _unit(np.concatenate(per_encoder, axis=1))
    return np.ascontiguousarray(joint[inverse], dtype=np.float32)


def encode_hidden(encoders: Any, texts: Sequence[str], hidden_state: str = "last"):
    """Token rows of ``texts``: each encoder's last (after the final layer norm) or penultimate hidden
    states, concatenated on the last dimension as SDXL does. Returns float64 CPU ``(B, L, D)`` and each
    text's token count (start and end tokens included) from the first tokenizer."""
    import torch

    encoders = check_encoders(encoders)
    texts = _check_texts(texts)
    if hidden_state not in ("last", "penultimate"):
        raise GuardInputError(f"hidden_state must be 'last' or 'penultimate', got {hidden_state!r}")
    hs: list[torch.Tensor] = []
    lengths: list[int] | None = None
    with torch.no_grad():
        for te, tok in encoders:
            ids, mask = tokenize(tok, texts)
            out = te(ids.to(device_of(te)), output_hidden_states=hidden_state == "penultimate")
            h = out.hidden_states[-2] if hidden_state == "penultimate" else out.last_hidden_state
            hs.append(h.detach().to("cpu", torch.float64))
            if lengths is None:
                lengths = [int(x) for x in (mask.sum(1).tolist() if mask is not None else [ids.shape[1]] * len(texts))]
    if len({h.shape[1] for h in hs}) != 1:
        raise GuardError("the text encoders give different sequence lengths: " + ", ".join(str(h.shape[1]) for h in hs))
    return torch.cat(hs, dim=-1), lengths or []


def encode_conditioning(pipe: Any, texts: Sequence[str]):
    """``(embeds (k, L, D), pooled (k, P) or None)``: what the pipeline conditions its UNet on for
    ``texts``, computed by the pipeline's own ``encode_prompt`` (textual inversion, LoRA scale and the
    SDXL encoder layout included), without classifier-free guidance, on the execution device."""
    import torch

    texts = _check_texts(texts)
    if not texts:
        raise GuardInputError("no texts to encode")
    encode = getattr(pipe, "encode_prompt", None)
    device = getattr(pipe, "_execution_device", None) or device_of(pipeline_encoders(pipe)[0][0])
    with torch.no_grad():
        if encode is None:  # pipelines with only the legacy _encode_prompt (e.g. InstructPix2Pix)
            ((te, tok),) = pipeline_encoders(pipe)[:1]
            ids, _ = tokenize(tok, texts)
            return te(ids.to(device))[0], None
        out = encode(prompt=list(texts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=False)
    if len(out) == 4:  # SDXL: (embeds, negative, pooled, negative pooled)
        return out[0], out[2]
    return out[0], None
