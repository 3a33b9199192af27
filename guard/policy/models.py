"""The policy schema: pydantic v2 models, every one strict and with ``extra="forbid"``.

A policy file is YAML; :func:`guard.policy.load_policy` reads it, resolves ``extends``, ``include``
and ``amend``, and validates the result against :class:`Policy`. Types are strict (``true`` is not
the number 1, ``"0.5"`` is not a number), floats must be finite, unknown keys are errors. Every field
has a ``description``: ``docs/policy.md`` is generated from them (``python -m guard.policy.docs``).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

#: What a concept is for: block or escalate a prompt near it, lower near matches of risky concepts
#: (a benign look-alike), or only feed co-occurrence rules (a signal).
Role = Literal["block", "escalate", "benign_contrast", "signal"]
#: The old spelling of a concept's role, still accepted: allow meant benign_contrast (or signal with
#: ``contrast: false``).
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
_MAX_ID = 200


def legacy_role(action: Any, contrast: Any = None) -> Any:
    """The ``role`` an old ``action`` (and ``contrast``) meant; anything unknown is returned as is."""
    if action == "allow":
        return "signal" if contrast is False else "benign_contrast"
    return action


def _check_label_thresholds(v: dict, labels, kind: str, lo: float, hi: float) -> None:
    """Every key a known label of the classifier (with a did-you-mean), every value within [lo, hi]."""
    import difflib

    for label, t in v.items():
        if label not in labels:
            close = difflib.get_close_matches(label, list(labels), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {kind} label {label!r}{hint}")
        if not lo <= float(t) <= hi:
            raise ValueError(f"threshold for {label} must be within [{lo:g}, {hi:g}], got {t}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)


class Concept(_Strict):
    """A concept the screen looks for: example phrases, and the role a prompt near them plays."""

    id: str = Field(description="unique id, e.g. 'sexual.explicit_nudity' (letters, digits, '_', '.', '-')")
    category: str = Field(description="category reported for matches, e.g. 'sexual'")
    description: str = Field(default="", description="what the concept covers, for people")
    phrases: list[str] = Field(min_length=1, description="example phrases, synonyms, paraphrases")
    threshold: Optional[float] = Field(
        default=None, ge=0.0, le=1.0,
        description="cosine similarity at which the concept matches; default `screen.threshold`",
    )
    role: Role = Field(
        default="block",
        description="block: a match blocks the prompt; escalate: a match escalates it (guidance, review); "
        "benign_contrast: a benign look-alike whose near matches lower risky concepts' matches one level; "
        "signal: matches only feed co-occurrence `rules`. The old `action: block | escalate | allow` (with "
        "`contrast: false` for a signal) is still read and mapped: allow -> benign_contrast (signal when "
        "`contrast: false`)",
    )
    terms: list[str] = Field(
        default_factory=list,
        description="key terms for the lexical layer: exact words (and misspellings of longer ones) that "
        "trigger the concept wherever they stand in a prompt; any language",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_action(cls, data: Any) -> Any:
        """Read the old ``action``/``contrast`` keys as ``role`` (a policy that states both must agree)."""
        if not isinstance(data, dict) or ("action" not in data and "contrast" not in data):
            return data
        data = dict(data)
        action = data.pop("action", None)
        contrast = data.pop("contrast", None)
        if contrast is not None and not isinstance(contrast, bool):
            raise PydanticCustomError("contrast", "contrast (old spelling): expected true or false, got {got}",
                                      {"got": type(contrast).__name__})
        if action is not None and action not in ("block", "escalate", "allow"):
            raise PydanticCustomError(
                "action", "action (old spelling of role): expected 'block', 'escalate' or 'allow', got {got}",
                {"got": repr(action)[:60]})
        role = data.get("role")
        if action is not None:
            mapped = legacy_role(action, contrast)
            if role is not None and role != mapped:
                raise PydanticCustomError("role_conflict", "role {role!r} contradicts action {action!r} "
                                          "(which means role {mapped!r}); give role only",
                                          {"role": str(role)[:60], "action": action, "mapped": mapped})
            data["role"] = mapped
        elif contrast is not None and role in ("benign_contrast", "signal"):
            data["role"] = "benign_contrast" if contrast else "signal"
        return data

    @property
    def action(self) -> str:
        """The screen decision of a match: 'block', 'escalate', or 'allow' (benign_contrast and signal)."""
        return self.role if self.role in ("block", "escalate") else "allow"

    @property
    def contrast(self) -> bool:
        """Whether the concept is a benign look-alike that lowers near matches of risky concepts."""
        return self.role == "benign_contrast"

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
        if len(v) > _MAX_ID:
            raise ValueError(f"is {len(v)} characters long (at most {_MAX_ID})")
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

    enabled: bool = Field(default=False, description="run the generator-space screen on every prompt")
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

    enabled: bool = Field(default=True, description="score prompts for signs of optimisation attacks")
    threshold: float = Field(default=0.4, ge=0.0, le=1.0, description="suspicion score that counts")
    margin: float = Field(
        default=0.15, ge=0.0, le=1.0,
        description="a suspicious prompt scoring within this margin under any concept's threshold is acted on",
    )
    action: Literal["escalate", "block"] = Field(
        default="escalate", description="what a suspicious prompt near a concept's threshold gets"
    )


class Condition(_Strict):
    """One condition of a co-occurrence rule: a concept (or any concept of a category) scores at least
    ``min_score`` (a lexical hit counts as a score of 1)."""

    concept: Optional[str] = Field(default=None, description="a concept id of this policy")
    category: Optional[str] = Field(default=None, description="any concept of this category (block or escalate)")
    min_score: float = Field(default=0.45, ge=0.0, le=1.0, description="score the concept must reach")

    @model_validator(mode="after")
    def _one_target(self) -> "Condition":
        if (self.concept is None) == (self.category is None):
            raise ValueError("give exactly one of 'concept' or 'category'")
        return self


class Rule(_Strict):
    """A co-occurrence rule: when every condition holds, ``action`` applies even though each concept
    alone may be under its threshold (e.g. minors + sexual -> block)."""

    id: str = Field(description="unique rule id, reported as the matched concept")
    description: str = Field(default="", description="what the rule is for, for people")
    all_of: list[Condition] = Field(min_length=2, description="conditions that must all hold (two or more)")
    action: Literal["block", "escalate"] = Field(default="block", description="what the prompt gets")


class ScreenConfig(_Strict):
    """Prompt screen settings."""

    enabled: bool = Field(default=True, description="screen every prompt before anything is generated")
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
        description="a match whose text is this much nearer a benign_contrast phrase goes one level down "
        "(block -> escalate, escalate -> allow); null turns it off",
    )
    normalize: bool = Field(default=True, description="NFKC, casefold, invisible characters stripped")
    lexical: bool = Field(default=True, description="match concepts' key terms (exact and fuzzy) too")
    obfuscation_action: Literal["block", "escalate", "none"] = Field(
        default="block",
        description="a match found only after undoing obfuscation (leetspeak, homoglyphs, spacing, "
        "invisible or styled characters) is raised to at least this",
    )
    suspicion: SuspicionConfig = Field(default_factory=SuspicionConfig, description="optimised-prompt suspicion")
    segments: bool = Field(
        default=True, description="also screen comma/semicolon separated segments of long prompts"
    )
    max_prompt_chars: int = Field(default=20_000, ge=1, description="longer prompts are truncated")
    generator_space: GeneratorSpaceConfig = Field(
        default_factory=GeneratorSpaceConfig, description="second screen in the generator's text-encoder space"
    )


class NudeNetConfig(_Strict):
    """NudeNet v3 body-part detector (onnxruntime, batched); gives boxes for the ``*_boxes`` actions."""

    type: Literal["nudenet"] = Field(default="nudenet", description="classifier kind")
    thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_NUDENET_THRESHOLDS),
        description="NudeNet label -> detection score at which the image is flagged (labels not named never flag)",
    )
    action: Literal[
        "blank", "black", "placeholder", "pixelate", "blur", "pixelate_boxes", "blur_boxes", "flag"
    ] = Field(default="blank", description="what a flag does to the image (blank = black)")
    model_path: Optional[str] = Field(default=None, description="ONNX model file; default the one nudenet ships")
    providers: Optional[list[str]] = Field(
        default=None,
        description="onnxruntime execution providers; default CUDA when available (onnxruntime-gpu), then CPU",
    )
    batch_size: int = Field(default=8, ge=1, le=256, description="images per onnxruntime run")

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        from guard.output.labels import NUDENET_LABELS

        _check_label_thresholds(v, NUDENET_LABELS, "NudeNet", 0.0, 1.0)
        return v


class SafetyCheckerConfig(_Strict):
    """diffusers' ``StableDiffusionSafetyChecker`` (CLIP ViT-L/14 + 17 concept and 3 special-care
    embeddings). A label's score is the checker's margin ``cosine - (threshold + sensitivity)``;
    a concept flags when its margin is above the policy threshold (default 0, the checker's rule)."""

    type: Literal["safety_checker"] = Field(default="safety_checker", description="classifier kind")
    model_path: str = Field(
        default="CompVis/stable-diffusion-safety-checker",
        description="local directory or hub id (the hub is used only when reachable)",
    )
    subfolder: Optional[str] = Field(default=None, description="e.g. 'safety_checker' inside a pipeline folder")
    sensitivity: float = Field(
        default=0.0, ge=-1.0, le=1.0,
        description="offset added to every concept threshold of the checker: negative = stricter",
    )
    flag_only: bool = Field(default=False, description="report, never alter the image (same as action: flag)")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="per-label margin thresholds (nsfw_concept_<i>, special_<i>); concepts not named use 0, "
        "special-care labels flag only when named",
    )
    action: Literal[
        "blank", "black", "placeholder", "pixelate", "blur", "pixelate_boxes", "blur_boxes", "flag"
    ] = Field(default="blank", description="what a flag does to the image")
    device: str = Field(default="auto", description="torch device; auto = cuda when available, else cpu")

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        from guard.output.labels import SAFETY_CHECKER_LABELS

        _check_label_thresholds(v, SAFETY_CHECKER_LABELS, "safety-checker", -1.0, 1.0)
        return v

    @model_validator(mode="after")
    def _flag_only(self) -> "SafetyCheckerConfig":
        if self.flag_only:
            if "action" in self.model_fields_set and self.action != "flag":
                raise ValueError(f"flag_only: true contradicts action: {self.action}")
            self.action = "flag"
        return self


