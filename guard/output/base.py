"""One small interface for image classifiers used by the output (and input-image) check.

A classifier takes a batch of images (PIL, numpy or torch) and returns, per image, a mapping of
label -> score in [0, 1] and, where the model gives them, boxed detections.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guard.errors import GuardError, GuardInputError

#: Images larger than this many pixels are refused (a 16k x 16k image is 256 Mpx).
MAX_PIXELS = 64_000_000


class ModelLoadError(GuardError):
    """A classifier's model file is missing, unreadable or not the model expected."""


class ModelMissingError(ModelLoadError):
    """A classifier's model is not installed (its package or file is absent): the one load failure
    a classifier's ``missing: skip`` setting may pass over."""


def package_file(package: str, relative: str, *, who: str, install: str) -> os.PathLike[str]:
    """Path of a data file shipped inside an installed package, found through the import system
    without importing the package (whose ``__init__`` may pull heavy or conflicting dependencies).
    Raises :class:`ModelMissingError` naming ``install`` (how to get it) when either is absent."""
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(f"{who}: the package {package!r} that ships the model is not installed; {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelMissingError(f"{who}: {path} is missing from the installed {package!r} package; {install}")
    return path


def session_options() -> Any:
    """onnxruntime settings for sessions that share the CPU with a diffusion pipeline: the intra-op
    threads sleep instead of spin-waiting between runs (measured on a loaded 2-core machine: 26 against
    11 images/s for image_safety; spinning threads steal the cores the other threads need)."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def onnx_session(path: os.PathLike[str] | str, providers: list[str], who: str) -> Any:
    """An onnxruntime session for ``path``; a missing file raises :class:`ModelMissingError`, any
    other failure :class:`ModelLoadError` (with onnxruntime's message)."""
    import os as _os

    import onnxruntime

    if not _os.path.isfile(path):
        raise ModelMissingError(f"{who}: model file not found: {path}")
    try:
        return onnxruntime.InferenceSession(_os.fspath(path), session_options(), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Exception subclasses
        raise ModelLoadError(f"{who}: cannot load model {path}: {type(exc).__name__}: {exc}") from exc


@dataclass
class Detection:
    """A boxed detection; ``box`` is (x, y, width, height) in pixels of the original image."""

    label: str
    score: float
    box: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(float(self.score), 4), "box": list(self.box)}


@dataclass
class ClassifierOutput:
    """Per image: every label's score (0 when the model saw nothing of it) and detections."""

    scores: dict[str, float]
    detections: list[Detection] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
            "detections": [d.to_dict() for d in self.detections],
        }


class ImageClassifier(ABC):
    """Uniform interface: ``classify(images) -> list[ClassifierOutput]``, one per image, in order."""

    #: short name used in policies and reports, e.g. "nudenet"
    name: str = "classifier"
    #: every label this classifier can score
    labels: tuple[str, ...] = ()

    @abstractmethod
    def classify(self, images: Sequence[Any]) -> list[ClassifierOutput]:
        raise NotImplementedError

    def __call__(self, images: Sequence[Any]) -> list[ClassifierOutput]:
        return self.classify(images)


def to_rgb_uint8(image: Any, *, where: str = "image") -> np.ndarray:
    """Convert a PIL image, numpy array or torch tensor to a contiguous HxWx3 uint8 RGB array.

    Accepts HxW (grey), HxWx1/3/4 and 1/3/4xHxW (channels-first, as torch produces) arrays; float
    arrays are taken to be in [0, 1] (values in [-1, 0) are taken as the [-1, 1] range), integer
    arrays of 8 or 16 bits are rescaled. RGBA is composited on black. Anything else raises
    :class:`GuardInputError` naming ``where`` and what was wrong.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None  # type: ignore

    if Image is not None and isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise GuardInputError(f"{where}: image has zero size ({image.width}x{image.height})")
        if image.width * image.height > MAX_PIXELS:
            raise GuardInputError(f"{where}: image of {image.width}x{image.height} exceeds {MAX_PIXELS} pixels")
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(image).astype(np.float64)
            arr = (arr / (65535.0 if arr.max() > 255 else 255.0) * 255.0).clip(0, 255).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
        if image.mode == "RGBA" or image.mode == "LA" or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            arr = np.asarray(image).astype(np.float32)
            rgb = arr[:, :, :3] * (arr[:, :, 3:4] / 255.0)
            return np.ascontiguousarray(rgb.round().clip(0, 255).astype(np.uint8))
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))

    if type(image).__module__.startswith("torch"):
        image = image.detach().to("cpu")
        if image.dtype.is_floating_point:
            image = image.float()
        image = image.numpy()

    if not isinstance(image, np.ndarray):
        raise GuardInputError(f"{where}: expected a PIL image, numpy array or torch tensor, got {type(image).__name__}")
    arr = image
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise GuardInputError(f"{where}: expected a 2-D or 3-D image array, got shape {tuple(image.shape)}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] not in (1, 3, 4):
        raise GuardInputError(f"{where}: cannot find the channel axis in shape {tuple(image.shape)}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise GuardInputError(f"{where}: image has zero size ({w}x{h})")
    if h * w > MAX_PIXELS:
        raise GuardInputError(f"{where}: image of {w}x{h} exceeds {MAX_PIXELS} pixels")

    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        top = 65535.0 if arr.dtype.itemsize >= 2 and arr.max(initial=0) > 255 else 255.0
        out = (arr.astype(np.float64) / top * 255.0).round().clip(0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        f = arr.astype(np.float32)
        if not np.isfinite(f).all():
            raise GuardInputError(f"{where}: image contains NaN or infinite values")
        if f.min(initial=0.0) < 0.0:
            f = (f + 1.0) / 2.0
        out = (f * 255.0).round().clip(0, 255).astype(np.uint8)
    else:
        raise GuardInputError(f"{where}: unsupported image dtype {arr.dtype}")

    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[-1] == 4:
        alpha = out[:, :, 3:4].astype(np.float32) / 255.0
        out = (out[:, :, :3].astype(np.float32) * alpha).round().clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "ndim")


def as_image_list(images: Any, name: str = "classifier") -> list[Any]:
    """Turn a classifier's ``images`` argument into a list, refusing a lone image or a non-sequence.
    A 4-D numpy array or tensor is a batch stacked along its first axis."""
    import sys

    pil_image = sys.modules.get("PIL.Image")
    if pil_image is not None and isinstance(images, pil_image.Image):
        raise GuardInputError(f"{name}: classify() takes a list of images, got a single PIL image; pass [image]")
    if isinstance(images, np.ndarray) or _is_torch_tensor(images):
        if images.ndim == 4:
            return list(images)
        if images.ndim in (2, 3):
            raise GuardInputError(
                f"{name}: classify() takes a list of images, got a single {images.ndim}-D "
                f"{type(images).__name__} of shape {tuple(images.shape)}; pass [image]"
            )
        raise GuardInputError(
            f"{name}: classify() takes a list of images or a 4-D batch, got a "
            f"{type(images).__name__} of shape {tuple(images.shape)}"
        )
    if isinstance(images, (str, bytes, bytearray, dict)) or not hasattr(images, "__iter__"):
        raise GuardInputError(f"{name}: classify() takes a list of images, got {type(images).__name__}")
    return list(images)


def run_batched(items: Sequence[Any], prepare: Any, run: Any, batch_size: int) -> list[Any]:
    """``run(np.stack([prepare(item) ...]))`` per chunk of ``batch_size``, concatenated in order. The
    next chunk is prepared in a helper thread while the current one runs (Pillow and onnxruntime both
    release the GIL), so preprocessing overlaps inference. Errors surface in the caller's thread."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = [items[k : k + batch_size] for k in range(0, len(items), batch_size)]
    if not chunks:
        return []

    def prep(chunk: Sequence[Any]) -> np.ndarray:
        return np.stack([prepare(item) for item in chunk])

    out: list[Any] = []
    if len(chunks) == 1:
        return list(run(prep(chunks[0])))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-prep") as pool:
        pending = pool.submit(prep, chunks[0])
        for k in range(len(chunks)):
            batch = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(prep, chunks[k + 1])
            out.extend(run(batch))
    return out


def resolve_device(device: str | None) -> str:
    """``auto`` (or None) -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else as given."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)
