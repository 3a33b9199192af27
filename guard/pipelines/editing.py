"""Guarded editing pipelines: img2img, inpaint (9-channel and legacy 4-channel UNets),
instruct-pix2pix. Same mixin as text-to-image; each input image is also checked by the output
classifiers, and negative guidance is on by default (``guidance.apply: auto``)."""

from __future__ import annotations

from diffusers import (
    AutoencoderKL,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from guard.pipelines.component import GuardComponent
from guard.pipelines.mixin import GuardedPipelineMixin
from guard.pipelines.stable_diffusion import _CLIPImageProcessor


class GuardedStableDiffusionImg2ImgPipeline(GuardedPipelineMixin, StableDiffusionImg2ImgPipeline):
    """Drop-in ``StableDiffusionImg2ImgPipeline`` with the guard."""

    _guard_kind = "img2img"
    _guard_image_args = ("image",)
    _optional_components = StableDiffusionImg2ImgPipeline._optional_components + ["guard"]
    _exclude_from_cpu_offload = StableDiffusionImg2ImgPipeline._exclude_from_cpu_offload + ["guard"]

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


class GuardedStableDiffusionInpaintPipeline(GuardedPipelineMixin, StableDiffusionInpaintPipeline):
    """Drop-in ``StableDiffusionInpaintPipeline`` (9-channel inpainting UNets and 4-channel ones)."""

    _guard_kind = "inpaint"
    _guard_image_args = ("image", "mask_image", "masked_image_latents")
    _guard_latent_args = ("masked_image_latents",)
    _optional_components = StableDiffusionInpaintPipeline._optional_components + ["guard"]
    _exclude_from_cpu_offload = StableDiffusionInpaintPipeline._exclude_from_cpu_offload + ["guard"]

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


class GuardedStableDiffusionInstructPix2PixPipeline(GuardedPipelineMixin, StableDiffusionInstructPix2PixPipeline):
    """Drop-in ``StableDiffusionInstructPix2PixPipeline``; for text guidance the image-conditioned
    branch plays the role of the unconditional one."""

    _guard_kind = "pix2pix"
    _guard_image_args = ("image",)
    _guard_latents_scaled = False  # diffusers takes pix2pix image latents unscaled (argmax of the VAE)
    _optional_components = StableDiffusionInstructPix2PixPipeline._optional_components + ["guard"]
    _exclude_from_cpu_offload = StableDiffusionInstructPix2PixPipeline._exclude_from_cpu_offload + ["guard"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        safety_checker: StableDiffusionSafetyChecker,
        feature_extractor: _CLIPImageProcessor,
        image_encoder: CLIPVisionModelWithProjection | None = None,
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
