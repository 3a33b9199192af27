"""Glue between policies / guarded pipelines and erasure artifacts (small, so the wiring elsewhere is
one line each): resolve a policy's ``erasers``, apply them at load (refusing a policy that disagrees
with erasers other pipelines rely on), check them per call, and describe them for reports/audit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from guard.errors import GuardError

__all__ = ["apply_policy_erasers", "check_policy_erasers", "policy_erasers", "report_entries", "resolve_eraser_path"]

_REPORT_KEYS = ("path", "method", "concepts", "strength", "fingerprint", "sha256", "mode", "source")


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


def _policy_name(policy: Any) -> str:
    name = getattr(policy, "name", None)
    return f"policy {name!r}" if name else "the policy"


def apply_policy_erasers(pipe: Any, policy: Any) -> list[dict[str, Any]]:
    """Make the policy erasures on ``pipe``'s UNet exactly the policy's list, in order, and record
    ``pipe`` as relying on them (no-op when they already are). A policy whose list differs from the
    erasers another live guarded pipeline on the same weights relies on is refused with a
    :class:`GuardError` naming both lists. Everything is checked before weights change; on any error
    the weights are left as they were."""
    wanted = policy_erasers(policy)
    unet = getattr(pipe, "unet", None)
    if unet is None:
        if wanted:
            raise GuardError(
                f"{_policy_name(policy)} lists erasers but {type(pipe).__name__} has no UNet to apply them to"
            )
        return []
    from guard.erase.weights import claim_policy_erasures

    return claim_policy_erasures(pipe, wanted, policy_name=_policy_name(policy))


def check_policy_erasers(pipe: Any, policy: Any) -> None:
    """Raise :class:`GuardError` unless the policy erasures on ``pipe``'s weights are the policy's list
    (same files, same content, same strengths): e.g. after ``guard.revert_erasure`` by hand. Cheap (file
    hashes are cached by size and modification time): meant to run on every call, failing closed."""
    from guard.erase.weights import applied_erasures, policy_identity, wanted_identity

    wanted = policy_erasers(policy)
    entries = applied_erasures(pipe)
    if not wanted and not any(e["source"] == "policy" for e in entries):
        return
    have, want = policy_identity(entries), wanted_identity(wanted)
    if have != want:
        raise GuardError(
            f"{_policy_name(policy)} lists erasers {[os.path.basename(p) for p, _, _ in want]} but "
            f"the weights carry {[os.path.basename(p) for p, _, _ in have]} (changed since the "
            "pipeline was built); set the policy again to re-apply them"
        )


def report_entries(pipe: Any) -> list[dict[str, Any]]:
    """The erasures actually applied to ``pipe``'s UNet weights, oldest first, as plain dicts for
    reports and audit lines (whichever policy or person applied them)."""
    from guard.erase.weights import applied_erasures

    return [{k: e.get(k) for k in _REPORT_KEYS} | {"concepts": list(e["concepts"])} for e in applied_erasures(pipe)]
