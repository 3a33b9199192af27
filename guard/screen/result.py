"""The fields every prompt verdict shares: the text screen's :class:`~guard.screen.screen.ScreenResult`
and the generator-space screen's result are both a :class:`PromptVerdict` plus what their stage adds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PromptVerdict:
    """A screen's verdict on one prompt: the decision, the concept behind it, its score and threshold."""

    index: int
    decision: str  # allow | escalate | block
    category: str | None
    concept: str | None
    phrase: str | None
    score: float
    threshold: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.decision == "block"

    def _verdict_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "decision": self.decision,
            "category": self.category,
            "concept": self.concept,
            "phrase": self.phrase,
            "score": round(float(self.score), 4),
            "threshold": None if self.threshold is None else round(float(self.threshold), 4),
            "reasons": list(self.reasons),
        }
