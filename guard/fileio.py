"""Small file helpers shared by every part that writes caches, calibrations and artifacts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(out_path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``out_path`` through a temp file in the same folder and ``os.replace``:
    readers see no file, the old one, or the whole new one — never half of it."""
    out_path = Path(out_path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
