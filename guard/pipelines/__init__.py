"""Guarded drop-in pipelines and ``protect``/``unprotect`` for pipelines a user already has."""

from __future__ import annotations

from typing import Any

from guard.errors import GuardError
from guard.pipelines.component import GuardComponent
from guard.pipelines.editing import (
    GuardedStableDiffusionImg2ImgPipeline,
    GuardedStableDiffusionInpaintPipeline,
    GuardedStableDiffusionInstructPix2PixPipeline,
)
from guard.pipelines.mixin import GuardedPipelineMixin, GuardedPipelineOutput, GuardedTuple
from guard.pipelines.sdxl import (
    GuardedStableDiffusionXLImg2ImgPipeline,
    GuardedStableDiffusionXLPipeline,
    GuardedXLPipelineOutput,
)
from guard.pipelines.stable_diffusion import GuardedStableDiffusionPipeline
from guard.policy import PolicySource


def _registry() -> dict[type, type]:
    """diffusers pipeline class -> its guarded subclass."""
    import diffusers

    return {
        diffusers.StableDiffusionPipeline: GuardedStableDiffusionPipeline,
        diffusers.StableDiffusionImg2ImgPipeline: GuardedStableDiffusionImg2ImgPipeline,
        diffusers.StableDiffusionInpaintPipeline: GuardedStableDiffusionInpaintPipeline,
        diffusers.StableDiffusionInstructPix2PixPipeline: GuardedStableDiffusionInstructPix2PixPipeline,
        diffusers.StableDiffusionXLPipeline: GuardedStableDiffusionXLPipeline,
        diffusers.StableDiffusionXLImg2ImgPipeline: GuardedStableDiffusionXLImg2ImgPipeline,
    }


def protect(pipe: Any, policy: PolicySource = "default"):
    """Return the guarded version of ``pipe`` (sharing its components, no copy), under ``policy``.

    A pipeline that is already guarded gets the new policy. Raises :class:`GuardError` for a
    pipeline class guard does not support, naming the ones it does.
    """
    if isinstance(pipe, GuardedPipelineMixin):
        pipe.set_policy(policy)
        return pipe
    reg = _registry()
    guarded = reg.get(type(pipe))
    if guarded is None:
        supported = ", ".join(sorted(k.__name__ for k in reg))
        raise GuardError(f"guard cannot protect a {type(pipe).__name__}; supported pipeline classes: {supported}")
    return guarded.from_pipe(pipe, policy=policy)


def unprotect(pipe: Any):
    """The plain diffusers pipeline (same components, no guard) for a guarded one."""
    if not isinstance(pipe, GuardedPipelineMixin):
        return pipe
    inverse = {v: k for k, v in _registry().items()}
    base = inverse.get(type(pipe))
    if base is None:
        raise GuardError(f"no plain pipeline class known for {type(pipe).__name__}")
    from guard.guidance import uninstall

    uninstall(pipe.unet)  # remove every hook guard put on the (shared) UNet
    comps = {k: v for k, v in pipe.components.items() if k != "guard"}
    return base(
        **comps,
        **(
            {"requires_safety_checker": pipe.config.requires_safety_checker}
            if "requires_safety_checker" in pipe.config
            else {}
        ),
    )


__all__ = [
    "GuardComponent",
    "GuardedPipelineMixin",
    "GuardedPipelineOutput",
    "GuardedStableDiffusionImg2ImgPipeline",
    "GuardedStableDiffusionInpaintPipeline",
    "GuardedStableDiffusionInstructPix2PixPipeline",
    "GuardedStableDiffusionPipeline",
    "GuardedStableDiffusionXLImg2ImgPipeline",
    "GuardedStableDiffusionXLPipeline",
    "GuardedTuple",
    "GuardedXLPipelineOutput",
    "protect",
    "unprotect",
]
