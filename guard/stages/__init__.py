"""Defence stages over a batch, all returning :class:`Verdict`; :meth:`guard.core.Guard.run` runs them.

Built-in stages, in the order the runner uses them: ``prompt_screen``, ``generator_space``,
``input_images`` (before denoising), ``guidance`` (planning the denoising loop), ``output_check``
(after). See ``docs/extending.md`` for adding one.
"""

from guard.stages.base import DECISIONS, STAGES, InputImages, Request, Stage, Verdict, get_stage, register_stage
from guard.stages.guidance import GuidancePlanStage
from guard.stages.images import InputImageStage, OutputCheckStage, decode_latents
from guard.stages.prompt import GeneratorSpaceStage, PromptScreenStage

#: stages that run before any denoising, in order
PRE_STAGES = ("prompt_screen", "generator_space", "input_images")

__all__ = [
    "DECISIONS",
    "PRE_STAGES",
    "STAGES",
    "GeneratorSpaceStage",
    "GuidancePlanStage",
    "InputImageStage",
    "InputImages",
    "OutputCheckStage",
    "PromptScreenStage",
    "Request",
    "Stage",
    "Verdict",
    "decode_latents",
    "get_stage",
    "register_stage",
]
