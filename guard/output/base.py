"""One small interface for image classifiers used by the output (and input-image) check.

A classifier takes a batch of images (PIL, numpy or torch) and returns, per image, a mapping of
label -> score in [0, 1] and, where the model gives them, boxed detections.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guard.errors import GuardError, GuardInputError

logger = logging.getLogger(__name__)

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


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int | None = None, *, spinning: bool = False) -> Any:
    """onnxruntime settings for sessions that share the CPU with a diffusion pipeline: the intra-op
    threads sleep instead of spin-waiting between runs (a spinning pool steals the cores the
    pipeline and the other classifiers need; measured in docs/classifiers.md). ``threads`` sets the
    intra-op thread count (default: onnxruntime's, one per physical core); ``spinning`` restores
    onnxruntime's default (for benchmarks)."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    return opts


#: tried first, in this order, when a policy names no providers (then CPU)
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: Sequence[str] | str | None, name: str = "classifier") -> list[str]:
    """The onnxruntime execution providers a session asks for.

    ``None``: CUDA then CPU, as far as this onnxruntime build offers them (``onnxruntime-gpu`` lists
    ``CUDAExecutionProvider``), else whatever it offers. Otherwise every requested name must be
    offered (:class:`GuardInputError` naming the missing ones and what is available)."""
    import onnxruntime

    available = list(onnxruntime.get_available_providers())
    if requested is None:
        chosen = [p for p in PREFERRED_PROVIDERS if p in available]
        return chosen or available
    if isinstance(requested, str):
        requested = [requested]
    chosen = list(requested)
    unknown = [p for p in chosen if p not in available]
    if not chosen or unknown:
        raise GuardInputError(
            f"{name}: execution provider(s) {unknown or chosen} not available in this onnxruntime "
            f"build; available: {available}"
        )
    return chosen


