"""Tiny, randomly initialised but fully real Stable Diffusion pipelines, built offline.

Everything (weights, tokenizer vocabulary, scheduler) is created in memory, so no model hub or
network access is needed. The same ``seed`` always gives bit-identical weights, and building never
changes torch's global RNG state. Intended for the demo and for tests, not for pretty pictures.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "MAX_LENGTH",
    "build_tiny_components",
    "build_tiny_pipeline",
    "build_tiny_tokenizer",
    "save_tiny_pipeline",
]

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MAX_LENGTH = 77

# Words whose merges are added to the BPE so common prompt words are not all single characters.
_WORDS = (
    "a an the of and or in on at to with for from by is are be it this that as no not "
    "photo picture image portrait painting drawing sketch art style render illustration "
    "cat dog bird horse fish animal person man woman child people face hand body hair eye "
    "red green blue black white yellow orange purple pink gray brown gold silver color "
    "big small tall short old young new beautiful pretty dark light bright soft sharp "
    "house city street road car tree forest flower garden mountain river lake sea beach sky "
    "sun moon star cloud rain snow night day morning evening water fire stone wood glass "
    "sitting standing running walking flying looking wearing holding playing "
    "high quality detailed realistic cinematic lighting background landscape scene "
    "naked nude nsfw explicit sexy blood gore violence weapon gun knife kill dead "
    "clothes dress shirt hat table chair room window door book food"
).split()


def _bytes_to_unicode() -> list[str]:
    """The 256 printable characters GPT-2/CLIP byte-level BPE uses for the bytes 0..255."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars: list[str] = []
    extra = 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _tiny_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level vocab (bytes, bytes + ``</w>``, merged words) with the special tokens last."""
    tokens: list[str] = []
    byte_chars = _bytes_to_unicode()
    tokens += byte_chars
    tokens += [c + "</w>" for c in byte_chars]
    merges: list[tuple[str, str]] = []
    seen: set[str] = set(tokens)
    for word in _WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right
            if merged not in seen:
                merges.append((left, right))
                tokens.append(merged)
                seen.add(merged)
            left = merged
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A CLIP byte-level BPE tokenizer built in memory; any Unicode text encodes without ``<unk>``."""
    vocab, merges = _tiny_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)


def _sd15_scheduler() -> DDIMScheduler:
    """DDIM with Stable Diffusion 1.5's training betas (exactly one UNet call per step)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_tiny_components(seed: int = 0, *, in_channels: int = 4, sample_size: int = 32) -> dict[str, Any]:
    """Components for :class:`StableDiffusionPipeline` (or a subclass) with tiny random weights.

    ``in_channels`` is the UNet's input channels (4 for text-to-image, 9 for inpainting);
    ``sample_size`` is the latent size, images are twice as large (VAE scale factor 2).
    Deterministic in ``seed``; torch's global RNG state is left untouched.
    """
    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=sample_size * 2,
        )
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        text_encoder = CLIPTextModel(text_config)
    components: dict[str, Any] = {
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "unet": unet.eval(),
        "scheduler": _sd15_scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
    }
    if "image_encoder" in inspect.signature(StableDiffusionPipeline.__init__).parameters:
        components["image_encoder"] = None
    return components


def build_tiny_pipeline(
    pipeline_cls: type[StableDiffusionPipeline] = StableDiffusionPipeline, seed: int = 0, **kwargs: Any
) -> StableDiffusionPipeline:
    """``pipeline_cls`` built from :func:`build_tiny_components` (kwargs go there), CPU float32."""
    components = build_tiny_components(seed, **kwargs)
    accepted = inspect.signature(pipeline_cls.__init__).parameters
    components = {k: v for k, v in components.items() if k in accepted}
    pipe = pipeline_cls(**components, requires_safety_checker=False)
    pipe = pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_sdxl_pipeline(pipeline_cls: Any = None, seed: int = 0, sample_size: int = 32) -> Any:
    """A tiny random SDXL pipeline (two text encoders of width 32, a text-time conditioned UNet with
    cross-attention width 64), CPU float32; ``pipeline_cls`` defaults to StableDiffusionXLPipeline."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModelWithProjection

    pipeline_cls = pipeline_cls or StableDiffusionXLPipeline
    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=6 * 8 + 32,
            cross_attention_dim=64,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=sample_size * 2,
        )
        cfg = dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_act="gelu",
            projection_dim=32,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(**cfg))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
    )
    comps = {
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "text_encoder_2": text_encoder_2.eval(),
        "tokenizer": tokenizer,
        "tokenizer_2": build_tiny_tokenizer(),
        "unet": unet.eval(),
        "scheduler": scheduler,
        "image_encoder": None,
        "feature_extractor": None,
    }
    accepted = inspect.signature(pipeline_cls.__init__).parameters
    pipe = pipeline_cls(**{k: v for k, v in comps.items() if k in accepted})
    pipe = pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(path: str | os.PathLike[str], seed: int = 0, **kwargs: Any) -> StableDiffusionPipeline:
    """Build a tiny pipeline, ``save_pretrained`` it to ``path`` and return it."""
    pipe = build_tiny_pipeline(seed=seed, **kwargs)
    pipe.save_pretrained(os.fspath(path))
    return pipe


def add_tiny_ip_adapter(pipe: Any, seed: int = 0, image_embed_dim: int = 32) -> Any:
    """Give a tiny SD pipeline a random but real IP-Adapter (diffusers' own loader on an in-memory
    state dict, a tiny CLIP vision encoder and image processor), so ``ip_adapter_image`` works offline.
    Returns ``pipe``; torch's global RNG state is left untouched."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    try:  # transformers >= 5 without torchvision
        from transformers import CLIPImageProcessorPil as _Processor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as _Processor

    unet = pipe.unet
    cross = unet.config.cross_attention_dim
    blocks = list(unet.config.block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image_proj = {
            "proj.weight": torch.randn(cross * 4, image_embed_dim) * 0.05,
            "proj.bias": torch.zeros(cross * 4),
            "norm.weight": torch.ones(cross),
            "norm.bias": torch.zeros(cross),
        }
        ip_layers: dict[str, torch.Tensor] = {}
        key_id = 1
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                continue
            if name.startswith("mid_block"):
                hidden = blocks[-1]
            elif name.startswith("up_blocks"):
                hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
            else:
                hidden = blocks[int(name[len("down_blocks.")])]
            ip_layers[f"{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.05
            ip_layers[f"{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.05
            key_id += 2
        encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
                projection_dim=image_embed_dim,
            )
        ).eval()
    unet._load_ip_adapter_weights([{"image_proj": image_proj, "ip_adapter": ip_layers}])
    processor = _Processor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe.register_modules(image_encoder=encoder, feature_extractor=processor)
    return pipe
