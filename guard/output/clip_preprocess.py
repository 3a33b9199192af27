"""CLIP image preprocessing in PIL + numpy (no torchvision): what ``CLIPImageProcessor`` does with
its defaults — shortest side resized to ``size`` (bicubic), centre crop ``crop``, scaled to [0, 1],
normalised with CLIP's mean and std — and the settings read from a ``preprocessor_config.json``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipPreprocess:
    size: int = 224  # shortest side after resizing
    crop: int = 224  # side of the centre crop
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    @classmethod
    def for_model(cls, image_size: int, model_dir: str | os.PathLike[str] | None = None) -> ClipPreprocess:
        """Settings for a model whose vision tower takes ``image_size`` pixels: from a
        ``preprocessor_config.json`` in ``model_dir`` (or a sibling ``feature_extractor`` folder of a
        pipeline), else CLIP's defaults at that size."""
        cfg = _find_preprocessor_config(model_dir)
        if not cfg:
            return cls(size=image_size, crop=image_size)
        size = cfg.get("size", image_size)
        if isinstance(size, dict):
            size = size.get("shortest_edge", size.get("height", image_size))
        crop = cfg.get("crop_size", size)
        if isinstance(crop, dict):
            crop = crop.get("height", size)
        mean = tuple(cfg.get("image_mean", OPENAI_CLIP_MEAN))
        std = tuple(cfg.get("image_std", OPENAI_CLIP_STD))
        return cls(size=int(size), crop=int(crop), mean=mean, std=std)  # type: ignore[arg-type]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3 x crop x crop float32, normalised."""
        from PIL import Image

        h, w = rgb.shape[:2]
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.size, int(self.size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        img = Image.fromarray(rgb, "RGB")
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.float32)
        top, left = (new_h - self.crop) // 2, (new_w - self.crop) // 2
        if top < 0 or left < 0:  # smaller than the crop: pad with zeros, centred, as transformers does
            canvas = np.zeros((max(new_h, self.crop), max(new_w, self.crop), 3), np.float32)
            ty, tx = max(0, -top), max(0, -left)
            canvas[ty : ty + new_h, tx : tx + new_w] = arr
            arr, top, left = canvas, max(0, top), max(0, left)
        arr = arr[top : top + self.crop, left : left + self.crop]
        arr = arr * np.float32(1.0 / 255.0)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def _find_preprocessor_config(model_dir: Any) -> dict:
    if model_dir is None:
        return {}
    d = Path(model_dir)
    for cand in (d / "preprocessor_config.json", d.parent / "feature_extractor" / "preprocessor_config.json"):
        if cand.is_file():
            try:
                return json.loads(cand.read_text())
            except (OSError, ValueError):
                return {}
    return {}