class ClipZeroShotConfig(_Strict):
    """Zero-shot CLIP classifier for the policy's own concepts (a character, an artist's style...):
    each image against every concept phrase and every neutral phrase."""

    type: Literal["clip_zero_shot"] = Field(default="clip_zero_shot", description="classifier kind")
    model_path: str = Field(description="directory (or hub id) of a transformers CLIPModel with its tokenizer")
    concepts: dict[str, list[str]] = Field(min_length=1, description="label -> phrases describing it")
    neutral: list[str] = Field(
        default_factory=lambda: ["a photo", "a picture of an everyday scene", "a painting", "a landscape",
                                 "a portrait of a person", "an object"],
        min_length=1, description="phrases for everything else (softmax mode competes against them)",
    )
    mode: Literal["softmax", "cosine"] = Field(
        default="softmax",
        description="softmax: a label's probability over all phrases (its own summed); cosine: its best raw cosine",
    )
    threshold: Optional[float] = Field(
        default=None, description="threshold of labels not in `thresholds`; default 0.5 (softmax) or 0.25 (cosine)"
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="label -> its own threshold")
    logit_scale: Optional[float] = Field(default=None, gt=0.0, le=1000.0,
                                         description="softmax temperature; default the model's own")
    action: Literal[
        "blank", "black", "placeholder", "pixelate", "blur", "pixelate_boxes", "blur_boxes", "flag"
    ] = Field(default="blank", description="what a flag does to the image")
    device: str = Field(default="auto", description="torch device; auto = cuda when available, else cpu")

    @field_validator("concepts")
    @classmethod
    def _check_concepts(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for label, phrases in v.items():
            if not _ID_RE.match(label):
                raise ValueError(f"concept label {label!r} must be letters, digits, '_', '.' or '-'")
            clean = [" ".join(str(p).split()) for p in phrases]
            if not clean or not all(clean):
                raise ValueError(f"concept {label!r} needs at least one non-empty phrase")
            out[label] = clean
        return out

    @field_validator("neutral")
    @classmethod
    def _check_neutral(cls, v: list[str]) -> list[str]:
        clean = [" ".join(str(p).split()) for p in v]
        if not all(clean):
            raise ValueError("neutral phrases must not be empty")
        return clean

    @model_validator(mode="after")
    def _check_thresholds(self) -> "ClipZeroShotConfig":
        lo = 0.0 if self.mode == "softmax" else -1.0
        if self.threshold is None:
            self.threshold = 0.5 if self.mode == "softmax" else 0.25
        for label, t in [("threshold", self.threshold), *self.thresholds.items()]:
            if label != "threshold" and label not in self.concepts:
                raise ValueError(f"thresholds: {label!r} is not one of the concepts ({', '.join(self.concepts)})")
            if not lo <= float(t) <= 1.0:
                raise ValueError(f"threshold for {label} must be within [{lo:g}, 1] in {self.mode} mode, got {t}")
        return self

    def threshold_for(self, label: str) -> float:
        return float(self.thresholds.get(label, self.threshold))


class OutputActionsConfig(_Strict):
    """How the image-altering actions behave."""

    box_padding: float = Field(
        default=0.15, ge=0.0, le=2.0, description="a box grows by this fraction of its width/height on each side"
    )
    blur_radius: float = Field(
        default=0.1, gt=0.0, le=1.0, description="blur radius as a fraction of the region's shorter side"
    )
    pixelate_cells: int = Field(default=8, ge=1, le=1024, description="cells along the region's shorter side")
    placeholder: Optional[str] = Field(
        default=None, description="image file shown instead of a flagged image (action: placeholder)"
    )


OutputClassifierConfig = NudeNetConfig | SafetyCheckerConfig | ClipZeroShotConfig

def _fmt_loc(loc: tuple) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in loc).lstrip(".")


