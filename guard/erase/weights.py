"""Erasures applied to a UNet: the state lives on the weights, not on any pipeline or policy.

Applying pushes an entry (with exact copies of the values it overwrote, the artifact's sha256 and its
base fingerprint) onto ``unet._guard_erasures``; :func:`revert_erasure` pops it and restores those
values bit for bit. An artifact applies when its fingerprint matches the current weights (made on this
model, possibly after earlier erasures: it replaces / adds its delta) or the pristine weights before
any guard erasure (made independently from the same base: its delta is added on top of what is there).

Guarded pipelines that share a UNet (``from_pipe``, ``protect`` of a pipeline sharing the weights) must
agree on its policy erasers: each one that applied or accepted them is recorded as a *holder* of the
UNet's state (weakly: a deleted pipeline holds nothing). :func:`claim_policy_erasures` refuses, with a
:class:`GuardError` naming both lists, a policy whose erasers differ from those on the weights while
another live pipeline holds them. (Refusing was chosen over giving each pipeline its own copy of the
edited modules: a copy would silently double the memory of every shared UNet, and a torch module
cannot be shared by two pipelines with different weights in it.)
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from guard.erase.artifact import Erasure
from guard.erase.fingerprints import artifact_digest, current_fingerprints, fingerprint
from guard.erase.params import check_number
from guard.errors import GuardError, GuardInputError

logger = logging.getLogger(__name__)

STACK_ATTR = "_guard_erasures"

__all__ = [
    "STACK_ATTR",
    "applied_erasures",
    "apply_erasure",
    "claim_policy_erasures",
    "erasure_stack",
    "holders",
    "policy_identity",
    "revert_erasure",
    "sync_erasures",
    "unet_of",
    "wanted_identity",
]


def unet_of(pipe: Any) -> nn.Module:
    """``pipe.unet``, or ``pipe`` itself when it is a UNet; else :class:`GuardInputError`."""
    unet = getattr(pipe, "unet", None)
    if isinstance(unet, nn.Module):
        return unet
    if isinstance(pipe, nn.Module) and hasattr(pipe, "config") and "cross_attention_dim" in pipe.config:
        return pipe
    raise GuardInputError(f"expected a diffusers pipeline with a UNet (or a UNet), got {type(pipe).__name__}")


def erasure_stack(pipe: Any) -> list[dict[str, Any]]:
    """The erasures applied to ``pipe``'s UNet, oldest first (the list itself: do not edit)."""
    unet = unet_of(pipe)
    stack = getattr(unet, STACK_ATTR, None)
    if stack is None:
        stack = []
        setattr(unet, STACK_ATTR, stack)
    return stack


def _pristine(stack: list[dict[str, Any]], name: str, current: torch.Tensor) -> torch.Tensor:
    for entry in stack:
        if name in entry["originals"]:
            return entry["originals"][name]
    return current


def _plan(unet: nn.Module, e: Erasure, strength: float) -> tuple[dict[str, torch.Tensor], str]:
    """New values for every parameter ``e`` edits, or a GuardError; nothing is changed here."""
    src = e.path or "<in-memory erasure>"
    params = dict(unet.named_parameters())
    missing = [n for n in e.params if n not in params]
    if missing:
        raise GuardError(
            f"erasure {src} edits parameters this UNet does not have (e.g. {missing[0]!r}); "
            "it was made for another architecture"
        )
    shapes = e.metadata.get("shapes", {})
    for n in e.params:
        if list(params[n].shape) != list(shapes.get(n, params[n].shape)):
            raise GuardError(
                f"erasure {src}: {n} has shape {list(params[n].shape)} here but "
                f"{shapes[n]} in the artifact; it was made for another model"
            )
    current = {n: params[n].detach().cpu() for n in e.params}
    stack = getattr(unet, STACK_ATTR, None) or []
    want = {
        e.metadata["base_fingerprint"],
        e.metadata.get("base_fingerprint_float16"),
        e.metadata.get("base_fingerprint_bfloat16"),
    } - {None}
    have_all = current_fingerprints(current)
    have = fingerprint(current)
    if have_all & want:
        mode, base = "chained", current
    else:
        pristine = {n: _pristine(stack, n, current[n]) for n in e.params}
        have_p = current_fingerprints(pristine) if stack else have_all
        if stack and have_p & want:
            mode, base = "independent", pristine
        else:
            raise GuardError(
                f"erasure {src} does not fit this model: it was made for base fingerprint "
                f"{e.metadata['base_fingerprint']} but the UNet's {len(e.params)} edited tensor(s) have "
                f"fingerprint {have}"
                + (f" (before guard's erasures: {fingerprint(pristine)})" if stack else "")
                + "; it was made for a different base model (or other erasures must be applied first)"
            )
    new: dict[str, torch.Tensor] = {}
    for n in e.params:
        cur = current[n]
        if n in e.full:
            if mode == "chained" and strength == 1.0:
                new[n] = e.full[n].to(cur.dtype)
                continue
            delta = e.full[n].to(torch.float64) - base[n].to(torch.float64)
        else:
            delta = e.up[n].to(torch.float64) @ e.down[e.lowrank[n]].to(torch.float64)
        new[n] = (cur.to(torch.float64) + strength * delta).to(cur.dtype)
        if not torch.isfinite(new[n]).all():
            raise GuardError(f"erasure {src}: applying it gives non-finite values in {n}")
    return new, mode