def onnx_session(
    path: os.PathLike[str] | str,
    providers: list[str],
    who: str,
    *,
    threads: int | None = None,
    fallback: bool = False,
    spinning: bool = False,
) -> Any:
    """An onnxruntime session for ``path``; a missing file raises :class:`ModelMissingError`, any
    other failure :class:`ModelLoadError` (with onnxruntime's message). With ``fallback`` (the
    providers were chosen by default, not named by the policy), a session that cannot be created
    on a GPU provider (``onnxruntime-gpu`` without a GPU or its CUDA libraries) is created on the
    CPU instead, with a warning."""
    import warnings

    import onnxruntime

    if not os.path.isfile(path):
        raise ModelMissingError(f"{who}: model file not found: {path}")
    try:
        with warnings.catch_warnings():
            # onnxruntime warns (and goes on) when asked for a provider it lacks: reported below instead
            warnings.filterwarnings("ignore", message="Specified provider", category=UserWarning)
            opts = session_options(threads, spinning=spinning)
            session = onnxruntime.InferenceSession(os.fspath(path), opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Exception subclasses
        if fallback and providers != ["CPUExecutionProvider"] and "CPUExecutionProvider" in providers:
            logger.warning(
                "%s: cannot start on %s (%s: %s); running on the CPU", who, providers[0], type(exc).__name__, exc
            )
            return onnx_session(path, ["CPUExecutionProvider"], who, threads=threads, spinning=spinning)
        raise ModelLoadError(f"{who}: cannot load model {path}: {type(exc).__name__}: {exc}") from exc
    active = session.get_providers()
    if providers and active and active[0] != providers[0]:
        logger.warning(
            "%s: asked for %s but onnxruntime runs the model on %s (no usable GPU or CUDA libraries?)",
            who,
            providers[0],
            active[0],
        )
    return session


class OnnxRunner:
    """One ONNX model, run the fastest way for where it runs.

    On a GPU provider: one session, ``batch_size`` images per run, the next chunk prepared while the
    current one runs (:func:`run_batched`).

    On the CPU, two sessions of the same model: a *latency* one whose operators use every core
    (``threads``), for calls with fewer images than ``streams``; and a single-threaded *throughput*
    one that ``streams`` worker threads run at once, each on its own chunk of images (prepared in
    that worker), for calls with at least ``streams`` images. Independent single-threaded runs need
    no barrier between the cores after every operator, which is what a multi-threaded run of one
    small batch waits on (and waits longer on when another process holds a core). Scores are the
    same either way (float32 kernels; tested at 1e-5). ``streams`` defaults to the usable cores;
    1 turns the throughput session off. ``spinning``: see :func:`session_options`.
    """

    def __init__(
        self,
        path: os.PathLike[str] | str,
        providers: Sequence[str] | str | None,
        who: str,
        *,
        threads: int | None = None,
        streams: int | None = None,
        spinning: bool = False,
    ) -> None:
        for key, value in (("threads", threads), ("streams", streams)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise GuardInputError(f"{who}: {key} must be a positive integer or None, got {value!r}")
        self.who = who
        self.requested_providers = choose_providers(providers, who)
        self.session = onnx_session(
            path, self.requested_providers, who, threads=threads, fallback=providers is None, spinning=spinning
        )
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        self.streams = 1
        self._throughput: Any = None
        if self.provider == "CPUExecutionProvider":
            self.streams = usable_cores() if streams is None else streams
            if self.streams > 1:
                self._throughput = onnx_session(path, ["CPUExecutionProvider"], who, threads=1, spinning=spinning)

    def run(self, batch: np.ndarray, *, session: Any = None) -> np.ndarray:
        """The model's first output for one prepared batch."""
        (out, *_) = (session or self.session).run(None, {self.input_name: batch})
        return np.asarray(out)

    def map(self, items: Sequence[Any], prepare: Any, batch_size: int) -> list[Any]:
        """``run`` over ``items`` prepared one by one, in chunks of at most ``batch_size``; one
        output row per item, in order. Errors surface in the caller's thread."""
        n = len(items)
        if self._throughput is None or n < self.streams:
            return run_batched(items, prepare, self.run, batch_size)
        from concurrent.futures import ThreadPoolExecutor

        size = max(1, min(batch_size, -(-n // self.streams)))
        chunks = [items[k : k + size] for k in range(0, n, size)]

        def job(chunk: Sequence[Any]) -> np.ndarray:
            return self.run(np.stack([prepare(item) for item in chunk]), session=self._throughput)

        with ThreadPoolExecutor(max_workers=min(self.streams, len(chunks)), thread_name_prefix="guard-onnx") as pool:
            outs = list(pool.map(job, chunks))
        return [row for out in outs for row in out]


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


class OnnxProbabilityClassifier(ImageClassifier):
    """An ONNX model from ``(batch, *input_shape)`` prepared images to one probability per label, run by
    an :class:`OnnxRunner`. Subclasses set ``input_shape`` and ``_prepare`` (one RGB uint8 image -> one
    model input row). Safe to share between threads: the onnxruntime sessions are only ever ``run``."""

    #: the model input without the batch axis, e.g. (3, 224, 224)
    input_shape: tuple[int, ...] = ()

    @staticmethod
    def _check_batch_size(name: str, batch_size: Any) -> int:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GuardInputError(f"{name}: batch_size must be a positive integer, got {batch_size!r}")
        return batch_size

    def _open(self, model_path: Any, providers: Any, threads: int | None, streams: int | None) -> None:
        """Start the runner on ``model_path`` and check the model's input and output shapes."""
        self.model_path = model_path
        self._runner = OnnxRunner(model_path, providers, self.name, threads=threads, streams=streams)
        self._session = self._runner.session
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        if len(shape) != 4 or tuple(shape[1:]) != tuple(self.input_shape) or len(outputs) != 1:
            dims = ", ".join(str(d) for d in self.input_shape)
            raise ModelLoadError(
                f"{self.name}: {model_path} is not a (batch, {dims}) -> (batch, {len(self.labels)}) model; "
                f"inputs {[i.shape for i in inputs]}"
            )
        self.provider = self._runner.provider
        logger.info("%s: %s running on %s", self.name, model_path.name, self.provider)

    @abstractmethod
    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, *input_shape) prepared float32 -> (N, len(labels)) probabilities in label order, in one run."""
        return self._checked(self._runner.run(batch).astype(np.float32, copy=False).reshape(len(batch), -1))

    def _checked(self, out: np.ndarray) -> np.ndarray:
        if out.ndim != 2 or out.shape[1] != len(self.labels):
            raise ModelLoadError(
                f"{self.name}: model gave {out.shape[1:]} values per image, expected {len(self.labels)}"
            )
        return out

    def classify(self, images: Sequence[Any]) -> list[ClassifierOutput]:
        items = as_image_list(images, self.name)
        rgb = [to_rgb_uint8(im, where=f"image {i}") for i, im in enumerate(items)]  # every image checked first
        rows = self._runner.map(rgb, self._prepare, self.batch_size)
        if not rgb:
            return []
        probs = self._checked(np.asarray(rows, dtype=np.float32).reshape(len(rgb), -1))
        return [
            ClassifierOutput(scores={lab: float(np.clip(p, 0.0, 1.0)) for lab, p in zip(self.labels, row)})
            for row in probs
        ]


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