_CLASSIFIER_TYPES: dict[str, type[_Strict]] = {
    "nudenet": NudeNetConfig, "safety_checker": SafetyCheckerConfig, "clip_zero_shot": ClipZeroShotConfig,
}


class OutputConfig(_Strict):
    """Output classifiers run on every generated image, in order (cheap first). ``require: any``: an
    image is flagged when any classifier flags it; ``all``: only when every one does, and each later
    classifier runs only on the images all earlier ones flagged (a confirming cascade)."""

    enabled: bool = Field(default=True, description="check every generated image")
    classifiers: list[OutputClassifierConfig] = Field(
        default_factory=lambda: [NudeNetConfig()],
        description="classifiers by `type` (nudenet, safety_checker, clip_zero_shot), cheap first",
    )
    require: Literal["any", "all"] = Field(
        default="any", description="any: a flag from one classifier counts; all: every classifier must agree"
    )
    actions: OutputActionsConfig = Field(
        default_factory=OutputActionsConfig, description="how the image-altering actions behave"
    )

    @field_validator("classifiers", mode="before")
    @classmethod
    def _dispatch_classifiers(cls, v):
        """Pick each entry's model by its ``type`` (default nudenet); errors keep the plain
        ``classifiers[i].key`` location (a tagged union would insert the tag into it)."""
        from pydantic import ValidationError
        from pydantic_core import PydanticCustomError

        if not isinstance(v, (list, tuple)):
            return v
        out, errors = [], []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                out.append(item)
                continue
            kind = item.get("type", "nudenet")
            model = _CLASSIFIER_TYPES.get(kind) if isinstance(kind, str) else None
            if model is None:
                errors.append({"type": PydanticCustomError(
                    "unknown_classifier", "unknown classifier type; expected one of {expected}",
                    {"expected": ", ".join(_CLASSIFIER_TYPES)}), "loc": (i, "type"),
                    "input": kind})
                continue
            try:
                out.append(model.model_validate(item))
            except ValidationError as e:
                for err in e.errors():
                    d = {"type": err["type"], "loc": (i, *err["loc"]), "input": err.get("input")}
                    if "ctx" in err:
                        d["ctx"] = err["ctx"]
                    errors.append(d)
        if errors:
            try:
                exc = ValidationError.from_exception_data("OutputConfig", errors)
            except Exception:  # an error type pydantic cannot rebuild: say where, at least
                raise ValueError("invalid classifier settings at " + ", ".join(
                    _fmt_loc(e["loc"]) for e in errors)) from None
            raise exc
        return out

    @model_validator(mode="after")
    def _check_placeholder(self) -> "OutputConfig":
        for i, c in enumerate(self.classifiers):
            if c.action == "placeholder" and not self.actions.placeholder:
                raise ValueError(f"classifiers[{i}] has action 'placeholder' but output.actions.placeholder "
                                 "names no image file")
        return self


