"""The policy schema: pydantic v2 models, every one with ``extra="forbid"``.

A policy file is YAML; :func:`guard.policy.load_policy` reads it, resolves ``extends`` and
``include``, and validates the result against :class:`Policy`.
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

Action = Literal["block", "escalate", "allow"]

#: NudeNet v3 labels that show exposed sexual anatomy, blocked by default at 0.45.
DEFAULT_NUDENET_THRESHOLDS: dict[str, float] = {
    "FEMALE_GENITALIA_EXPOSED": 0.45,
    "MALE_GENITALIA_EXPOSED": 0.45,
    "FEMALE_BREAST_EXPOSED": 0.45,
    "BUTTOCKS_EXPOSED": 0.45,
    "ANUS_EXPOSED": 0.45,
}

_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Concept(_Strict):
    """A concept the screen looks for: example phrases and what to do when a prompt is near them."""

    id: str = Field(description="unique id, e.g. 'sexual.explicit_nudity'")
    category: str = Field(description="category reported for matches, e.g. 'sexual'")
    description: str = ""
    phrases: list[str] = Field(min_length=1, description="example phrases, synonyms, paraphrases")
    threshold: Optional[float] = Field(
        default=None, ge=0.0, le=1.0, description="cosine similarity at which the concept matches"
    )
    action: Action = "block"
    contrast: bool = Field(
        default=True,
        description="for action 'allow': a benign look-alike that lowers near matches of risky concepts "
        "(false: a signal only, e.g. for co-occurrence rules)",
    )
    terms: list[str] = Field(
        default_factory=list,
        description="key terms for the lexical layer: exact words (and misspellings of longer ones) that "
        "trigger the concept wherever they stand in a prompt; any language",
    )

    @field_validator("terms")
    @classmethod
    def _check_terms(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for i, t in enumerate(v):
            t2 = " ".join(str(t).split())
            if not t2:
                raise ValueError(f"term {i} is empty")
            if len(t2) > 100:
                raise ValueError(f"term {i} is {len(t2)} characters long (at most 100)")
            if t2 not in out:
                out.append(t2)
        return out

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError(
                "must be letters, digits, '_', '.' or '-' (no spaces), e.g. 'sexual.explicit_nudity'"
            )
        return v

    @field_validator("category")
    @classmethod
    def _check_category(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @field_validator("phrases")
    @classmethod
    def _check_phrases(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        seen: set[str] = set()
        for i, p in enumerate(v):
            p2 = " ".join(p.split())
            if not p2:
                raise ValueError(f"phrase {i} is empty")
            if len(p2) > 500:
                raise ValueError(f"phrase {i} is {len(p2)} characters long (at most 500)")
            if p2.casefold() not in seen:
                seen.add(p2.casefold())
                out.append(p2)
        return out


class GeneratorSpaceConfig(_Strict):
    """Optional second screen in the generator's own text-encoder space (see guard.screen.generator_space)."""

    enabled: bool = False
    calibration: Optional[str] = Field(
        default=None,
        description="calibration file written by `guard calibrate` (relative to the policy file); "
        "without one, `threshold` applies to every concept",
    )
    threshold: float = Field(default=0.9, gt=0.0, le=1.0, description="cosine threshold without calibration")
    action: Literal["block", "escalate"] = Field(
        default="escalate", description="what a match in generator space does"
    )


class SuspicionConfig(_Strict):
    """Optimised-prompt suspicion (gibberish sub-words, stray special tokens, symbols in words)."""

    enabled: bool = True
    threshold: float = Field(default=0.4, ge=0.0, le=1.0, description="suspicion score that counts")
    margin: float = Field(
        default=0.15, ge=0.0, le=1.0,
        description="a suspicious prompt scoring within this margin under any concept's threshold is acted on",
    )
    action: Literal["escalate", "block"] = "escalate"


