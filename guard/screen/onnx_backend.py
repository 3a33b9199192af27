"""ONNX fast path for the screen's sentence embeddings.

The screen model (a sentence-transformers Transformer -> Pooling -> Normalize stack such as
all-MiniLM-L6-v2) is exported once with ``torch.onnx.export`` -- pooling and L2 normalisation
included, so onnxruntime returns the final embeddings -- verified against the torch path
(cosine >= 0.999) and cached as ``cache_dir()/onnx/<model fingerprint>.onnx``. Later processes load
the cached graph with onnxruntime and the ``tokenizers`` library only: neither torch nor
transformers is imported, let alone the torch model loaded.

The cached file carries its own check: a probe sentence's torch embedding is stored in the model's
metadata and compared with onnxruntime's on every load; a file that fails (corrupt, stale, from an
older export format) is exported again.

    emb = OnnxEmbedder("all-MiniLM-L6-v2")
    emb.encode(["a cat", "a dog"])      # (2, 384) float32, unit rows

``quantize="int8"`` (backend ``onnx-int8``) runs dynamic int8 MatMuls (about 2x less CPU, cosine to fp32
~0.99, one text per call); ``quantize="int8-blocks"`` (backend ``onnx-int8-blocks``) blockwise int8 weights
and activations (about 1.3-1.6x less CPU, cosine to fp32 >= 0.998, rows independent of their batch as in
fp32). Figures: ``benchmarks/encoder_speed.py``.

Usually reached through ``get_embedder(backend="auto" | "onnx")``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.errors import GuardError
from guard.fileio import write_atomic
from guard.screen.model_files import DEFAULT_MODEL, ENCODING_TAG, _fingerprint, direct_config, resolve_model_path

logger = logging.getLogger(__name__)

from guard.screen.onnx_session import (  # noqa: E402, F401 - re-exported: the runtime's public names
    _META_PREFIX,
    CACHE_SIZE,
    EXPORT_FORMAT,
    MIN_COSINE,
    MIN_COSINE_INT8_BLOCKS_PROBE,
    MIN_COSINE_INT8_PROBE,
    MIN_FILL,
    OPSET,
    PROBE_TEXT,
    QUANTIZATIONS,
    VERIFY_TEXTS,
    OnnxUnavailable,
    _batches,
    _cosines,
    _meta,
    _num_threads,
    _pad,
    _run_each,
    _run_sorted,
    _Tokenizer,
    choose_providers,
    drop_unknown,
    make_session,
    onnx_cache_path,
    pack,
    pack_tight,
    run_packed,
    run_packed_batch,
)

#: default size of each OnnxEmbedder's LRU cache of prompts' views (see ``encode_views``)
VIEWS_CACHE_SIZE = 2_000


class OnnxEmbedder:
    """Thread-safe text -> unit-norm float32 embeddings through onnxruntime; the same public
    interface (and the same ``cache_key``) as the torch :class:`~guard.screen.embedder.Embedder`."""

    backend = "onnx"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "cpu",
        batch_size: int = 64,
        providers: list[Any] | None = None,
        quantize: str | None = None,
    ):
        t0 = time.perf_counter()
        if quantize not in QUANTIZATIONS:
            raise GuardError(f"unknown ONNX quantisation {quantize!r}; expected None, 'int8' or 'int8-blocks'")
        #: None (fp32, the default); "int8": dynamic int8 MatMuls (~2x faster, cosine ~0.99 to fp32, one text
        #: per call); "int8-blocks": blockwise int8 weights and activations (~1.5x faster, cosine ~0.9995)
        self.quantize = quantize
        #: a row's vector does not depend on the other rows of its call (fp32, blockwise int8): batches and
        #: packed views as in fp32; dynamic int8 scales activations per call, so it runs one text per call
        self._row_invariant = quantize != "int8"
        self.model_name = model
        self.path = resolve_model_path(model)
        self.device = device
        self.batch_size = batch_size
        self.fingerprint = _fingerprint(self.path)
        cfg = direct_config(self.path)
        if cfg is None:
            raise OnnxUnavailable(
                f"the ONNX backend supports Transformer -> Pooling (-> Normalize) models only, not {self.path}"
            )
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:  # pragma: no cover - a dependency
            raise OnnxUnavailable("the ONNX backend needs the package 'onnxruntime'") from e
        self._pooling = cfg["pooling"]
        self.max_seq_length = int(cfg["max_seq_length"])
        self._lock = threading.Lock()  # guards the tokenizer; session.run is thread-safe
        #: texts whose embeddings are kept (LRU; 0 turns the cache off). 20,000 rows of 384 floats: 31 MB
        self.cache_size = CACHE_SIZE
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        #: prompts whose views are kept (LRU; 0 turns it off); 2,000 prompts of ~8 views: ~25 MB
        self.views_cache_size = VIEWS_CACHE_SIZE
        self._views_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        #: a batch's views: every distinct view once, several prompts' views packed into the rows of one
        #: call per core (False: each prompt's views in calls of their own, the earlier design; results
        #: equal to float rounding). Row-invariant graphs only (fp32, blockwise int8)
        self.batch_packing = True
        self._cache_lock = threading.Lock()
        self._tok = _Tokenizer(self.path, self.max_seq_length)
        self._providers = providers
        suffix = {None: "", "int8": ".int8", "int8-blocks": ".int8b"}[quantize]
        self.onnx_path = onnx_cache_path(self.fingerprint + suffix)
        self.exported: dict[str, Any] | None = None  # export info when this instance exported

        self._session = None
        if self.onnx_path.is_file():
            try:
                self._session = self._load(self.onnx_path)
            except Exception as e:  # noqa: BLE001 - corrupt / stale / unreadable: export again
                logger.warning("cached ONNX screen model %s is unusable (%s); exporting it again", self.onnx_path, e)
        if self._session is None:
            self._session = self._export_and_load()
        self.dim = int(self._meta["dim"])
        self.provider = self._session.get_providers()[0]
        # batches of texts run one text (or one prompt's packed views) per call side by side on this many
        # threads, each call on one core: on small inputs that beats splitting every call over cores
        self.parallel = _num_threads() if self.provider == "CPUExecutionProvider" else 1
        self._pool = None  # (executor, single-threaded session), made on the first batch
        self.load_seconds = time.perf_counter() - t0
        logger.info(
            "screen model %s: onnxruntime on %s (%s, %.2f s)",
            model,
            self.provider,
            self.onnx_path.name,
            self.load_seconds,
        )

    # ------------------------------------------------------------ loading

    def _load(self, src: Path | bytes):
        sess = make_session(src, device=self.device, providers=self._providers)
        meta = _meta(sess)
        want = {
            "format": EXPORT_FORMAT,
            "fingerprint": self.fingerprint,
            "pooling": self._pooling,
            "quantized": self.quantize,
        }
        bad = {k: meta.get(k) for k, v in want.items() if meta.get(k) != v}
        if bad:
            raise OnnxUnavailable(f"cached graph metadata does not match this model: {bad}")
        outputs = [o.name for o in sess.get_outputs()]
        inputs = {i.name for i in sess.get_inputs()}
        if outputs[:2] != ["embeddings", "token_states"] or not {"position_ids", "block_ids"} <= inputs:
            raise OnnxUnavailable(
                f"cached graph has inputs {sorted(inputs)} and outputs {outputs}, not format {EXPORT_FORMAT}'s"
            )
        probe = np.asarray(json.loads(meta["probe"]), dtype=np.float32)[None]
        got = _run_sorted(sess, self._tok, self._tok.encode([PROBE_TEXT]), 1, probe.shape[1])
        cos = float(_cosines(got, probe)[0])
        floor = {None: MIN_COSINE, "int8": MIN_COSINE_INT8_PROBE, "int8-blocks": MIN_COSINE_INT8_BLOCKS_PROBE}
        if not (cos >= floor[self.quantize]):
            raise OnnxUnavailable(f"cached graph fails its probe check (cosine {cos:.5f} vs torch)")
        self._meta = meta
        return sess

    def _export_and_load(self):
        from guard.screen.onnx_export import export_onnx_bytes, quantize_int8, quantize_int8_blocks

        data, info = export_onnx_bytes(self.path, fingerprint=self.fingerprint)
        if self.quantize == "int8":
            data, qinfo = quantize_int8(data, self._tok, int(info["dim"]))
            info.update(qinfo)
        elif self.quantize == "int8-blocks":
            data, qinfo = quantize_int8_blocks(data, self._tok, int(info["dim"]))
            info.update(qinfo)
        try:
            write_atomic(self.onnx_path, data)
            info["path"] = self.onnx_path
            logger.info(
                "screen model exported to ONNX in %.1f s (min cosine vs torch %.6f): %s",
                info["seconds"],
                info["min_cosine"],
                self.onnx_path,
            )
        except OSError as e:  # the cache is not writable: use the graph for this process only
            logger.warning(
                "cannot cache the ONNX screen model at %s (%s); it will be exported again next time", self.onnx_path, e
            )
            info["path"] = None
        self.exported = info
        return self._load(data)

    # ------------------------------------------------------------ interface

    @property
    def cache_key(self) -> str:
        """Same key as the torch Embedder's: the vectors agree to cosine >= 0.999, so the FAISS
        index cache is shared between the backends."""
        tag = {None: "", "int8": "-int8", "int8-blocks": "-int8b"}[self.quantize]
        return f"{Path(self.model_name).name}-{self.fingerprint}-{ENCODING_TAG}{tag}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts (several: packed to rows of a few calls, see :meth:`_encode_batch_packed`; one, or
        under dynamic int8: a call each); rows are L2-normalised float32, except for
        texts with no known word piece at all (emoji only, an unknown script): their row is zero,
        so they are similar to nothing (unknown pieces are dropped, see :func:`drop_unknown`)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        uniq = list(dict.fromkeys(texts))
        if len(uniq) < len(texts):  # identical views (a prompt repeated in a batch): encoded once
            pos = {t: i for i, t in enumerate(uniq)}
            return self.encode(uniq)[[pos[t] for t in texts]]
        if self.cache_size:
            return self._encode_cached(texts)
        return self._encode_new(texts)

    def _encode_cached(self, texts: list[str]) -> np.ndarray:
        """Recently encoded texts come from an LRU cache: prompt segments such as "highly detailed"
        or "trending on artstation" recur across prompts. A cached row equals a fresh one up to the
        float32 rounding of another batch layout (~1e-6)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        todo: list[int] = []
        with self._cache_lock:
            for i, t in enumerate(texts):
                v = self._cache.get(t)
                if v is None:
                    todo.append(i)
                else:
                    self._cache.move_to_end(t)
                    out[i] = v
        if todo:
            fresh = self._encode_new([texts[i] for i in todo])
            out[todo] = fresh
            with self._cache_lock:
                for i, row in zip(todo, fresh):
                    self._cache[texts[i]] = row
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out

    def _side_by_side(self, n: int):
        """(session, map function) for ``n`` one-text calls: with two or more texts and cores, a
        single-threaded session and a thread pool's map (onnxruntime releases the GIL); else the
        main session and the built-in map."""
        if n < 2 or self.parallel < 2:
            return self._session, map
        with self._cache_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                try:
                    src = self.onnx_path if self.onnx_path.is_file() else None
                    single = src and make_session(src, device=self.device, providers=self._providers, threads=1)
                except Exception as e:  # noqa: BLE001 - an optimisation only: run on the main session
                    logger.warning("no single-threaded ONNX session for batches (%s)", e)
                    single = None
                if not single:
                    self.parallel = 1
                    return self._session, map
                self._pool = (ThreadPoolExecutor(self.parallel, thread_name_prefix="guard-onnx"), single)
            ex, single = self._pool
        return single, ex.map

    def _run(self, encs) -> np.ndarray:
        # on CPU: one text per call, side by side on single-threaded sessions. Measured on I2P prompts at
        # batch 64 (benchmarks/encoder_speed.py, 2 cores): fp32 145 prompts per CPU-second against 112 for
        # token-length-sorted padded batches on a 2-thread session (no padding, no thread barriers per op);
        # dynamic int8 needs it anyway (activation scales per call: batch-invariant results).
        # Elsewhere (CUDA) token-length-sorted batches; fp32 batch layouts agree to float rounding.
        if not self._row_invariant or self.provider == "CPUExecutionProvider":
            sess, pmap = self._side_by_side(len(encs))
            return _run_each(sess, encs, self.dim, pmap)
        return _run_sorted(self._session, self._tok, encs, self.batch_size, self.dim)

    def _encode_new(self, texts: list[str]) -> np.ndarray:
        if self._row_invariant and self.batch_packing and len(texts) > 1:
            # many texts (a phrase bank, the static token table): packed several to a row, a few calls
            # (cold start, 2 cores: the 29,523-token static table in 26.7 s instead of 51.5 s, a call per token);
            # each vector is the one the text gets alone, to float rounding
            return self._encode_batch_packed(texts)
        with self._lock:
            encs = self._tok.encode(texts)
        encs, empty = drop_unknown(encs, self._tok.unk_id, self._tok.n_special)
        if not empty.any():
            return self._run(encs)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keep = np.flatnonzero(~empty)
        if keep.size:
            out[keep] = self._run([encs[i] for i in keep])
        return out

    def encode_views(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]) -> list[np.ndarray]:
        """For each text, ``(1 + len(spans[i]), dim)`` float32 rows: the text's vector, then the
        vector of each ``[start, end)`` character span's text as if encoded on its own (zero when it
        holds no known word piece) -- all of one text's views PACKED into one encoder call: each view a
        block of the row that attends only to itself, with its own positions
        (:func:`~guard.screen.onnx_session.run_packed`); rows of at most ``PACK_TOKENS`` tokens. In a
        batch of texts (fp32, blockwise int8; ``batch_packing``), every distinct view of all of them is
        encoded once, the views of several texts packed into the rows of one padded call per core
        (:meth:`_encode_batch_packed`): a view's vector is the one it gets alone to float rounding (views
        with the same word pieces get bitwise the same one). Dynamic int8 scales activations per call: a
        text's views stay in calls of their own, so that its rows do not depend on the batch. Recent
        (text, spans) pairs come from an LRU cache."""
        texts = list(texts)
        if len(spans) != len(texts):
            raise GuardError(f"encode_views: {len(texts)} texts but {len(spans)} span lists")
        keys = [(t, tuple(map(tuple, sp))) for t, sp in zip(texts, spans)]
        out: list[np.ndarray | None] = [None] * len(texts)
        todo: list[int] = []
        with self._cache_lock:
            for i, k in enumerate(keys):
                v = self._views_cache.get(k) if self.views_cache_size else None
                if v is None:
                    todo.append(i)
                else:
                    self._views_cache.move_to_end(k)
                    out[i] = v
        if not todo:
            return out  # type: ignore[return-value]
        pieces = [[texts[i]] + [texts[i][a:b] for a, b in keys[i][1]] for i in todo]
        # fp32 (and blockwise int8): a packed view equals the text encoded alone (to ~1e-7), so views already
        # in the text cache ("highly detailed", "trending on artstation" recur across prompts) are not encoded
        # again; a dynamic int8 row's activation scale is the whole row's, so its views are computed in place
        share = self._row_invariant and self.cache_size > 0
        known: dict[str, np.ndarray] = {}
        if share:
            with self._cache_lock:
                for ps in pieces:
                    for p in ps:
                        v = self._cache.get(p)
                        if v is not None:
                            self._cache.move_to_end(p)
                            known[p] = v
        need = [[j for j, p in enumerate(ps) if p not in known] for ps in pieces]
        if self._row_invariant and self.batch_packing and len(todo) > 1:
            # a batch: every distinct view of every prompt once, the views of several prompts packed into
            # the rows of a few calls (a view's vector is the one it gets alone, to float rounding)
            uniq = list(dict.fromkeys(pieces[k][j] for k in range(len(pieces)) for j in need[k]))
            at = {p: r for r, p in enumerate(uniq)}
            vecs = self._encode_batch_packed(uniq)
            for k, i in enumerate(todo):
                rows = np.empty((len(pieces[k]), self.dim), dtype=np.float32)
                for j, p in enumerate(pieces[k]):
                    rows[j] = known[p] if p in known else vecs[at[p]]
                out[i] = rows
            self._remember_views(keys, todo, out, pieces, need, share)
            return out  # type: ignore[return-value]
        with self._lock:
            flat = self._tok.encode([pieces[k][j] for k in range(len(pieces)) for j in need[k]])
        flat, empty = drop_unknown(flat, self._tok.unk_id, self._tok.n_special)
        sess, pmap = self._side_by_side(len(todo))
        names = [i.name for i in sess.get_inputs()]
        starts = np.cumsum([0] + [len(nd) for nd in need])

        def views(k: int) -> np.ndarray:
            rows = np.zeros((len(pieces[k]), self.dim), dtype=np.float32)
            for j, p in enumerate(pieces[k]):
                if p in known:
                    rows[j] = known[p]
            lo = int(starts[k])
            live = [r for r in range(len(need[k])) if not empty[lo + r]]  # r: index into need[k]
            for row in pack([len(flat[lo + r][0]) for r in live]):
                idx = [live[q] for q in row]
                rows[[need[k][r] for r in idx]] = run_packed(sess, names, [flat[lo + r] for r in idx], self._pooling)
            return rows

        for i, rows in zip(todo, pmap(views, range(len(todo)))):
            out[i] = rows
        self._remember_views(keys, todo, out, pieces, need, share)
        return out  # type: ignore[return-value]

    def _remember_views(self, keys, todo, out, pieces, need, share: bool) -> None:
        """Put freshly encoded views in the text cache (``share``) and the prompts' rows in the views cache."""
        for k, i in enumerate(todo):
            rows = out[i]
            if share and need[k]:
                with self._cache_lock:
                    for j in need[k]:
                        self._cache[pieces[k][j]] = rows[j]
        if share:
            with self._cache_lock:
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if self.views_cache_size:
            with self._cache_lock:
                for i in todo:
                    self._views_cache[keys[i]] = out[i]
                while len(self._views_cache) > self.views_cache_size:
                    self._views_cache.popitem(last=False)

    def _encode_batch_packed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) rows of distinct texts, packed several to a row (first-fit decreasing, rows of
        at most ``BATCH_PACK_TOKENS`` tokens) and the rows stacked in a few padded calls: one per core,
        side by side on single-threaded sessions on CPU (each call reads the weights once for all of its
        rows). A text with no known word piece gets a zero row."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            encs = self._tok.encode(texts)
        encs, empty = drop_unknown(encs, self._tok.unk_id, self._tok.n_special)
        # texts with the same word pieces ("café" and "cafe", a variant's segment and the plain one's) are
        # encoded once: bitwise the same vector, so that ties between views break as they do alone
        first: dict[tuple, int] = {}
        same_as = [first.setdefault((tuple(encs[i][0]), tuple(encs[i][1])), i) for i in range(len(encs))]
        live = [i for i in range(len(encs)) if not empty[i] and same_as[i] == i]
        if not live:
            return out
        rows = [[live[q] for q in row] for row in pack_tight([len(encs[i][0]) for i in live])]
        n_calls = min(self.parallel, len(rows)) if self.provider == "CPUExecutionProvider" else 1
        sess, pmap = self._side_by_side(n_calls)  # (one call: the main session, on every core)
        names = [i.name for i in sess.get_inputs()]
        # contiguous groups of rows of about equal tokens, one call each
        sizes = [sum(len(encs[i][0]) for i in row) for row in rows]
        bounds = np.searchsorted(np.cumsum(sizes), np.arange(1, n_calls) * sum(sizes) / n_calls, side="left") + 1
        groups = [g for g in np.split(np.arange(len(rows)), np.minimum(bounds, len(rows))) if len(g)]

        def run(group) -> list[np.ndarray]:
            texts_of = [[encs[i] for i in rows[r]] for r in group]
            return run_packed_batch(sess, names, texts_of, self._tok.pad_id, self._pooling)

        for group, got in zip(groups, pmap(run, groups)):
            for r, vecs in zip(group, got):
                out[rows[r]] = vecs
        dup = [i for i in range(len(encs)) if same_as[i] != i and not empty[i]]
        if dup:
            out[dup] = out[[same_as[i] for i in dup]]
        return out

    def clear_cache(self) -> None:
        """Forget every cached embedding (both LRU caches)."""
        with self._cache_lock:
            self._cache.clear()
            self._views_cache.clear()

    @contextlib.contextmanager
    def remembering(self, prompts: int):
        """Inside the block, keep the views of at least ``prompts`` recent prompts (where the views
        cache is on): ``guard train-screen`` featurises every training prompt, then screens them all
        again to fit the fast gate, and would otherwise encode each twice (about 300 MB for its
        28,000 prompts). Afterwards the cache is trimmed back to its own size."""
        old = self.views_cache_size
        if old:
            self.views_cache_size = max(old, int(prompts))
        try:
            yield self
        finally:
            with self._cache_lock:
                self.views_cache_size = old
                while len(self._views_cache) > old:
                    self._views_cache.popitem(last=False)

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self.model_name!r}, provider={self.provider!r}, dim={self.dim})"
