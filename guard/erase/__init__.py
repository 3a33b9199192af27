"""Weight-level concept erasers (UCE, RECE, ESD) and their fingerprinted, reversible artifacts.

    import guard.erase as ge          # guard.erase(...) also works: the package is callable
    e = ge.erase(pipe, ["nudity"], method="uce", preserve=["a person"], out="nudity.uce.safetensors")
    ge.apply_erasure(pipe, "nudity.uce.safetensors")      # checks the base fingerprint first
    ge.revert_erasure(pipe)                                # bit-identical weights again
    ge.erasure_info("nudity.uce.safetensors")

torch loads only when one of these names is used (so ``guard --help`` stays fast). See docs/erasers.md.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_NAMES = (
    "METHODS",
    "Erasure",
    "applied_erasures",
    "apply_erasure",
    "erase",
    "erasure_info",
    "erasure_stack",
    "fingerprint",
    "revert_erasure",
    "sync_erasures",
)

__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'guard.erase' has no attribute {name!r}")
    value = getattr(importlib.import_module("guard.erase.artifact"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))


class _CallableModule(types.ModuleType):
    """``guard.erase`` is both this package and the function: ``guard.erase(pipe, concepts, ...)``
    calls :func:`guard.erase.artifact.erase` whichever of the two an import left on ``guard``."""

    def __call__(self, *args: Any, **kwargs: Any):
        return __getattr__("erase")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
