"""guard: guardrail middleware for Hugging Face diffusers.

    from guard import GuardedStableDiffusionPipeline
    pipe = GuardedStableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5",
                                                          policy="default")
    out = pipe("a lighthouse at dusk")          # out.guard_report says what every defence decided

    pipe = guard.protect(existing_pipe, "policies/strict.yaml")
    result = guard.PromptScreen(guard.load_policy("default")).screen("a prompt")

Heavy modules (torch, diffusers, the sentence model) load only when the names that need them are used.
"""

from __future__ import annotations

import importlib
from typing import Any

from guard._compat import quiet_torchvision_fallback_notice
from guard.errors import DefenceError, GuardBlocked, GuardError, GuardInputError, PolicyError

quiet_torchvision_fallback_notice()  # transformers' "no torchvision, using PIL" notice, on every import

__version__ = "0.1.0"

_LAZY = {
    "Policy": "guard.policy",
    "load_policy": "guard.policy",
    "Guard": "guard.core",
    "PromptScreen": "guard.screen",
    "ScreenResult": "guard.screen",
    "GuardReport": "guard.report",
    "AuditLog": "guard.audit",
    "GuardComponent": "guard.pipelines",
    "GuardedPipelineOutput": "guard.pipelines",
    "GuardedTuple": "guard.pipelines",
    "Verdict": "guard.stages",
    "Request": "guard.stages",
    "Stage": "guard.stages",
    "register_stage": "guard.stages",
    "GuardedStableDiffusionPipeline": "guard.pipelines",
    "GuardedStableDiffusionImg2ImgPipeline": "guard.pipelines",
    "GuardedStableDiffusionInpaintPipeline": "guard.pipelines",
    "GuardedStableDiffusionInstructPix2PixPipeline": "guard.pipelines",
    "GuardedStableDiffusionXLPipeline": "guard.pipelines",
    "GuardedStableDiffusionXLImg2ImgPipeline": "guard.pipelines",
    "protect": "guard.pipelines",
    "unprotect": "guard.pipelines",
    "NudeNetClassifier": "guard.output.nudenet",
    "apply_erasure": "guard.erase",
    "revert_erasure": "guard.erase",
    "erasure_info": "guard.erase",
}

__all__ = ["DefenceError", "GuardBlocked", "GuardError", "GuardInputError", "PolicyError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "erase":  # the subpackage, callable as guard.erase(pipe, concepts, ...)
        return importlib.import_module("guard.erase")
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'guard' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
