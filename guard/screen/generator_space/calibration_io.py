"""Generator-space calibration files: their format, where they live, and what they were calibrated on.

A calibration (JSON, written by ``guard calibrate``) holds one threshold per concept for one text
encoder (its :func:`~.fingerprint.model_fingerprint`). Its ``scope`` records what the benign scores
depended on: the concept set (``concepts_sha256`` over each calibrated concept's id and phrase views)
and how prompts were viewed (``normalize``, ``max_prompt_chars``). :func:`check_scope` enforces it: a
calibration made with other prompt views, or for none of the policy's concepts, is refused; concepts
added or changed since fall back to ``screen.generator_space.threshold``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard.errors import GuardError
from guard.fileio import write_atomic
from guard.policy.models import Policy

logger = logging.getLogger(__name__)

__all__ = [
    "CALIBRATION_FORMAT",
    "CALIBRATION_VERSION",
    "calibration_scope",
    "check_scope",
    "concepts_sha256",
    "default_calibration_path",
    "is_builtin_policy",
    "load_calibration",
    "phrases_sha256",
    "resolve_calibration_path",
    "save_calibration",
    "validate_calibration",
]

CALIBRATION_FORMAT = "guard.generator_space.calibration"
#: 2 adds ``scope``; version 1 files (``policy.sha256``, never checked) are still read
CALIBRATION_VERSION = 2
_READABLE_VERSIONS = (1, 2)


def phrases_sha256(phrase_views: Sequence[str]) -> str:
    """Short sha256 of one concept's phrase views (as the screen embeds them)."""
    return hashlib.sha256("\x00".join(phrase_views).encode("utf-8")).hexdigest()[:16]