class SLDConfig(_Strict):
    """Safe Latent Diffusion parameters (defaults: the 'medium' preset of diffusers'
    StableDiffusionPipelineSafe)."""

    scale: float = Field(default=1000.0, ge=0.0, description="sld_guidance_scale")
    threshold: float = Field(default=0.01, description="sld_threshold")
    momentum_scale: float = Field(default=0.3, ge=0.0, description="sld_momentum_scale")
    mom_beta: float = Field(default=0.4, ge=0.0, le=1.0, description="sld_mom_beta")


class GuidanceConfig(_Strict):
    """Negative guidance injected into the UNet's noise predictions (ACE- or SLD-style)."""

    enabled: bool = Field(default=True, description="plan negative guidance for the images `apply` selects")
    concepts: list[str] = Field(
        default_factory=list,
        description="concept ids of this policy or free-text phrases to steer away from; an entry that looks "
        "like an id (a dot, no spaces) must name a concept of this policy; empty: the first phrase of every "
        "blocking concept of the categories sexual and violence",
    )
    mode: Literal["ace", "sld"] = Field(default="ace", description="ace: both CFG branches; sld: Safe Latent "
                                        "Diffusion's guidance")
    eta_uncond: float = Field(default=1.0, ge=0.0, le=10.0, description="ACE: push on the unconditional branch")
    eta_cond: float = Field(default=1.0, ge=0.0, le=10.0, description="ACE: push on the conditional branch")
    warmup_steps: int = Field(default=0, ge=0, description="denoising steps before guidance starts")
    apply: Literal["auto", "always", "escalated", "editing"] = Field(
        default="auto",
        description="auto: always on editing pipelines, on text-to-image only for escalated prompts",
    )
    branch_per_concept: bool = Field(
        default=False, description="one batch slot per concept instead of one shared (constant cost)"
    )
    sld: SLDConfig = Field(default_factory=SLDConfig, description="SLD parameters (mode: sld)")


