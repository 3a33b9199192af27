"""One BLAS thread for the screen's small matrix products.

numpy's OpenBLAS splits even an (8 x 384) by (384 x 1,800) product over every core; on a loaded
machine the threads wait for each other and such a product takes 20 ms instead of 0.5 ms. The screen's
products are small (one prompt's views against the policy's phrases), so it runs them on the calling
thread: :func:`single_thread_blas` sets the BLAS libraries numpy loaded to one thread for its block
and restores their setting when the last concurrent caller leaves. Without ``threadpoolctl`` it
does nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_inside = 0
_saved: list[tuple[object, int]] = []
_libs: list | None = None


def _blas_libs() -> list:
    global _libs
    if _libs is None:
        try:
            import numpy  # noqa: F401 - load numpy's BLAS before looking for it
            from threadpoolctl import ThreadpoolController

            _libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception as e:  # noqa: BLE001 - optional speed-up: never a reason to fail
            logger.debug("BLAS thread control unavailable: %s", e)
            _libs = []
    return _libs


@contextmanager
def single_thread_blas() -> Iterator[None]:
    """BLAS on one thread inside the block (process-wide, reference-counted across threads)."""
    global _inside
    libs = _blas_libs()
    if not libs:
        yield
        return
    with _lock:
        if _inside == 0:
            _saved[:] = [(lib, lib.get_num_threads()) for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                for lib, n in _saved:
                    lib.set_num_threads(n)
                _saved.clear()
