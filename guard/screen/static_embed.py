"""Static token-embedding encoder for the prompt screen's sub-views (segments, word windows and the
other de-obfuscated readings of a prompt), derived from the screen's own sentence model.

Running MiniLM over every view of a prompt costs about twice what the whole prompt alone costs. The
whole de-obfuscated prompt keeps MiniLM; its sub-views are embedded here instead, in microseconds:

- **Token table** (computed once from the installed model, cached): each WordPiece token's row is the
  sentence model's embedding of that token alone (a ``##`` piece: of its text without ``##``),
  encoded by the screen's embedder in fixed chunks, so the table is the same on every run. It is
  cached as ``cache_dir()/static/<embedder cache key>-t<TABLE_FORMAT>.npz`` with the embedder's key
  and a sha256 of its bytes; a stale (other model, other format, other vocabulary) or corrupt file is
  built again.
- **Fit** (a small artifact shipped in the package, ``guard/screen/models/static-v1.npz`` + ``.json``,
  made by ``python -m guard.screen.static_fit --data DIR`` on TRAINING texts only, seeded): one
  weight per token (SIF, ``a / (a + p(token))`` from the token frequencies of the training prompts,
  so that "a", "of" and "the" count little), a ridge-regression map (with bias) from a view's
  weighted token mean to MiniLM's embedding of that view, and a linear calibration of the resulting
  cosines to MiniLM's cosine scale (the mean and spread of the per-concept best similarities of
  training views matched).
- **Encoding**: a view's vector is the normalised weighted sum of its tokens' projected rows. A text
  is tokenised once and every character span of it (its segments and word windows) is the sum of
  the tokens inside it -- one small product for all of them -- which equals the static encoding of
  that span's text alone (spans start and end at word boundaries).

The projected vectors live in MiniLM's space, so the sub-views are scored against the same concept
phrase matrix as the whole prompt (measured on held-out training views: cosine to MiniLM's own vector 0.77 on
average; a second phrase matrix of static phrase vectors agreed less: r 0.53 vs 0.75 in one fit). Usually reached
through ``screen.view_encoder: static`` (see :class:`guard.screen.screen.PromptScreen`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.errors import GuardError

logger = logging.getLogger(__name__)

#: bump when the way the token table is computed changes (cached tables of other formats are rebuilt)
TABLE_FORMAT = "1"
#: texts per encoder call while building the table (fixed, so the table does not depend on the machine)
TABLE_CHUNK = 2048
MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_FIT = MODEL_DIR / "static-v1"
#: SIF smoothing: a token of relative frequency p weighs a / (a + p)
SIF_A = 3e-3
#: ridge strength of the map from static means to MiniLM vectors
RIDGE = 0.1
#: a table whose probe rows are less similar than this to the fit's was made by another model build
MIN_PROBE_COSINE = 0.99
PROBE_TOKENS = ("the", "cat", "naked", "blood", "painting", "##ing", "gun", "child")
_SPECIAL_RE = re.compile(r"^\[[A-Za-z0-9_]+\]$")


class StaticUnavailable(GuardError):
    """The static encoder cannot be used for this model (the message says why)."""


# ------------------------------------------------------------------------------------ tokenising


class _Tok:
    """The model's WordPiece tokenizer without special tokens, truncation or padding; thread-safe."""

    def __init__(self, model_dir: Path):
        tj = Path(model_dir) / "tokenizer.json"
        if not tj.is_file():
            raise StaticUnavailable(f"the static view encoder needs the model's tokenizer.json; none in {model_dir}")
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(tj))
        self._tok.no_truncation()
        self._tok.no_padding()
        self._lock = threading.Lock()  # HF fast tokenizers are not thread-safe
        vocab = self._tok.get_vocab()
        self.size = max(vocab.values()) + 1
        self.tokens = [""] * self.size
        for t, i in vocab.items():
            self.tokens[i] = t
        unk = getattr(self._tok.model, "unk_token", None) or "[UNK]"
        self.unk_id = self._tok.token_to_id(unk)

    def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ids, (n, 2) character offsets) of each text."""
        with self._lock:  # one text: no batch (its thread pool costs more than the text)
            if len(texts) == 1:
                encs = [self._tok.encode(texts[0], add_special_tokens=False)]
            else:
                encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [(np.asarray(e.ids, dtype=np.int64), np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2)) for e in encs]

    def is_special(self, i: int) -> bool:
        return i == self.unk_id or bool(_SPECIAL_RE.match(self.tokens[i])) or not self.tokens[i]

    def text_of(self, i: int) -> str:
        t = self.tokens[i]
        return t[2:] if t.startswith("##") and len(t) > 2 else t


# ------------------------------------------------------------------------------------ token table


def table_path(embedder) -> Path:
    from guard.paths import cache_dir

    return cache_dir() / "static" / f"{embedder.cache_key}-t{TABLE_FORMAT}.npz"


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def _load_table(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached table at ``path`` when it is whole and was made for ``key`` with this shape, else
    None (with a warning saying why, except when there is no file)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            table = np.asarray(z["table"], dtype=np.float32)
            meta = json.loads(str(z["meta"]))
    except Exception as e:  # noqa: BLE001 - unreadable in any way: rebuild
        logger.warning("static token table %s is unreadable (%s); building it again", path, e)
        return None
    want = {"key": key, "format": TABLE_FORMAT, "shape": list(shape)}
    bad = {k: meta.get(k) for k, v in want.items() if meta.get(k) != v}
    if bad or tuple(table.shape) != shape:
        logger.warning("static token table %s is stale (%s); building it again", path, bad or table.shape)
        return None
    if meta.get("sha256") != _digest(table):
        logger.warning("static token table %s fails its checksum; building it again", path)
        return None
    return table


def build_table(embedder, tok: _Tok) -> np.ndarray:
    """(vocabulary size, dim) float32: each token's sentence-model embedding of the token alone (a
    ``##`` piece: of its text), zero for special and unknown tokens. Deterministic: fixed chunks of
    the vocabulary in id order through ``embedder.encode``."""
    ids = [i for i in range(tok.size) if not tok.is_special(i)]
    texts = [tok.text_of(i) for i in ids]
    table = np.zeros((tok.size, int(embedder.dim)), dtype=np.float32)
    t0 = time.perf_counter()
    for s in range(0, len(ids), TABLE_CHUNK):
        table[ids[s : s + TABLE_CHUNK]] = embedder.encode(texts[s : s + TABLE_CHUNK])
    logger.info("static token table: %d tokens encoded in %.1f s", len(ids), time.perf_counter() - t0)
    return table


def token_table(embedder, tok: _Tok | None = None, *, use_cache: bool = True) -> np.ndarray:
    """The embedder's token table, from the cache when it is valid, else built (and cached)."""
    tok = tok or _Tok(embedder.path)
    shape = (tok.size, int(embedder.dim))
    path = table_path(embedder)
    if use_cache:
        cached = _load_table(path, embedder.cache_key, shape)
        if cached is not None:
            return cached
    table = build_table(embedder, tok)
    if use_cache:
        meta = {"key": embedder.cache_key, "format": TABLE_FORMAT, "shape": list(shape), "sha256": _digest(table)}
        buf = io.BytesIO()
        np.savez(buf, table=table, meta=np.asarray(json.dumps(meta)))
        try:
            from guard.fileio import write_atomic

            write_atomic(path, buf.getvalue())
        except OSError as e:
            logger.warning("could not cache the static token table at %s: %s", path, e)
    return table


