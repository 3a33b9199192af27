"""Guarded SDXL pipelines. SDXL has no safety checker of its own: the guard's output check is the
only one. ``prompt_2`` (the second text encoder's prompt) is screened with ``prompt``."""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoencoderKL, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion_xl.pipeline_output import StableDiffusionXLPipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

from guard.pipelines.component import GuardComponent
from guard.pipelines.mixin import GuardedPipelineMixin
from guard.pipelines.stable_diffusion import _CLIPImageProcessor
from guard.report import GuardReport


@dataclass
class GuardedXLPipelineOutput(StableDiffusionXLPipelineOutput):
    """``StableDiffusionXLPipelineOutput`` plus what SDXL lacks: per-image flags and the report."""

    nsfw_content_detected: list[bool] | None = None
    guard_report: GuardReport | None = None


class GuardedStableDiffusionXLPipeline(GuardedPipelineMixin, StableDiffusionXLPipeline):
    """Drop-in ``StableDiffusionXLPipeline`` with the guard."""

    _guard_kind = "sdxl"
    _guard_extra_prompt_args = ("prompt_2",)
    _guard_output_cls = GuardedXLPipelineOutput
    _optional_components = StableDiffusionXLPipeline._optional_components + ["guard"]
    _exclude_from_cpu_offload = StableDiffusionXLPipeline._exclude_from_cpu_offload + ["guard"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
        tokenizer_2: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        image_encoder: CLIPVisionModelWithProjection = None,
        feature_extractor: _CLIPImageProcessor = None,
        force_zeros_for_empty_prompt: bool = True,
        add_watermarker: bool | None = None,
        guard: GuardComponent | None = None,
    ):
        super().__init__(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
            add_watermarker=add_watermarker,
        )
        self._guard_register(guard)


class GuardedStableDiffusionXLImg2ImgPipeline(GuardedPipelineMixin, StableDiffusionXLImg2ImgPipeline):
    """Drop-in ``StableDiffusionXLImg2ImgPipeline`` with the guard."""

    _guard_kind = "sdxl-img2img"
    _guard_extra_prompt_args = ("prompt_2",)
    _guard_image_args = ("image",)
    _guard_output_cls = GuardedXLPipelineOutput
    _optional_components = StableDiffusionXLImg2ImgPipeline._optional_components + ["guard"]
    _exclude_from_cpu_offload = StableDiffusionXLImg2ImgPipeline._exclude_from_cpu_offload + ["guard"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
        tokenizer_2: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        image_encoder: CLIPVisionModelWithProjection = None,
        feature_extractor: _CLIPImageProcessor = None,
        requires_aesthetics_score: bool = False,
        force_zeros_for_empty_prompt: bool = True,
        add_watermarker: bool | None = None,
        guard: GuardComponent | None = None,
    ):
        super().__init__(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            requires_aesthetics_score=requires_aesthetics_score,
            force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
            add_watermarker=add_watermarker,
        )
        self._guard_register(guard)