def apply_erasure(
    pipe: Any, path: str | os.PathLike | Erasure, strength: float = 1.0, *, source: str = "user"
) -> dict[str, Any]:
    """Apply an erasure artifact (path or :class:`Erasure`) to ``pipe``'s UNet at ``strength`` in [0, 1].

    Everything is checked (file, architecture, fingerprint, strength) before any weight changes.
    Returns the stack entry's summary (path, method, concepts, strength, mode, fingerprint, sha256).
    """
    unet = unet_of(pipe)
    strength = float(check_number(strength, "strength", lo=0.0, hi=1.0))
    e = path if isinstance(path, Erasure) else Erasure.load(path)
    digest = artifact_digest(e.path) if e.path and os.path.isfile(e.path) else None
    new, mode = _plan(unet, e, strength)
    params = dict(unet.named_parameters())
    saved = {n: params[n].detach().cpu().clone() for n in new}
    try:
        with torch.no_grad():
            for n, v in new.items():
                params[n].copy_(v.to(params[n].device))
    except BaseException:
        with torch.no_grad():
            for n, v in saved.items():
                params[n].copy_(v.to(params[n].device))
        raise
    entry = {
        "path": e.path,
        "method": e.method,
        "concepts": list(e.metadata["concepts"]),
        "strength": strength,
        "mode": mode,
        "fingerprint": e.base_fingerprint,
        "sha256": digest,
        "source": source,
        "originals": saved,
    }
    erasure_stack(pipe).append(entry)
    return _public(entry)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "originals"}


def revert_erasure(pipe: Any) -> dict[str, Any]:
    """Undo the most recently applied erasure: its parameters get back their exact previous values."""
    unet = unet_of(pipe)
    stack = erasure_stack(pipe)
    if not stack:
        raise GuardError("no erasure is applied to this pipeline; nothing to revert")
    entry = stack[-1]
    params = dict(unet.named_parameters())
    with torch.no_grad():
        for n, v in entry["originals"].items():
            params[n].copy_(v.to(params[n].device))
    stack.pop()
    return _public(entry)


def applied_erasures(pipe: Any) -> list[dict[str, Any]]:
    """Summaries of the erasures applied to ``pipe``'s UNet, oldest first (for reports and audit lines)."""
    try:
        unet = unet_of(pipe)
    except GuardInputError:
        return []
    return [_public(e) for e in (getattr(unet, STACK_ATTR, None) or [])]


def _wanted(erasers: Iterable[Any]) -> list[tuple[str, float]]:
    out = []
    for item in erasers:
        if isinstance(item, (tuple, list)):
            p, s = item
        elif isinstance(item, dict):
            p, s = item["path"], item.get("strength", 1.0)
        else:
            p, s = item.path, item.strength
        out.append((os.path.abspath(os.fspath(p)), float(s)))
    return out


def _identity(path: str, strength: float, digest: str | None) -> tuple:
    return (path, strength, digest)


def wanted_identity(want: list[tuple[str, float]]) -> list[tuple]:
    """``(path, strength, sha256 of the file)`` for each wanted ``(absolute path, strength)``."""
    out = []
    for p, s in want:
        try:
            out.append(_identity(p, s, artifact_digest(p)))
        except OSError:
            out.append(_identity(p, s, None))  # Erasure.load names the missing file
    return out


def applied_identity(stack: list[dict[str, Any]], idx: list[int]) -> list[tuple]:
    """``(path, strength, sha256)`` of the stack entries at ``idx``."""
    return [
        _identity(
            os.path.abspath(stack[i]["path"]) if stack[i]["path"] else "<in-memory erasure>",
            stack[i]["strength"],
            stack[i].get("sha256"),
        )
        for i in idx
    ]


def policy_identity(stack: list[dict[str, Any]]) -> list[tuple]:
    """``(path, strength, sha256)`` of the policy erasures in ``stack``, oldest first."""
    return applied_identity(stack, [i for i, en in enumerate(stack) if en["source"] == "policy"])


