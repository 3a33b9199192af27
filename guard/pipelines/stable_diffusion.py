"""``GuardedStableDiffusionPipeline``: a drop-in ``StableDiffusionPipeline`` with the guard."""

from __future__ import annotations

from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from guard.pipelines.component import GuardComponent
from guard.pipelines.mixin import GuardedPipelineMixin

try:  # transformers >= 5 without torchvision
    from transformers import CLIPImageProcessorPil as _CLIPImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import CLIPImageProcessor as _CLIPImageProcessor


class GuardedStableDiffusionPipeline(GuardedPipelineMixin, StableDiffusionPipeline):
    """``StableDiffusionPipeline`` whose every call is screened, checked, reported and audited.

    >>> pipe = GuardedStableDiffusionPipeline.from_pretrained(
    ...     "stable-diffusion-v1-5/stable-diffusion-v1-5", policy="policies/default.yaml")
    >>> out = pipe("a watercolor of a lighthouse")
    >>> out.images, out.nsfw_content_detected, out.guard_report
    """

    _optional_components = StableDiffusionPipeline._optional_components + ["guard"]
    _exclude_from_cpu_offload = StableDiffusionPipeline._exclude_from_cpu_offload + ["guard"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        safety_checker: StableDiffusionSafetyChecker,
        feature_extractor: _CLIPImageProcessor,
        image_encoder: CLIPVisionModelWithProjection = None,
        requires_safety_checker: bool = True,
        guard: GuardComponent | None = None,
    ):
        super().__init__(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=safety_checker,
            feature_extractor=feature_extractor,
            image_encoder=image_encoder,
            requires_safety_checker=requires_safety_checker,
        )
        self._guard_register(guard)
