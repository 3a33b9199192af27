"""Erasure artifacts: what an eraser changed, as a small safetensors file.

File layout (safetensors):

* ``full/<param>``  – the new value of a UNet parameter (its dtype), when storing it whole is smaller;
* ``up/<param>`` + ``down/<k>`` – an exact low-rank delta ``new = original + up @ down`` (float32 factors;
  several parameters share one ``down``), when that is smaller;
* metadata ``guard.erasure`` (JSON): method, concepts, guides, preserved, hyperparameters, the base
  fingerprint (see :mod:`guard.erase.fingerprints`), library versions, elapsed seconds, and which
  ``down`` each low-rank parameter uses.

Applying and reverting artifacts is :mod:`guard.erase.weights`; making one is :mod:`guard.erase.api`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from guard.erase.fingerprints import fingerprint_variants
from guard.erase.methods import REGISTRY
from guard.errors import GuardError, GuardInputError

FORMAT = "guard.erasure"
FORMAT_VERSION = 1

__all__ = ["FORMAT", "FORMAT_VERSION", "Erasure", "build_erasure", "erasure_info"]


@dataclass
class Erasure:
    """An erasure in memory: changed UNet parameters and metadata. ``save`` writes the artifact."""

    metadata: dict[str, Any]
    full: dict[str, torch.Tensor] = field(default_factory=dict)  # param -> new value
    up: dict[str, torch.Tensor] = field(default_factory=dict)  # param -> up (out × r)
    down: dict[str, torch.Tensor] = field(default_factory=dict)  # key -> down (r × in)
    lowrank: dict[str, str] = field(default_factory=dict)  # param -> down key
    path: str | None = None

    @property
    def params(self) -> list[str]:
        return sorted(set(self.full) | set(self.up))

    @property
    def method(self) -> str:
        return self.metadata["method"]

    @property
    def base_fingerprint(self) -> str:
        return self.metadata["base_fingerprint"]

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"full/{k}": v.contiguous() for k, v in self.full.items()}
        tensors.update({f"up/{k}": v.contiguous() for k, v in self.up.items()})
        tensors.update({f"down/{k}": v.contiguous() for k, v in self.down.items()})
        meta = dict(self.metadata, lowrank=self.lowrank)
        tmp = p.with_name(p.name + ".tmp")
        save_file(
            tensors,
            str(tmp),
            metadata={
                "format": FORMAT,
                "format_version": str(FORMAT_VERSION),
                FORMAT: json.dumps(meta, sort_keys=True),
            },
        )
        os.replace(tmp, p)
        self.path = str(p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> Erasure:
        """Read and check an artifact; any problem is a :class:`GuardError` naming the file."""
        from safetensors import safe_open

        p = Path(path) if isinstance(path, (str, os.PathLike)) else None
        if p is None:
            raise GuardInputError(f"an erasure artifact path must be a string or path, got {type(path).__name__}")
        if not p.is_file():
            raise GuardError(f"erasure artifact not found: {p}")
        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                raw = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise GuardError(f"{p}: not a readable safetensors file ({type(e).__name__}: {e})") from None
        if raw.get("format") != FORMAT or FORMAT not in raw:
            raise GuardError(f"{p}: not a guard erasure artifact (no '{FORMAT}' metadata)")
        if raw.get("format_version") != str(FORMAT_VERSION):
            raise GuardError(
                f"{p}: erasure format version {raw.get('format_version')!r} is not supported "
                f"(this guard reads version {FORMAT_VERSION})"
            )
        try:
            meta = json.loads(raw[FORMAT])
        except ValueError as e:
            raise GuardError(f"{p}: corrupt erasure metadata ({e})") from None
        for key in ("method", "concepts", "base_fingerprint", "params"):
            if key not in meta:
                raise GuardError(f"{p}: erasure metadata lacks {key!r}")
        if meta["method"] not in REGISTRY:
            raise GuardError(f"{p}: unknown erasure method {meta['method']!r}")
        lowrank = meta.pop("lowrank", {}) or {}
        e = cls(metadata=meta, lowrank=dict(lowrank), path=str(p))
        for k, v in tensors.items():
            kind, _, name = k.partition("/")
            if kind == "full":
                e.full[name] = v
            elif kind == "up":
                e.up[name] = v
            elif kind == "down":
                e.down[name] = v
            else:
                raise GuardError(f"{p}: unexpected tensor {k!r} in an erasure artifact")
        for name in e.up:
            key = e.lowrank.get(name)
            if key is None or key not in e.down:
                raise GuardError(f"{p}: low-rank parameter {name!r} has no matching down factor")
            if e.up[name].shape[1] != e.down[key].shape[0]:
                raise GuardError(
                    f"{p}: low-rank factors of {name!r} do not fit "
                    f"({tuple(e.up[name].shape)} @ {tuple(e.down[key].shape)})"
                )
        if sorted(meta["params"]) != e.params:
            raise GuardError(f"{p}: the tensors stored do not match the parameters the metadata lists")
        return e

    def summary(self) -> dict[str, Any]:
        m = self.metadata
        return {
            "path": self.path,
            "method": m["method"],
            "concepts": m["concepts"],
            "fingerprint": m["base_fingerprint"],
        }


def erasure_info(path: str | os.PathLike) -> dict[str, Any]:
    """The artifact's metadata plus what it stores (tensors, bytes)."""
    e = Erasure.load(path)
    info = dict(e.metadata)
    info["path"] = e.path
    info["stored"] = {
        "full": len(e.full),
        "low_rank": len(e.up),
        "down_factors": len(e.down),
        "bytes": sum(t.numel() * t.element_size() for d in (e.full, e.up, e.down) for t in d.values()),
    }
    return info


