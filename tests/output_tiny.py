"""Tiny random CLIP models (built in memory, saved to a temporary directory) for the output tests."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def tiny_clip_config(vocab_size: int = 1030, bos: int = 1028, eos: int = 1029, pad: int = 1029):
    from transformers import CLIPConfig

    text = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)


def save_tiny_clip(path, seed: int = 0):
    """A random CLIPModel + the tiny tokenizer saved under ``path``; returns (model, tokenizer)."""
    import torch
    from transformers import CLIPModel

    from guard.pipelines.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(tiny_clip_config(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)).eval()
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return model, tok


def save_tiny_safety_checker(path, seed: int = 0):
    """A random StableDiffusionSafetyChecker saved under ``path``; returns the model."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = StableDiffusionSafetyChecker(tiny_clip_config()).eval()
        model.concept_embeds.data = torch.randn(17, 16)
        model.special_care_embeds.data = torch.randn(3, 16)
    model.save_pretrained(str(path))
    return model


def drawing(seed: int, size=(96, 80)) -> np.ndarray:
    """An RGB uint8 drawing (width, height = size): random background, ellipses, a checkerboard patch."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        cx, cy = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        r = int(rng.integers(4, 30))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    arr = np.array(img)
    ys, xs = np.mgrid[0:20, 0:20]
    arr[5:25, 5:25] = np.where(((ys // 2 + xs // 2) % 2 == 0)[:, :, None], 255, 0).astype(np.uint8)
    return arr