def concepts_sha256(concepts: dict[str, str]) -> str:
    """sha256 of a concept set: ``{concept id: phrases_sha256}``, order-independent."""
    text = "\x00".join(f"{cid}\x01{sha}" for cid, sha in sorted(concepts.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def calibration_scope(policy: Policy, concepts: dict[str, str]) -> dict[str, Any]:
    """What a calibration's benign scores depend on besides the encoder (see the module docstring)."""
    return {
        "concepts_sha256": concepts_sha256(concepts),
        "normalize": bool(policy.screen.normalize),
        "max_prompt_chars": int(policy.screen.max_prompt_chars),
    }


def check_scope(calib: dict, policy: Policy, concepts: dict[str, str], where: str) -> list[str]:
    """Refuse ``calib`` when it was made with other prompt views or for none of ``concepts``
    (``{id: phrases_sha256}`` of the policy's screened concepts); return the ids that have no current
    threshold in it (new concepts, or concepts whose phrases changed)."""
    meta = calib.get("concepts") or {}
    thresholds = calib["thresholds"]
    stale = [
        cid
        for cid, sha in concepts.items()
        if cid not in thresholds or (meta.get(cid) or {}).get("phrases_sha256", sha) != sha
    ]
    scope = calib.get("scope")
    if scope is None:
        logger.warning(
            "%s was written by an older guard (calibration version %s, no scope): the prompt views "
            "it was made with cannot be checked; run `guard calibrate` again",
            where,
            calib.get("version"),
        )
    else:
        for key, ours in (
            ("normalize", bool(policy.screen.normalize)),
            ("max_prompt_chars", int(policy.screen.max_prompt_chars)),
        ):
            if key in scope and scope[key] != ours:
                raise GuardError(
                    f"{where} was calibrated with screen.{key} = {json.dumps(scope[key])} but policy "
                    f"{policy.name!r} has {json.dumps(ours)}: the prompts are viewed differently, so the benign "
                    "scores (and thresholds) do not carry over; run `guard calibrate` with this policy"
                )
        if scope.get("concepts_sha256") == concepts_sha256(concepts):
            return []
    if concepts and len(stale) == len(concepts):
        raise GuardError(
            f"{where} has no threshold for any concept of policy {policy.name!r} as it stands (calibrated on "
            f"{', '.join(sorted(thresholds)[:5]) or 'no concepts'}; the policy screens "
            f"{', '.join(sorted(concepts)[:5])}); it was made for another concept set: run `guard calibrate` "
            "with this policy"
        )
    return stale


def validate_calibration(calib: Any, where: str) -> None:
    """Raise :class:`GuardError` naming ``where`` unless ``calib`` is a well-formed calibration."""

    def bad(msg: str) -> GuardError:
        return GuardError(
            f"{where}: not a valid generator-space calibration: {msg}; write a new one with `guard calibrate`"
        )

    if not isinstance(calib, dict):
        raise bad(f"expected a JSON object, got {type(calib).__name__}")
    fmt = calib.get("format", CALIBRATION_FORMAT)
    if fmt != CALIBRATION_FORMAT:
        raise bad(f"format is {fmt!r}, expected {CALIBRATION_FORMAT!r}")
    ver = calib.get("version", CALIBRATION_VERSION)
    if ver not in _READABLE_VERSIONS:
        raise bad(
            f"version {ver!r} is not supported (this guard reads versions {', '.join(map(str, _READABLE_VERSIONS))})"
        )
    fp = calib.get("model_fingerprint")
    if not isinstance(fp, str) or not fp:
        raise bad("'model_fingerprint' is missing or not a string")
    th = calib.get("thresholds")
    if not isinstance(th, dict):
        raise bad("'thresholds' is missing or not a mapping of concept id to threshold")
    for k, v in th.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not -1.0 <= v <= 1.0:
            raise bad(f"threshold of {k!r} must be a number within [-1, 1], got {v!r}")
    concepts = calib.get("concepts", {})
    if not isinstance(concepts, dict) or not all(isinstance(v, dict) for v in concepts.values()):
        raise bad("'concepts' must be a mapping of concept id to details")
    for key, typ in (
        ("n_benign", int),
        ("quantile", (int, float)),
        ("created", str),
        ("policy", dict),
        ("scope", dict),
    ):
        if key in calib and not isinstance(calib[key], typ):
            raise bad(f"{key!r} has the wrong type ({type(calib[key]).__name__})")
    scope = calib.get("scope") or {}
    for key, typ in (("concepts_sha256", str), ("normalize", bool), ("max_prompt_chars", int)):
        if key in scope and not isinstance(scope[key], typ):
            raise bad(f"'scope.{key}' has the wrong type ({type(scope[key]).__name__})")


def save_calibration(calib: dict, path: str | os.PathLike) -> Path:
    """Write ``calib`` as JSON, atomically (readers see the old file or the whole new one)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    validate_calibration(calib, os.fspath(p))
    text = json.dumps(calib, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    try:
        write_atomic(p, text)
    except OSError as e:
        raise GuardError(f"cannot write calibration file {p}: {e.strerror or e}") from None
    return p


def load_calibration(path: str | os.PathLike) -> dict:
    """Read and validate a calibration file; a missing or corrupt file is a :class:`GuardError` naming it."""
    p = Path(os.path.expanduser(os.fspath(path)))
    shown = os.fspath(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GuardError(f"calibration file not found: {shown} (write it with `guard calibrate`)") from None
    except IsADirectoryError:
        raise GuardError(f"calibration path {shown} is a directory, not a file") from None
    except UnicodeDecodeError as e:
        raise GuardError(
            f"{shown}: not a valid generator-space calibration: not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None
    except OSError as e:
        raise GuardError(f"cannot read calibration file {shown}: {e.strerror or e}") from None
    try:
        calib = json.loads(text)
    except json.JSONDecodeError as e:
        raise GuardError(
            f"{shown}:{e.lineno}:{e.colno}: not a valid generator-space calibration: "
            f"malformed JSON ({e.msg}); write a new one with `guard calibrate`"
        ) from None
    validate_calibration(calib, shown)
    return calib


def resolve_calibration_path(policy: Policy) -> str | None:
    """The calibration file a policy names, as an absolute path: relative paths are taken from the
    policy file's directory (from the working directory for policies not loaded from a file)."""
    ref = policy.screen.generator_space.calibration
    if not ref:
        return None
    p = Path(os.path.expanduser(ref))
    if not p.is_absolute():
        base = policy.base_path  # base_dir, else the policy file's directory, else the working directory
        p = base / p
    return os.fspath(p.resolve())


def is_builtin_policy(policy: Policy) -> bool:
    """Whether ``policy`` was loaded from guard's built-in policy directory (not a file users edit)."""
    from guard.policy.loader import builtin_policy_dir

    if not policy.source:
        return False
    try:
        return Path(policy.source).resolve().parent == builtin_policy_dir().resolve()
    except OSError:
        return False


def default_calibration_path(policy: Policy, fingerprint: str, cwd: Path | None = None) -> Path:
    """``<policy stem>.<fingerprint>.calibration.json`` beside the policy file; in the working
    directory for built-in policies and policies not loaded from a file."""
    cwd = cwd or Path.cwd()
    if policy.source:
        src = Path(policy.source).resolve()
        if not is_builtin_policy(policy):
            return src.parent / f"{src.stem}.{fingerprint}.calibration.json"
        return cwd / f"{src.stem}.{fingerprint}.calibration.json"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in policy.name) or "policy"
    return cwd / f"{safe}.{fingerprint}.calibration.json"
