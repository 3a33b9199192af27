"""Checks of eraser inputs (concept lists, numbers) and the hyperparameter spec each eraser method declares."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from guard.errors import GuardInputError

__all__ = ["Param", "check_number", "check_params", "str_list"]


def str_list(value: Any, what: str, allow_empty: bool = True) -> list[str]:
    """``value`` (a string or a list of strings) as a list of whitespace-collapsed strings."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise GuardInputError(f"{what} must be a string or a list of strings, got {type(value).__name__}")
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise GuardInputError(f"{what}[{i}] must be a string, got {type(v).__name__}")
        out.append(" ".join(v.split()))
    if not allow_empty and not out:
        raise GuardInputError(f"{what} is empty: give at least one")
    return out


def check_number(
    value: Any,
    what: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    integer: bool = False,
) -> Any:
    """``value`` when it is a finite number (an int with ``integer``) within the bounds, else a
    :class:`GuardInputError` naming ``what``. Booleans are not numbers here."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise GuardInputError(f"{what} must be {kind}, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise GuardInputError(f"{what} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise GuardInputError(f"{what} must be <= {hi}, got {value!r}")
    return value


@dataclass(frozen=True)
class Param:
    """One hyperparameter of an eraser method: its default and what values it accepts."""

    default: Any
    help: str = ""
    kind: str = "number"  # number | bool | path
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    integer: bool = False
    optional: bool = False  # None is accepted (and means the method's own default)

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise GuardInputError(f"{name} must be true or false, got {value!r}")
            return value
        if self.kind == "path":
            import os

            if not isinstance(value, (str, os.PathLike)):
                raise GuardInputError(f"{name} must be a path, got {type(value).__name__}")
            return os.fspath(value)
        return check_number(value, name, lo=self.lo, hi=self.hi, lo_open=self.lo_open, integer=self.integer)


def check_params(method: str, spec: dict[str, Param], given: dict[str, Any]) -> dict[str, Any]:
    """Every hyperparameter of ``spec`` with its checked value (given, or the default); an unknown name
    is a :class:`GuardInputError` with a did-you-mean and the accepted names."""
    for name in given:
        if name not in spec:
            close = difflib.get_close_matches(name, list(spec), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise GuardInputError(
                f"{method} has no hyperparameter {name!r}{hint} (it takes: {', '.join(sorted(spec)) or 'none'})"
            )
    return {name: p.check(name, given.get(name, p.default)) for name, p in spec.items()}