class Condition(_Strict):
    """One condition of a co-occurrence rule: a concept (or any concept of a category) scores at least
    ``min_score`` (a lexical hit counts as a score of 1)."""

    concept: Optional[str] = None
    category: Optional[str] = None
    min_score: float = Field(default=0.45, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_target(self) -> "Condition":
        if (self.concept is None) == (self.category is None):
            raise ValueError("give exactly one of 'concept' or 'category'")
        return self


class Rule(_Strict):
    """A co-occurrence rule: when every condition holds, ``action`` applies even though each concept
    alone may be under its threshold (e.g. minors + sexual -> block)."""

    id: str
    description: str = ""
    all_of: list[Condition] = Field(min_length=2)
    action: Literal["block", "escalate"] = "block"


class ScreenConfig(_Strict):
    """Prompt screen settings."""

    enabled: bool = True
    model: str = Field(
        default="all-MiniLM-L6-v2",
        description="sentence-transformers model: 'all-MiniLM-L6-v2' (embedded) or a local path",
    )
    backend: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="embedding runtime: onnx (exported once, cached), torch, or auto (onnx, else torch)",
    )
    threshold: float = Field(default=0.6, gt=0.0, le=1.0, description="default concept threshold")
    escalate_margin: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="scores within this margin under a block threshold are escalated",
    )
    contrast_margin: Optional[float] = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="a match whose text is this much nearer a benign 'allow' phrase goes one level down "
        "(block -> escalate, escalate -> allow); null turns it off",
    )
    normalize: bool = True
    lexical: bool = Field(default=True, description="match concepts' key terms (exact and fuzzy) too")
    obfuscation_action: Literal["block", "escalate", "none"] = Field(
        default="block",
        description="a match found only after undoing obfuscation (leetspeak, homoglyphs, spacing, "
        "invisible or styled characters) is raised to at least this",
    )
    suspicion: SuspicionConfig = Field(default_factory=SuspicionConfig)
    segments: bool = Field(
        default=True, description="also screen comma/semicolon separated segments of long prompts"
    )
    max_prompt_chars: int = Field(default=20_000, ge=1, description="longer prompts are truncated")
    generator_space: GeneratorSpaceConfig = Field(default_factory=GeneratorSpaceConfig)


class NudeNetConfig(_Strict):
    type: Literal["nudenet"] = "nudenet"
    thresholds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_NUDENET_THRESHOLDS))
    action: Literal["blank", "flag"] = "blank"
    model_path: Optional[str] = None

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        from guard.output.labels import NUDENET_LABELS

        for label, t in v.items():
            if label not in NUDENET_LABELS:
                import difflib

                close = difflib.get_close_matches(label, NUDENET_LABELS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown NudeNet label {label!r}{hint}")
            if not 0.0 <= float(t) <= 1.0:
                raise ValueError(f"threshold for {label} must be within [0, 1], got {t}")
        return v


class OutputConfig(_Strict):
    """Output classifiers run on every generated image."""

    enabled: bool = True
    classifiers: list[NudeNetConfig] = Field(default_factory=lambda: [NudeNetConfig()])


class AuditConfig(_Strict):
    path: Optional[str] = Field(default=None, description="JSON-lines file; none = no audit log")
    store_prompts: bool = False


class Policy(_Strict):
    """A deployment's policy, after ``extends`` and ``include`` are resolved."""

    version: Literal[1] = 1
    name: str
    description: str = ""
    extends: Optional[str] = None
    include: list[str] = Field(default_factory=list)
    fail_open: bool = False
    on_block: Literal["blank", "raise"] = "blank"
    concepts: list[Concept] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    screen: ScreenConfig = Field(default_factory=ScreenConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    _source: Optional[str] = PrivateAttr(default=None)

    @property
    def source(self) -> Optional[str]:
        """The file this policy was loaded from (None when built from a dict)."""
        return self._source

    @property
    def sha256(self) -> str:
        """sha256 of the resolved policy; changes whenever anything that applies changes."""
        from guard.policy.loader import policy_sha256

        return policy_sha256(self)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _unique_ids(self) -> "Policy":
        seen: set[str] = set()
        for c in self.concepts:
            if c.id in seen:
                raise ValueError(f"concept id {c.id!r} appears more than once")
            seen.add(c.id)
        cats = {c.category for c in self.concepts}
        for i, r in enumerate(self.rules):
            for cond in r.all_of:
                if cond.concept is not None and cond.concept not in seen:
                    raise ValueError(f"rules[{i}] ({r.id}): unknown concept {cond.concept!r}")
                if cond.category is not None and cond.category not in cats:
                    raise ValueError(f"rules[{i}] ({r.id}): no concept has category {cond.category!r}")
        return self

    def threshold_for(self, concept: Concept) -> float:
        return concept.threshold if concept.threshold is not None else self.screen.threshold
