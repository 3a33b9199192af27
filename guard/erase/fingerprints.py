"""Fingerprints of UNet weights, which say what an erasure artifact was made for, and of artifact files.

The base fingerprint is sha256 over the edited parameters' ORIGINAL values (names, shapes, values as
float32, sorted by name). Variants for the same values cast to float16/bfloat16 are stored too, so an
artifact made on float32 weights also fits the same model loaded in half precision.
"""

from __future__ import annotations

import hashlib
import os
import threading

import torch

__all__ = ["artifact_digest", "current_fingerprints", "fingerprint", "fingerprint_variants"]


def fingerprint(tensors: dict[str, torch.Tensor], cast: torch.dtype | None = None) -> str:
    """sha256 over (name, shape, values) of ``tensors`` sorted by name. Values are hashed as float32
    (exact for float32/float16/bfloat16 weights); with ``cast`` they are first rounded to that dtype and
    hashed as such (to predict the fingerprint of the same model loaded in half precision)."""
    h = hashlib.sha256(b"guard-erasure-fingerprint/1\0" + (str(cast).encode() if cast else b"") + b"\0")
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        t = t.to(cast if cast is not None else torch.float32).contiguous()
        h.update(name.encode("utf-8") + b"\0" + repr(tuple(t.shape)).encode() + b"\0")
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint_variants(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """The canonical fingerprint (key ``""``) and its float16 / bfloat16 variants."""
    return {
        "": fingerprint(tensors),
        "float16": fingerprint(tensors, torch.float16),
        "bfloat16": fingerprint(tensors, torch.bfloat16),
    }


def current_fingerprints(current: dict[str, torch.Tensor]) -> set[str]:
    """The fingerprints that identify ``current`` weights: the canonical one, and the half-precision
    variant when they are half precision."""
    fps = {fingerprint(current)}
    dts = {t.dtype for t in current.values()}
    if len(dts) == 1 and next(iter(dts)) in (torch.float16, torch.bfloat16):
        fps.add(fingerprint(current, next(iter(dts))))
    return fps


_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGEST_LOCK = threading.Lock()


def artifact_digest(path: str | os.PathLike) -> str:
    """sha256 of an artifact file's bytes (cached by path, size and modification time), so that a file
    replaced under the same name is told apart from the one applied."""
    p = os.fspath(path)
    st = os.stat(p)
    key = (os.path.abspath(p), st.st_size, st.st_mtime_ns)
    with _DIGEST_LOCK:
        if key in _DIGESTS:
            return _DIGESTS[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    with _DIGEST_LOCK:
        if len(_DIGESTS) > 256:
            _DIGESTS.clear()
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]
