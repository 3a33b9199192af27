"""Exceptions raised by guard. Every one names what was wrong and where."""

from __future__ import annotations


class GuardError(Exception):
    """Base class of every error guard raises on purpose."""


class GuardInputError(GuardError, ValueError):
    """A caller passed something guard cannot work with (wrong type, empty, too large...)."""


class PolicyError(GuardError):
    """A policy file is missing, malformed or invalid. ``issues`` lists each problem found."""

    def __init__(self, message: str, issues: list[str] | None = None):
        super().__init__(message)
        self.issues = list(issues or [])


class GuardBlocked(GuardError):
    """Raised by a guarded pipeline instead of returning blanked images when the policy says
    ``on_block: raise``. ``report`` is the :class:`guard.report.GuardReport` of the request."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class DefenceError(GuardError):
    """A defence (screen, classifier...) failed while the policy is fail-closed."""
