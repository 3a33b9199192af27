"""The policy schema: pydantic v2 models, every one with ``extra="forbid"``.

A policy file is YAML; :func:`guard.policy.load_policy` reads it, resolves ``extends`` and
``include``, and validates the result against :class:`Policy`.
"""

from __future__ import annotations

import re
from typing import Literal, Optional, Union

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


#: a learned-screen operating point: a preset, or a target false-positive rate on benign prompts
_Sensitivity = Union[Literal["low", "medium", "high"], float]


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
    decision: Literal["auto", "learned", "threshold"] = Field(
        default="auto",
        description="learned: the trained per-category model decides the built-in categories (custom concepts "
        "keep their thresholds); threshold: every concept by its similarity threshold; auto: learned when the "
        "policy has the concepts the model was trained with",
    )
    sensitivity: Union[_Sensitivity, dict[str, _Sensitivity]] = Field(
        default="medium",
        description="learned decision's operating point: low | medium | high, or a target false-positive rate "
        "on benign prompts in (0, 0.5); a map gives one per category (sexual, minors, violence, self_harm, hate, "
        "illegal, default)",
    )
    generator_space: GeneratorSpaceConfig = Field(default_factory=GeneratorSpaceConfig)


class NudeNetConfig(_Strict):
    """NudeNet v3 body-part detector (onnxruntime, batched); gives boxes for the ``*_boxes`` actions."""

    type: Literal["nudenet"] = "nudenet"
    thresholds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_NUDENET_THRESHOLDS))
    action: Literal[
        "blank", "black", "placeholder", "pixelate", "blur", "pixelate_boxes", "blur_boxes", "flag"
    ] = Field(default="blank", description="what a flag does to the image (blank = black)")
    model_path: Optional[str] = None
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

    type: Literal["safety_checker"] = "safety_checker"
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
    ] = "blank"
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

    type: Literal["clip_zero_shot"] = "clip_zero_shot"
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
    thresholds: dict[str, float] = Field(default_factory=dict)
    logit_scale: Optional[float] = Field(default=None, gt=0.0, le=1000.0,
                                         description="softmax temperature; default the model's own")
    action: Literal[
        "blank", "black", "placeholder", "pixelate", "blur", "pixelate_boxes", "blur_boxes", "flag"
    ] = "blank"
    device: str = "auto"

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

    enabled: bool = True
    classifiers: list[OutputClassifierConfig] = Field(default_factory=lambda: [NudeNetConfig()])
    require: Literal["any", "all"] = "any"
    actions: OutputActionsConfig = Field(default_factory=OutputActionsConfig)

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

    enabled: bool = True
    concepts: list[str] = Field(
        default_factory=list,
        description="concept ids of this policy or free-text phrases to steer away from; empty: the "
        "first phrase of every blocking concept of the categories sexual and violence",
    )
    mode: Literal["ace", "sld"] = "ace"
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
    sld: SLDConfig = Field(default_factory=SLDConfig)


class InputCheckConfig(_Strict):
    """The output classifiers also run on input images of editing pipelines (init, inpaint, pix2pix)."""

    enabled: bool = True
    action: Literal["block", "escalate", "allow"] = "block"


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
    guidance: GuidanceConfig = Field(default_factory=GuidanceConfig)
    input_images: InputCheckConfig = Field(default_factory=InputCheckConfig)
    erasers: list[EraserRef] = Field(
        default_factory=list,
        description="erasure artifacts applied to the UNet, in order, when a guarded pipeline loads; "
        "an artifact made for another base model is refused",
    )
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