class InputCheckConfig(_Strict):
    """The output classifiers also run on input images of editing pipelines (init, inpaint, pix2pix)."""

    enabled: bool = Field(default=True, description="check input images with the output classifiers")
    action: Literal["block", "escalate", "allow"] = Field(
        default="block", description="what a flagged input image does to the request"
    )


class EraserRef(_Strict):
    """A weight-level erasure artifact (written by `guard erase`) applied when a guarded pipeline loads."""

    path: str = Field(description="erasure artifact (.safetensors); relative paths are taken from the policy file")
    strength: float = Field(default=1.0, ge=0.0, le=1.0, description="fraction of the artifact's change to apply")

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()


class AuditConfig(_Strict):
    """The audit log: one JSON line per image."""

    path: Optional[str] = Field(default=None, description="JSON-lines file; none = no audit log")
    store_prompts: bool = Field(default=False, description="log prompts as text (false: as sha256)")


class Policy(_Strict):
    """A deployment's policy. ``extends``, ``include`` and ``amend`` are applied by the loader: a loaded
    policy has them empty and lists every concept it applies."""

    version: Literal[1] = Field(default=1, description="policy format version (1)")
    name: str = Field(description="the policy's name, reported with every decision")
    description: str = Field(default="", description="what the policy is for, for people")
    extends: Optional[str] = Field(
        default=None,
        description="a parent policy (a path relative to this file, or a built-in name): this file is merged "
        "onto it by the merge rule (maps merge, `concepts`/`rules` by id, the rest overrides, `!replace` "
        "replaces)",
    )
    include: list[str] = Field(
        default_factory=list,
        description="concept banks (paths relative to this file) whose `concepts` are added before this "
        "file's own; an id defined twice across them and this file is an error",
    )
    amend: list[dict] = Field(
        default_factory=list,
        description="partial concepts (`id` plus the keys to change) merged into concepts defined by an "
        "included bank or the parent; the id must exist",
    )
    base_dir: Optional[str] = Field(
        default=None,
        description="directory that relative paths in this policy (erasers, calibration, placeholder, "
        "extends, include) are taken from; default: the policy file's directory (the working directory "
        "for a policy given as a mapping). Stored copies (a saved pipeline) record it; not part of the sha256",
    )
    fail_open: bool = Field(
        default=False, description="false: a defence that errors blocks the request; true: the request goes on"
    )
    on_block: Literal["blank", "raise"] = Field(
        default="blank", description="blank: blocked images come back black and flagged; raise: GuardBlocked"
    )
    concepts: list[Concept] = Field(default_factory=list, description="the concepts the prompt screen looks for")
    rules: list[Rule] = Field(default_factory=list, description="co-occurrence rules over concepts")
    screen: ScreenConfig = Field(default_factory=ScreenConfig, description="prompt screen settings")
    output: OutputConfig = Field(default_factory=OutputConfig, description="output image classifiers")
    guidance: GuidanceConfig = Field(default_factory=GuidanceConfig, description="negative guidance")
    input_images: InputCheckConfig = Field(
        default_factory=InputCheckConfig, description="checks of input images (editing pipelines)"
    )
    erasers: list[EraserRef] = Field(
        default_factory=list,
        description="erasure artifacts applied to the UNet, in order, when a guarded pipeline loads; "
        "an artifact made for another base model is refused",
    )
    audit: AuditConfig = Field(default_factory=AuditConfig, description="audit log settings")

    _source: Optional[str] = PrivateAttr(default=None)
    _notes: list = PrivateAttr(default_factory=list)
    _sha256: Optional[str] = PrivateAttr(default=None)

    @property
    def source(self) -> Optional[str]:
        """The file this policy was loaded from (None when built from a mapping)."""
        return self._source

    @property
    def notes(self) -> list[str]:
        """What the loader read in an old spelling and how (e.g. ``action: allow`` -> ``role: benign_contrast``)."""
        return list(self._notes)

    @property
    def base_path(self) -> Path:
        """The directory relative paths are taken from: ``base_dir``, else the policy file's directory,
        else the working directory."""
        if self.base_dir:
            b = Path(os.path.expanduser(self.base_dir))
            if not b.is_absolute() and self._source:
                b = Path(self._source).parent / b
            return b
        if self._source:
            return Path(self._source).parent
        return Path.cwd()

    def resolve_path(self, ref: str) -> str:
        """``ref`` (a path written in this policy) as an absolute path, relative ones from :attr:`base_path`."""
        p = Path(os.path.expanduser(ref))
        if not p.is_absolute():
            p = self.base_path / p
        return os.fspath(p.resolve())

    @property
    def sha256(self) -> str:
        """sha256 of the resolved policy as written (paths as written, ``base_dir`` left out): the same for
        the file, the runtime guard and a saved pipeline."""
        from guard.policy.loader import policy_sha256

        return policy_sha256(self)

    @field_validator("version", mode="before")
    @classmethod
    def _check_version(cls, v: Any) -> Any:
        if type(v) is not int:  # true and 1.0 equal 1 in Python; a version is the integer 1
            raise PydanticCustomError("version", "expected the integer 1, got {got}", {"got": repr(v)[:60]})
        return v

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        if len(v) > 200:
            raise ValueError(f"is {len(v)} characters long (at most 200)")
        return v.strip()

    @model_validator(mode="after")
    def _cross_references(self) -> "Policy":
        """Concept ids unique; rules and guidance name concepts that exist (with a did-you-mean)."""
        errors: list[dict] = []

        def problem(loc: tuple, msg: str, value: Any) -> None:
            errors.append({"type": PydanticCustomError("reference", "{msg}", {"msg": msg}), "loc": loc,
                           "input": value})

        seen: dict[str, int] = {}
        for i, c in enumerate(self.concepts):
            if c.id in seen:
                problem(("concepts", i, "id"), f"concept id {c.id!r} appears more than once "
                        f"(first as concepts[{seen[c.id]}])", c.id)
            seen.setdefault(c.id, i)
        ids = list(seen)
        cats = {c.category for c in self.concepts}

        def hint(x: str, options) -> str:
            close = difflib.get_close_matches(x, sorted(options), n=1, cutoff=0.6)
            return f"; did you mean {close[0]!r}?" if close else ""

        for i, r in enumerate(self.rules):
            for j, cond in enumerate(r.all_of):
                if cond.concept is not None and cond.concept not in seen:
                    problem(("rules", i, "all_of", j, "concept"),
                            f"rule {r.id!r}: unknown concept {cond.concept!r}{hint(cond.concept, ids)}", cond.concept)
                if cond.category is not None and cond.category not in cats:
                    problem(("rules", i, "all_of", j, "category"),
                            f"rule {r.id!r}: no concept has category {cond.category!r}{hint(cond.category, cats)}",
                            cond.category)
        for i, ref in enumerate(self.guidance.concepts):
            if "." in ref and _ID_RE.match(ref) and ref not in seen:
                problem(("guidance", "concepts", i), f"{ref!r} looks like a concept id but this policy has no "
                        f"such concept{hint(ref, ids)} (write a phrase with spaces to steer away from free text)",
                        ref)
        for key in ("extends", "include", "amend"):
            if getattr(self, key):
                problem((key,), f"{key} is applied by guard.policy.load_policy, which resolves it; a Policy "
                        "validated directly cannot have it", getattr(self, key))
        if errors:
            raise ValidationError.from_exception_data("Policy", errors)
        return self

    def threshold_for(self, concept: Concept) -> float:
        return concept.threshold if concept.threshold is not None else self.screen.threshold