# ------------------------------------------------------------------------------------ building one


def build_erasure(
    method: str,
    originals: dict[str, torch.Tensor],
    *,
    factor=None,
    full_new: dict[str, torch.Tensor] | None = None,
    meta: dict[str, Any],
) -> Erasure:
    """An :class:`Erasure` from either a shared-down factor edit (``factor``: FactorEdit, float64) or
    full new values. Each parameter is stored whichever way is smaller."""
    e = Erasure(metadata={})
    if factor is not None:
        lowrank_params = [n for n in factor.weights if factor.lowrank_is_smaller(n)]
        for name in lowrank_params:
            fdt = torch.float64 if originals[name].dtype == torch.float64 else torch.float32
            e.up[name] = factor.up(name).to(fdt)
        full_names = [n for n in factor.weights if n not in set(lowrank_params)]
        for name, v in factor.new_all(full_names).items():
            e.full[name] = v.to(originals[name].dtype).contiguous()
        if lowrank_params:
            f64 = any(e.up[n].dtype == torch.float64 for n in lowrank_params)
            e.down["0"] = factor.down.to(torch.float64 if f64 else torch.float32).contiguous()
            for name in lowrank_params:
                e.lowrank[name] = "0"
    for name, v in (full_new or {}).items():
        e.full[name] = v.to(originals[name].dtype)
    fps = fingerprint_variants({n: originals[n] for n in e.params})
    e.metadata = dict(
        meta,
        method=method,
        format_version=FORMAT_VERSION,
        params=e.params,
        shapes={n: list(originals[n].shape) for n in e.params},
        dtypes={n: str(originals[n].dtype).replace("torch.", "") for n in e.params},
        base_fingerprint=fps[""],
        base_fingerprint_float16=fps["float16"],
        base_fingerprint_bfloat16=fps["bfloat16"],
        versions=_versions(),
    )
    return e


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    import guard

    out = {"guard": guard.__version__}  # the import package's own version, whatever the distribution is called
    for pkg in ("torch", "diffusers", "transformers", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out
