"""The policy schema: pydantic v2 models, every one with ``extra="forbid"``.

A policy file is YAML; :func:`guard.policy.load_policy` reads it, resolves ``extends`` and
``include``, and validates the result against :class:`Policy`.
"""

from __future__ import annotations

import re
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, field_validator, model_validator

# The output classifiers' settings live beside each classifier (guard.output.registry lists them);
# they are re-exported here for existing imports.
from guard.output.clip_zero_shot import ClipZeroShotConfig  # noqa: F401
from guard.output.config import ClassifierConfig, OutputAction
from guard.output.config import check_label_thresholds as _check_label_thresholds  # noqa: F401
from guard.output.image_safety import ImageSafetyConfig  # noqa: F401
from guard.output.labels import DEFAULT_NUDENET_THRESHOLDS  # noqa: F401
from guard.output.nudenet import NudeNetConfig
from guard.output.open_nsfw import OpenNsfwConfig  # noqa: F401
from guard.output.safety_checker import SafetyCheckerConfig  # noqa: F401

Action = Literal["block", "escalate", "allow"]

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


#: any registered classifier's settings (see guard.output.registry); serialised with its own fields
OutputClassifierConfig = SerializeAsAny[ClassifierConfig]


def _fmt_loc(loc: tuple) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in loc).lstrip(".")


def _classifier_errors(key, item, default_type, errors: list) -> Optional[ClassifierConfig]:
    """Validate one classifier entry by its ``type`` (looked up in the registry), collecting errors
    at ``key`` (list index or mapping id) so they keep the plain ``classifiers[i].field`` location."""
    from pydantic import ValidationError
    from pydantic_core import PydanticCustomError

    from guard.output import registry

    if isinstance(item, ClassifierConfig):
        return item
    if not isinstance(item, dict):
        errors.append({"type": PydanticCustomError("classifier_settings", "expected a mapping of settings"),
                       "loc": (key,), "input": item})
        return None
    kind = item.get("type", default_type)
    try:
        model = registry.config_model(kind) if isinstance(kind, str) else None
    except KeyError:
        model = None
    if model is None:
        errors.append({"type": PydanticCustomError(
            "unknown_classifier", "unknown classifier type; expected one of {expected}",
            {"expected": ", ".join(registry.names())}), "loc": (key, "type"), "input": kind})
        return None
    try:
        return model.model_validate({**item, "type": kind})
    except ValidationError as e:
        for err in e.errors():
            d = {"type": err["type"], "loc": (key, *err["loc"]), "input": err.get("input")}
            if "ctx" in err:
                d["ctx"] = err["ctx"]
            errors.append(d)
        return None


def _raise_collected(errors: list) -> None:
    from pydantic import ValidationError

    if not errors:
        return
    try:
        exc = ValidationError.from_exception_data("OutputConfig", errors)
    except Exception:  # an error type pydantic cannot rebuild: say where, at least
        raise ValueError("invalid classifier settings at " + ", ".join(_fmt_loc(e["loc"]) for e in errors)) from None
    raise exc


class OutputCategoryConfig(_Strict):
    """One forbidden category of image content (sexual, gore...): the classifier labels that stand for
    it, how many must agree, and what is done to an image that shows it."""

    description: str = ""
    signals: dict[str, dict[str, float]] = Field(
        min_length=1,
        description="classifier id (a key of output.classifiers, or a classifier type) -> label -> threshold; "
        "a signal hits when any of its labels scores at or above its threshold",
    )
    require: Literal["any", "all"] = Field(
        default="any",
        description="any: one hitting signal flags the image; all: every signal must hit, in order, and a later "
        "signal's classifier runs only on the images the earlier ones hit (a confirming cascade)",
    )
    action: OutputAction = Field(default="blank", description="what a flag does to a generated image")
    unconfirmed_action: Union[OutputAction, Literal["none"]] = Field(
        default="none",
        description="require all: what is done to a generated image when the first signal hits but a later one "
        "does not confirm (e.g. flag or blur_boxes; none: nothing); an unconfirmed input image is reported only",
    )
    outputs: bool = Field(default=True, description="check generated images")
    inputs: bool = Field(default=True, description="check input images of editing pipelines (img2img, inpaint...)")
    input_action: Optional[Literal["block", "escalate", "allow"]] = Field(
        default=None, description="what a flagged input image does to its request; default input_images.action"
    )

    @field_validator("signals", mode="before")
    @classmethod
    def _check_signal_values(cls, v):
        """Before coercion: YAML's ``true`` would become a threshold of 1.0."""
        if isinstance(v, dict):
            for cid, labels in v.items():
                if isinstance(labels, dict) and not labels:
                    raise ValueError(f"signal {cid!r} names no label")
                for label, t in (labels.items() if isinstance(labels, dict) else ()):
                    if isinstance(t, bool):
                        raise ValueError(f"{cid}.{label}: threshold must be a number, got {t!r}")
        return v


