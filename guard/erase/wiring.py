"""Glue between policies / guarded pipelines and erasure artifacts (small, so the wiring elsewhere is
one line each): resolve a policy's ``erasers``, apply them at load, and describe them for reports/audit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["apply_policy_erasers", "policy_erasers", "report_entries", "resolve_eraser_path"]


def resolve_eraser_path(policy: Any, ref: str) -> str:
    """An eraser path from a policy, absolute: relative paths are taken from the policy file's directory
    (from the working directory for policies not loaded from a file)."""
    p = Path(os.path.expanduser(ref))
    if not p.is_absolute():
        src = getattr(policy, "source", None)
        base = getattr(policy, "base_path", None) or (Path(src).parent if src else Path.cwd())
        p = base / p
    return os.fspath(p.resolve())


def policy_erasers(policy: Any) -> list[tuple[str, float]]:
    """``[(absolute path, strength), ...]`` of a policy's ``erasers`` (empty when it has none)."""
    return [(resolve_eraser_path(policy, e.path), float(e.strength)) for e in (getattr(policy, "erasers", None) or [])]


def apply_policy_erasers(pipe: Any, policy: Any) -> list[dict[str, Any]]:
    """Make the erasures applied on behalf of the policy exactly the policy's list, in order (no-op when
    they already are; everything is checked before weights change, and a failure leaves the pipeline as
    it was and raises :class:`guard.errors.GuardError`)."""
    wanted = policy_erasers(policy)
    unet = getattr(pipe, "unet", None)
    if unet is None:
        if wanted:
            from guard.errors import GuardError

            raise GuardError(f"the policy lists erasers but {type(pipe).__name__} has no UNet to apply them to")
        return []
    if not wanted and not getattr(unet, "_guard_erasures", None):
        return []  # nothing to do: do not even import torch-heavy modules
    from guard.erase.artifact import sync_erasures

    return sync_erasures(pipe, wanted, source="policy")


def report_entries(pipe: Any) -> list[dict[str, Any]]:
    """The erasures applied to ``pipe``'s UNet, oldest first, as plain dicts for reports and audit lines."""
    unet = getattr(pipe, "unet", None)
    out = []
    for e in (getattr(unet, "_guard_erasures", None) or []):
        out.append({"path": e["path"], "method": e["method"], "concepts": list(e["concepts"]),
                    "strength": e["strength"], "fingerprint": e["fingerprint"], "mode": e["mode"],
                    "source": e["source"]})
    return out
