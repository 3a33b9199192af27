"""The stage protocol: one small base class, one uniform method, one verdict type, a registry by name.

Every defence that looks at a request — the prompt screen, the generator-space screen, the input-image
check, guidance planning, the output check — is a :class:`Stage`. A stage reads a :class:`Request`
(the prompts, the input images, the pipeline when there is one, what earlier stages decided) and
returns one :class:`Verdict` per item it covers (per prompt, or per generated image for the output
check). It never catches its own failures: :meth:`guard.core.Guard.run_stage` does that once for
every stage, applying the policy's ``fail_open`` rule, so no defence can fail open by accident.

A new stage is one class plus one decorator::

    @register_stage
    class WatermarkStage(Stage):
        name = "watermark"
        over = "images"

        def run(self, request):
            return [Verdict(self.name, i) for i in range(self.size(request))]
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from guard.errors import GuardError

__all__ = ["DECISIONS", "STAGES", "InputImages", "Request", "Stage", "Verdict", "get_stage", "register_stage"]

#: what a verdict may decide, weakest first: ``flag`` marks an image but lets it out; ``escalate`` lets a
#: prompt through with more scrutiny (guidance); ``block`` stops it.
DECISIONS = ("allow", "flag", "escalate", "block")
_RANK = {"allow": 0, "flag": 1, "escalate": 2, "block": 3}


@dataclass
class Verdict:
    """What one stage decided about one item (a prompt, or a generated image for ``over="images"``)."""

    stage: str
    index: int
    decision: str = "allow"  # allow | flag | escalate | block
    category: str | None = None
    concept: str | None = None
    score: float | None = None
    threshold: float | None = None
    reasons: list[str] = field(default_factory=list)
    action: str = "none"  # what is done to the image: none | blank | flag | blur ... (output stages)
    error: str | None = None  # set when the stage failed and this verdict is the fail-closed/open fallback
    detail: Any = None  # the stage's own result object (ScreenResult, OutputVerdict, GuidanceState...)

    def __post_init__(self) -> None:
        if self.decision not in _RANK:
            raise GuardError(
                f"stage {self.stage!r}: verdict {self.index} has decision {self.decision!r}; "
                f"expected one of {', '.join(DECISIONS)}"
            )

    @property
    def rank(self) -> int:
        return _RANK[self.decision]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "index": self.index,
            "decision": self.decision,
            "category": self.category,
            "concept": self.concept,
            "score": None if self.score is None else round(float(self.score), 4),
            "threshold": None if self.threshold is None else round(float(self.threshold), 4),
            "reasons": list(self.reasons),
            "action": self.action,
            "error": self.error,
        }


@dataclass
class InputImages:
    """One image argument of a call (``image``, ``ip_adapter_image``, ``masked_image_latents``...).

    ``per_prompt``: item ``k`` belongs to prompt ``k`` (else every item conditions every prompt);
    ``latent``: items are VAE latents and are decoded before they are classified; ``scaled``: the
    latents carry the VAE's scaling factor (diffusers' convention except instruct-pix2pix)."""

    argument: str
    items: list[Any]
    per_prompt: bool = False
    latent: bool = False
    scaled: bool = True


@dataclass
class Request:
    """One guarded request as the stages see it. The first group is given by the caller; the rest is
    filled in by :meth:`guard.core.Guard.run` as the stages run."""

    prompts: list[str | None]  # as given (what the audit log digests); None where only embeddings came
    texts: list[str] | None = None  # what the screens read per prompt (SDXL: prompt and prompt_2)
    pipeline: str = "none"  # class name, for the report
    pipe: Any = None  # the diffusers pipeline, for stages that use its encoders / VAE
    kind: str = "text2img"  # text2img | img2img | inpaint | pix2pix | sdxl | sdxl-img2img
    images_per_prompt: int = 1
    input_images: list[InputImages] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # the call's arguments (guidance reads a few)
    output_latent: bool = False  # generated images are latents (output_type="latent")
    #: decode generated latents to pixels for the output check (set by pipelines)
    decode: Callable[[Any], Any] | None = None

    # filled while running
    report: Any = None  # GuardReport
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)  # stage name -> verdicts
    screened: list[Any] = field(default_factory=list)  # per prompt: the combined ScreenResult
    input_escalated: list[bool] = field(default_factory=list)
    allowed: list[int] = field(default_factory=list)  # prompt indices that are generated
    guidance: Any = None  # GuidanceState of this call, or None
    generated: list[Any] = field(default_factory=list)  # images of the allowed prompts, prompt-major
    parent_nsfw: list[bool] = field(default_factory=list)
    prompt_errors: dict[int, str] = field(default_factory=dict)  # prompt index -> the stage error that hit it

    def __post_init__(self) -> None:
        if self.texts is None:
            self.texts = [p if p is not None else "" for p in self.prompts]
        if len(self.texts) != len(self.prompts):
            raise GuardError(f"request has {len(self.prompts)} prompts but {len(self.texts)} screen texts")


class Stage:
    """Base class of every defence stage. Subclasses set ``name`` (the registry key) and ``over``
    (``"prompts"``: one verdict per prompt; ``"images"``: one per generated image), and implement
    :meth:`run`. ``enabled`` says whether the policy (and the request) calls for the stage at all."""

    name: ClassVar[str] = ""
    over: ClassVar[str] = "prompts"

    def __init__(self, guard: Any):
        self.guard = guard

    @property
    def policy(self):
        return self.guard.policy

    def enabled(self, request: Request) -> bool:
        return True

    def size(self, request: Request) -> int:
        """How many verdicts :meth:`run` returns for ``request``."""
        if self.over == "images":
            return len(request.generated)
        return len(request.prompts)

    def run(self, request: Request) -> list[Verdict]:  # pragma: no cover - abstract
        raise NotImplementedError(f"stage {type(self).__name__} does not implement run()")

    def on_error(self, request: Request, message: str, fail_open: bool) -> list[Verdict]:
        """The verdicts that stand in for a failed run: every item blocked (or allowed when the policy
        says ``fail_open: true``), each naming the error. Stages may refine this (e.g. blank images)."""
        rule = "fail_open: true" if fail_open else "fail closed"
        decision = "allow" if fail_open else "block"
        action = "none" if fail_open else "blank"
        return [
            Verdict(self.name, i, decision, reasons=[f"{message} ({rule})"], action=action, error=message)
            for i in range(self.size(request))
        ]


#: stage name -> class; built-in stages register on import of :mod:`guard.stages`
STAGES: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: add ``cls`` to :data:`STAGES` under ``cls.name`` (names are unique)."""
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise GuardError(f"register_stage expects a Stage subclass, got {cls!r}")
    if not cls.name:
        raise GuardError(f"stage class {cls.__name__} has no `name`")
    if cls.over not in ("prompts", "images"):
        raise GuardError(f"stage {cls.name!r}: `over` must be 'prompts' or 'images', got {cls.over!r}")
    other = STAGES.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise GuardError(f"stage name {cls.name!r} is taken by {other.__module__}.{other.__qualname__}")
    STAGES[cls.name] = cls
    return cls


def get_stage(name: str) -> type[Stage]:
    """The stage class registered as ``name``; a clear error with a did-you-mean otherwise."""
    cls = STAGES.get(name)
    if cls is None:
        close = difflib.get_close_matches(str(name), list(STAGES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise GuardError(f"no stage named {name!r}{hint} (known: {', '.join(sorted(STAGES))})")
    return cls