# ------------------------------------------------------------------------------------ the fit


def load_fit(path: Path = DEFAULT_FIT) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The fitted arrays (``weights``, ``proj``, ``calib``, ``probe_ids``, ``probe_rows``) and metadata."""
    npz, js = Path(str(path) + ".npz"), Path(str(path) + ".json")
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in ("weights", "proj", "calib", "probe_ids", "probe_rows")}
    except (OSError, ValueError, KeyError) as e:
        raise StaticUnavailable(f"cannot read the static encoder fit {npz} / {js.name}: {e}") from e
    return arrays, meta


class StaticEncoder:
    """Text -> unit float32 vectors in the sentence model's space from MiniLM-derived token rows.
    Thread-safe; immutable after construction."""

    def __init__(self, embedder, fit: Path = DEFAULT_FIT, *, use_cache: bool = True):
        arrays, meta = load_fit(fit)
        if meta.get("model_fingerprint") != getattr(embedder, "fingerprint", None):
            raise StaticUnavailable(
                f"the static encoder fit {Path(fit).name} was made for model {meta.get('model_fingerprint')}, "
                f"the screen uses {getattr(embedder, 'fingerprint', None)}"
            )
        self.tok = _Tok(embedder.path)
        table = token_table(embedder, self.tok, use_cache=use_cache)
        dim = table.shape[1]
        weights, proj = arrays["weights"].astype(np.float32), arrays["proj"].astype(np.float32)
        if weights.shape != (table.shape[0],) or proj.shape != (dim + 1, dim):
            raise StaticUnavailable(
                f"static encoder fit {Path(fit).name} has weights {weights.shape} and map {proj.shape}, "
                f"the model has {table.shape[0]} tokens of {dim} dimensions"
            )
        probe = table[arrays["probe_ids"]]
        cos = (probe * arrays["probe_rows"]).sum(1) / np.maximum(
            np.linalg.norm(probe, axis=1) * np.linalg.norm(arrays["probe_rows"], axis=1), 1e-12
        )
        if float(cos.min()) < MIN_PROBE_COSINE:
            raise StaticUnavailable(
                f"the token table of {embedder.cache_key} differs from the one the static fit was made with "
                f"(probe cosine {float(cos.min()):.4f} < {MIN_PROBE_COSINE})"
            )
        self.dim = dim
        #: each token's row, projected into the sentence model's space and weighted (zero: never counts)
        self.rows = ((table @ proj[:dim] + proj[dim]) * weights[:, None]).astype(np.float32)
        special = np.asarray([self.tok.is_special(i) for i in range(self.tok.size)])
        self.rows[special] = 0.0
        self.calib = (float(arrays["calib"][0]), float(arrays["calib"][1]))
        self.meta = meta
        h = hashlib.sha256()
        h.update(embedder.cache_key.encode() + b"\x00" + TABLE_FORMAT.encode())
        h.update(weights.tobytes() + proj.tobytes() + np.asarray(self.calib, np.float64).tobytes())
        #: identifies the encoder's numbers (part of the screen's cache keys)
        self.fingerprint = h.hexdigest()[:16]

    def calibrate(self, sims: np.ndarray) -> np.ndarray:
        """Static cosines on MiniLM's cosine scale (a linear map fitted on training views)."""
        a, b = self.calib
        return sims * np.float32(a) + np.float32(b)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) unit rows, each text encoded alone (zero for a text with no known token)."""
        return self._encode_ids([ids for ids, _ in self.tok.encode(texts)])

    def _encode_ids(self, id_lists: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`encode` of texts already tokenised (their token ids)."""
        out = np.zeros((len(id_lists), self.dim), dtype=np.float32)
        for r, ids in enumerate(id_lists):
            if ids.size:
                out[r] = self.rows[ids].sum(0)
        return _units(out)

    def encode_spans(self, text: str, spans: Sequence[tuple[int, int] | None]) -> np.ndarray:
        """(len(spans), dim) unit rows of the ``[start, end)`` character spans of ``text`` (None: the
        whole text): the text is tokenised once, and a span holds the tokens that lie inside it, so all
        spans of a text cost one product of a 0/1 span-by-token matrix with the text's token rows."""
        return self._encode_spans(text, self.tok.encode([text])[0], spans)

    def encode_with_spans(self, text: str, spans: Sequence[tuple[int, int] | None]) -> tuple[np.ndarray, np.ndarray]:
        """``(encode([text])[0], encode_spans(text, spans))``, the same numbers, from one tokenisation of
        ``text`` (the fast path's feature row reads both)."""
        ids, offs = self.tok.encode([text])[0]
        return self._encode_ids([ids])[0], self._encode_spans(text, (ids, offs), spans)

    def _encode_spans(
        self, text: str, tokens: tuple[np.ndarray, np.ndarray], spans: Sequence[tuple[int, int] | None]
    ) -> np.ndarray:
        """:meth:`encode_spans` of a text already tokenised (its ids and character offsets)."""
        ids, offs = tokens
        if not ids.size or not len(spans):
            return np.zeros((len(spans), self.dim), dtype=np.float32)
        a = np.asarray([0 if sp is None else sp[0] for sp in spans], dtype=np.int64)
        b = np.asarray([len(text) if sp is None else sp[1] for sp in spans], dtype=np.int64)
        first = np.searchsorted(offs[:, 0], a, side="left")  # the first token starting in the span
        end = np.searchsorted(offs[:, 1], b, side="right")  # one past the last token ending in it
        pos = np.arange(ids.size)
        member = ((pos >= first[:, None]) & (pos < end[:, None])).astype(np.float32)
        return _units(member @ self.rows[ids])


def _units(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(n > 1e-12, x / np.maximum(n, 1e-12), 0.0).astype(np.float32, copy=False)


_ENCODERS: dict[tuple[str, str], StaticEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def get_static_encoder(embedder, fit: Path = DEFAULT_FIT) -> StaticEncoder:
    """A process-wide static encoder per (embedder, fit): its table is built or loaded once. An int8
    embedder's static rows come from its fp32 sibling (the fit was made on fp32 rows, and an int8
    graph encodes one text per call: 30,000 calls for a table)."""
    if getattr(embedder, "quantize", None):
        from guard.screen.embedder import get_embedder

        embedder = get_embedder(embedder.model_name, device=getattr(embedder, "device", "cpu"), backend="onnx")
    key = (str(embedder.cache_key), str(fit))
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get(key)
        if enc is None:
            enc = StaticEncoder(embedder, fit)
            _ENCODERS[key] = enc
        return enc


# ------------------------------------------------------------------------------------ fitting
