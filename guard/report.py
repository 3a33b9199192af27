"""The report a guarded call returns: every decision, per image, with scores and timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: the report module imports nothing of guard at run time
    from guard.screen.screen import ScreenResult


@dataclass
class OutputVerdict:
    """What the output classifiers said about one image and what was done about it."""

    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # classifier -> label -> score
    flagged: list[str] = field(default_factory=list)  # "classifier:LABEL score>=threshold"
    action: str = "none"  # none | blank | flag
    detections: dict[str, list[dict]] = field(default_factory=dict)
    # category -> {classifier, label, score, threshold, action, hits}: the categories that flagged the image
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_flagged(self) -> bool:
        return bool(self.flagged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": {k: {lab: round(float(s), 4) for lab, s in v.items()} for k, v in self.scores.items()},
            "flagged": list(self.flagged),
            "action": self.action,
            "detections": self.detections,
            "categories": {k: dict(v) for k, v in self.categories.items()},
        }


@dataclass
class ImageReport:
    """One output image: the prompt it came from, each stage's decision, the action taken."""

    index: int
    prompt_index: int
    screen: ScreenResult | None
    output: OutputVerdict | None
    decision: str  # allowed | blocked | flagged
    blocked_by: str | None = None  # screen | output | error
    action: str = "none"  # none | blank | flag
    reasons: list[str] = field(default_factory=list)
    #: the failure of a defence (or of the pipeline) that decided or touched this image, if any
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prompt_index": self.prompt_index,
            "decision": self.decision,
            "blocked_by": self.blocked_by,
            "action": self.action,
            "reasons": list(self.reasons),
            "error": self.error,
            "screen": self.screen.to_dict() if self.screen else None,
            "output": self.output.to_dict() if self.output else None,
        }


@dataclass
class GuardReport:
    """Report of one guarded call. ``images[i]`` describes output image ``i``."""

    request_id: str
    policy_name: str
    policy_sha256: str
    pipeline: str
    images: list[ImageReport] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    erasers: list[dict[str, Any]] = field(default_factory=list)  # applied erasure artifacts, in order

    @property
    def blocked(self) -> list[int]:
        """Indices of images that were blanked or never generated."""
        return [im.index for im in self.images if im.decision == "blocked"]

    @property
    def failed(self) -> list[int]:
        """Indices of images that a failing defence or pipeline decided or touched (``error`` set)."""
        return [im.index for im in self.images if im.error]

    @property
    def any_blocked(self) -> bool:
        return any(im.decision == "blocked" for im in self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "policy": {"name": self.policy_name, "sha256": self.policy_sha256},
            "pipeline": self.pipeline,
            "images": [im.to_dict() for im in self.images],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "errors": list(self.errors),
            "notes": list(self.notes),
            "erasers": [dict(e) for e in self.erasers],
        }

    def __str__(self) -> str:
        lines = [
            f"guard report {self.request_id} · policy {self.policy_name} ({self.policy_sha256[:12]}) · {self.pipeline}"
        ]
        for im in self.images:
            s = im.screen
            scr = (
                f"screen={s.decision}"
                + (
                    f"({s.concept} {s.score:.2f}/{s.threshold:.2f})"
                    if s and s.concept and s.decision != "allow"
                    else ""
                )
                if s
                else "screen=-"
            )
            out = "output=-"
            if im.output is not None:
                out = "output=" + (",".join(im.output.flagged) if im.output.flagged else "ok")
            lines.append(
                f"  image {im.index} (prompt {im.prompt_index}): {im.decision.upper()} {scr} {out} action={im.action}"
            )
        if self.timings_ms:
            lines.append("  timings ms: " + ", ".join(f"{k}={v:.1f}" for k, v in self.timings_ms.items()))
        for er in self.erasers:
            lines.append(
                f"  eraser: {er['method']} {', '.join(er['concepts'])} x{er['strength']:g} "
                f"({er['path']}, base {er['fingerprint'][:12]})"
            )
        for e in self.errors:
            lines.append(f"  error: {e}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)
