"""Audit log: one JSON line per image, written whole.

Each request's lines go out in one ``write(2)`` on a file opened with ``O_APPEND`` under a
process-wide lock, so concurrent threads never interleave or lose lines, and other processes
appending to the same file get whole lines too (on local file systems).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from guard.errors import GuardError

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: str) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(path)
        if lock is None:
            lock = _LOCKS[path] = threading.Lock()
        return lock


def prompt_digest(prompt: str | None) -> str | None:
    if prompt is None:
        return None
    return "sha256:" + hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()


def redact(text: str, prompts: Iterable[str | None]) -> str:
    """``text`` with every prompt of the request it contains replaced by the prompt's digest, so an
    error message that quotes a prompt does not put it in the log raw (unless ``store_prompts``)."""
    for p in sorted({p for p in prompts if p and len(p) >= 3}, key=len, reverse=True):
        if p in text:
            text = text.replace(p, f"<prompt {prompt_digest(p)[:19]}>")
    return text


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Appends JSON lines to ``path``; prompts are stored as sha256 unless ``store_prompts``."""

    def __init__(self, path: str | os.PathLike, store_prompts: bool = False):
        self.path = Path(os.path.expandvars(os.path.expanduser(os.fspath(path)))).absolute()
        self.store_prompts = store_prompts
        self._lock = _lock_for(str(self.path))

    def prompt_field(self, prompt: str | None) -> dict[str, Any]:
        if self.store_prompts:
            return {"prompt": prompt}
        return {"prompt_sha256": prompt_digest(prompt)}

    def write(self, events: Iterable[dict[str, Any]]) -> int:
        """Write events as JSON lines in one append; returns the number of lines written."""
        lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":"), default=str) for e in events]
        if not lines:
            return 0
        blob = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as e:
                raise GuardError(f"cannot open audit log {self.path}: {e.strerror or e}") from e
            start = written = 0
            try:
                start = os.fstat(fd).st_size
                view = memoryview(blob)
                while view:  # the OS may take only part of the buffer: write the rest, never drop it
                    n = os.write(fd, view)
                    if n <= 0:
                        raise OSError(f"write returned {n} with {len(view)} bytes left")
                    written += n
                    view = view[n:]
            except OSError as e:
                if written:  # take back our half-written lines if nobody appended after them
                    try:
                        if os.fstat(fd).st_size == start + written:
                            os.ftruncate(fd, start)
                    except OSError:  # pragma: no cover - best effort
                        pass
                raise GuardError(f"cannot write audit log {self.path}: {e.strerror or e}") from e
            finally:
                os.close(fd)
        return len(lines)