class OutputConfig(_Strict):
    """The output check: image classifiers run on every generated image (and, for editing pipelines, on
    the input images).

    Per-category syntax (recommended): ``classifiers`` maps an id to a classifier's model settings (the
    id doubles as the ``type`` when that is left out; a category may also name a type directly), and
    ``categories`` maps a category to the labels that stand for it (see :class:`OutputCategoryConfig`).
    Each classifier runs at most once per image, whatever the number of categories that use it.

    The older list syntax is still read: ``classifiers`` as a list, each entry with its own
    ``thresholds`` and ``action``; ``require: any`` flags an image when any classifier does, ``all``
    only when every one does (each later classifier runs only on the images all earlier ones flagged)."""

    enabled: bool = True
    classifiers: Union[list[OutputClassifierConfig], dict[str, OutputClassifierConfig]] = Field(
        default_factory=lambda: [_default_classifier()],
        description="classifier settings: a mapping id -> settings (with categories) or the older list",
    )
    categories: dict[str, OutputCategoryConfig] = Field(
        default_factory=dict, description="category -> the labels that stand for it, its action, its scope"
    )
    require: Literal["any", "all"] = Field(default="any", description="older list syntax only (see categories)")
    actions: OutputActionsConfig = Field(default_factory=OutputActionsConfig)

    @field_validator("classifiers", mode="before")
    @classmethod
    def _dispatch_classifiers(cls, v):
        """Pick each entry's settings model by its ``type`` in the classifier registry (list entries
        default to nudenet, mapping entries to their id); errors keep the plain ``classifiers[i].key``
        location (a tagged union would insert the tag into it)."""
        errors: list = []
        if isinstance(v, (list, tuple)):
            out = [_classifier_errors(i, item, "nudenet", errors) for i, item in enumerate(v)]
        elif isinstance(v, dict):
            out = {}
            for cid, item in v.items():
                if not isinstance(cid, str) or not _ID_RE.match(cid):
                    from pydantic_core import PydanticCustomError

                    errors.append({"type": PydanticCustomError(
                        "classifier_id", "classifier id must be letters, digits, '_', '.' or '-'"),
                        "loc": (str(cid),), "input": cid})
                    continue
                out[cid] = _classifier_errors(cid, item if item is not None else {}, cid, errors)
        else:
            return v
        _raise_collected(errors)
        return out

    @model_validator(mode="after")
    def _check_categories(self) -> "OutputConfig":
        """Categories name known classifiers and labels; the list syntax and categories do not mix."""
        import difflib

        from guard.output import registry

        if self.categories and isinstance(self.classifiers, list):
            if "classifiers" in self.model_fields_set:
                raise ValueError("categories need output.classifiers as a mapping id -> settings "
                                 "(the list syntax carries its own thresholds); e.g. classifiers: {nudenet: {}}")
            self.classifiers = {}
        if isinstance(self.classifiers, dict):
            if self.enabled and self.classifiers and not self.categories:
                raise ValueError("output.classifiers is a mapping but output.categories is empty: name the labels "
                                 "that stand for each category (e.g. categories: {sexual: {signals: {nudenet: "
                                 "{FEMALE_BREAST_EXPOSED: 0.45}}}})")
            for name, cat in self.categories.items():
                for cid, labels in cat.signals.items():
                    cfg = self.classifiers.get(cid)
                    if cfg is None:
                        try:
                            cfg = registry.config_model(cid)()
                        except KeyError:
                            known = list(self.classifiers) + [n for n in registry.names() if n not in self.classifiers]
                            close = difflib.get_close_matches(cid, known, n=1)
                            hint = f"; did you mean {close[0]!r}?" if close else ""
                            raise ValueError(f"categories.{name}.signals: {cid!r} is neither a key of "
                                             f"output.classifiers nor a classifier type{hint}") from None
                        except Exception as exc:  # a type whose settings have required fields
                            raise ValueError(f"categories.{name}.signals.{cid}: give its settings under "
                                             f"output.classifiers.{cid} ({exc})") from None
                        self.classifiers[cid] = cfg
                    try:
                        cfg.check_thresholds(labels)
                    except ValueError as exc:
                        raise ValueError(f"categories.{name}.signals.{cid}: {exc}") from None
        for name, cat in self.categories.items():
            for a in (cat.action, cat.unconfirmed_action):
                if a == "placeholder" and not self.actions.placeholder:
                    raise ValueError(f"categories.{name} has action 'placeholder' but output.actions.placeholder "
                                     "names no image file")
            if cat.unconfirmed_action != "none" and cat.require != "all":
                raise ValueError(f"categories.{name}: unconfirmed_action needs require: all")
        if isinstance(self.classifiers, list):
            for i, c in enumerate(self.classifiers):
                if getattr(c, "action", None) == "placeholder" and not self.actions.placeholder:
                    raise ValueError(f"classifiers[{i}] has action 'placeholder' but output.actions.placeholder "
                                     "names no image file")
        return self


def _default_classifier() -> ClassifierConfig:
    return NudeNetConfig()


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
    """The output classifiers also run on input images of editing pipelines (init, inpaint, pix2pix);
    only the categories with ``inputs: true`` count there, each with its ``input_action`` (default this
    ``action``)."""

    enabled: bool = True
    action: Literal["block", "escalate", "allow"] = Field(
        default="block", description="what a flagged input image does to its request (categories may override)"
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