def sync_erasures(pipe: Any, erasers: Iterable[Any], *, source: str = "policy") -> list[dict[str, Any]]:
    """Make the erasures ``source`` applied to ``pipe`` exactly ``erasers`` (items with ``path`` and
    ``strength``, or ``(path, strength)`` tuples), in order. Already-applied ones (same file content and
    strength) are kept; otherwise the ones this source applied are reverted and the list applied anew.
    On any error the weights are left as they were. Returns the summaries of the applied list.

    This is the low-level operation: it does not ask other pipelines sharing the UNet (see
    :func:`claim_policy_erasures`)."""
    want = _wanted(erasers)
    stack = erasure_stack(pipe)
    mine = [i for i, en in enumerate(stack) if en["source"] == source]
    if applied_identity(stack, mine) == wanted_identity(want):
        return [_public(stack[i]) for i in mine]
    if mine and mine[0] != len(stack) - len(mine):
        raise GuardError(
            "erasures applied by hand sit on top of the policy's; revert them "
            "(guard.revert_erasure) before changing the policy's erasers"
        )
    loaded = [Erasure.load(p) for p, _ in want]  # fail on a bad file before touching anything
    undone = [(stack[i]["path"], stack[i]["strength"]) for i in mine]
    kept = [stack[i] for i in mine]
    for _ in mine:
        revert_erasure(pipe)
    applied = 0
    try:
        for e, (_, s) in zip(loaded, want):
            apply_erasure(pipe, e, s, source=source)
            applied += 1
    except BaseException:
        for _ in range(applied):
            revert_erasure(pipe)
        for en, (p, s) in zip(kept, undone):  # restore what was there
            apply_erasure(pipe, Erasure.load(p), s, source=source)
            erasure_stack(pipe)[-1]["sha256"] = en.get("sha256")
        raise
    return [_public(en) for en in erasure_stack(pipe) if en["source"] == source]


# ------------------------------------------------------------------------------------ shared weights

_HOLDERS: weakref.WeakKeyDictionary[nn.Module, weakref.WeakSet] = weakref.WeakKeyDictionary()
_HOLDERS_LOCK = threading.RLock()


def holders(pipe: Any) -> list[Any]:
    """The live guarded pipelines that hold the policy erasures of ``pipe``'s UNet (still using it)."""
    unet = unet_of(pipe)
    with _HOLDERS_LOCK:
        held = _HOLDERS.get(unet)
        return [p for p in list(held or ()) if getattr(p, "unet", None) is unet]


def _describe(entries: list[tuple]) -> str:
    if not entries:
        return "none"
    return ", ".join(f"{os.path.basename(p)} x{s:g}" + (f" (sha256 {d[:12]})" if d else "") for p, s, d in entries)


def claim_policy_erasures(pipe: Any, erasers: Iterable[Any], *, policy_name: str = "the policy") -> list[dict]:
    """Make ``pipe``'s UNet carry exactly ``erasers`` as its policy erasures and record ``pipe`` as a
    holder of that state; returns the summaries of every erasure on the weights.

    Refused (:class:`GuardError` naming the policy's erasers and those on the weights; nothing changes)
    when the lists differ while another live guarded pipeline holds the current state: changing the
    weights would silently change what that pipeline generates, and its reports would no longer match
    its policy. With no other holder (a fresh UNet, ``set_policy`` on the only pipeline, a copied UNet)
    the weights are brought to the policy's list."""
    unet = unet_of(pipe)
    want = _wanted(erasers)
    with _HOLDERS_LOCK:
        stack = erasure_stack(pipe)
        on = [i for i, en in enumerate(stack) if en["source"] == "policy"]
        have_id, want_id = applied_identity(stack, on), wanted_identity(want)
        if have_id != want_id:
            others = [p for p in holders(pipe) if p is not pipe]
            if others:
                gc.collect()  # a pipeline nobody references any more holds nothing
                others = [p for p in holders(pipe) if p is not pipe]
            if others:
                who = f"{len(others)} other guarded pipeline(s) ({', '.join(type(p).__name__ for p in others[:3])})"
                del others  # the traceback must not keep those pipelines alive
                raise GuardError(
                    f"erasers are tied to the UNet weights, which this pipeline shares: {policy_name} lists "
                    f"erasers [{_describe(want_id)}] but the weights carry [{_describe(have_id)}], which {who} "
                    "rely on. "
                    "Use a policy with the same erasers, give this pipeline its own UNet "
                    "(e.g. `from_pipe(pipe, unet=copy.deepcopy(pipe.unet), policy=...)`), or revert the "
                    "erasers first (guard.revert_erasure) once no pipeline relies on them"
                )
            sync_erasures(pipe, want, source="policy")
        held = _HOLDERS.get(unet)
        if held is None:
            held = _HOLDERS[unet] = weakref.WeakSet()
        try:
            held.add(pipe)
        except TypeError:  # an object without weak references (a test double): it cannot hold anything
            logger.debug("%s cannot be recorded as a holder of its UNet's erasures", type(pipe).__name__)
    return applied_erasures(pipe)
