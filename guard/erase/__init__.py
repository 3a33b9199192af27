"""Weight-level concept erasers (UCE, RECE, ESD) and their fingerprinted, reversible artifacts.

    import guard.erase as ge          # guard.erase(...) also works: the package is callable
    e = ge.erase(pipe, ["nudity"], method="uce", preserve=["a person"], out="nudity.uce.safetensors")
    ge.apply_erasure(pipe, "nudity.uce.safetensors")      # checks the base fingerprint first
    ge.revert_erasure(pipe)                                # bit-identical weights again
    ge.erasure_info("nudity.uce.safetensors")

Modules: :mod:`.api` (``erase``), :mod:`.methods` (the method registry: a new method is one file plus one
entry), :mod:`.uce` / :mod:`.rece` / :mod:`.esd` (the methods), :mod:`.artifact` (the file format),
:mod:`.fingerprints`, :mod:`.weights` (apply / revert; the state lives on the UNet), :mod:`.wiring`
(policies). torch loads only when one of these names is used (so ``guard --help`` stays fast). See
docs/erasers.md.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: public name -> the module that defines it (one job per module)
_HOMES = {
    "METHODS": "guard.erase.methods",
    "REGISTRY": "guard.erase.methods",
    "EraserMethod": "guard.erase.methods",
    "Erasure": "guard.erase.artifact",
    "erasure_info": "guard.erase.artifact",
    "erase": "guard.erase.api",
    "fingerprint": "guard.erase.fingerprints",
    "applied_erasures": "guard.erase.weights",
    "apply_erasure": "guard.erase.weights",
    "erasure_stack": "guard.erase.weights",
    "revert_erasure": "guard.erase.weights",
    "sync_erasures": "guard.erase.weights",
}
_NAMES = tuple(_HOMES)

__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'guard.erase' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))


class _CallableModule(types.ModuleType):
    """``guard.erase`` is both this package and the function: ``guard.erase(pipe, concepts, ...)``
    calls :func:`guard.erase.api.erase` whichever of the two an import left on ``guard``."""

    def __call__(self, *args: Any, **kwargs: Any):
        return __getattr__("erase")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
