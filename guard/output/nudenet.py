"""NudeNet v3 detector (``320n.onnx``) behind the :class:`ImageClassifier` interface.

The pre- and post-processing reproduce what ``nudenet.NudeDetector.detect(path)`` does, so that
scores and boxes agree with the package:

* the image is padded with black on the right and bottom to a square, resized to 320x320 with
  OpenCV's bilinear filter (on uint8 values), scaled to [0, 1] and laid out as NCHW in **BGR**
  order (the package reads files with ``cv2.imread`` and its two channel swaps cancel out);
* the YOLOv8-style output ``(batch, 4 + 18, anchors)`` holds, per anchor, a centre-format box in
  input pixels and one sigmoid score per class;
* anchors whose best class score is ``>= detection_threshold`` (0.2) become candidates, and a
  class-agnostic greedy NMS (as ``cv2.dnn.NMSBoxes``: score ``> 0.25``, IoU ``<= 0.45`` kept)
  picks the detections.

On top of the package's detections, every label gets a score: its maximum over all anchors.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from guard.errors import GuardInputError
from guard.output.base import (
    ClassifierOutput,
    Detection,
    ImageClassifier,
    ModelLoadError,
    ModelMissingError,
    OnnxRunner,
    as_image_list,
    choose_providers as choose_providers,  # its home was this module
    to_rgb_uint8,
)
from guard.output.config import STREAMS_HELP, THREADS_HELP, ClassifierConfig, OutputAction, check_label_thresholds
from guard.output.labels import DEFAULT_NUDENET_THRESHOLDS, NUDENET_LABELS

logger = logging.getLogger(__name__)

#: file name of the model shipped inside the ``nudenet`` package
DEFAULT_MODEL_FILE = "320n.onnx"


def default_model_path() -> Path:
    """Path of the ``320n.onnx`` shipped inside the installed ``nudenet`` package.

    Found through the import system without importing ``nudenet`` (which pulls in OpenCV and
    onnxruntime at import time).
    """
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(
            "the nudenet package is not installed, so its default model "
            f"{DEFAULT_MODEL_FILE} cannot be found; install nudenet or pass model_path"
        )
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE


class NudeNetConfig(ClassifierConfig):
    """NudeNet v3 body-part detector (onnxruntime, batched); gives boxes for the ``*_boxes`` actions."""

    type: Literal["nudenet"] = Field(default="nudenet", description="classifier kind")
    thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_NUDENET_THRESHOLDS),
        description="old list syntax only: label -> threshold (categories name their own)",
    )
    action: OutputAction = Field(default="blank", description="old list syntax only: what a flag does")
    model_path: str | None = Field(default=None, description="the .onnx file; default: the 320n model nudenet ships")
    providers: list[str] | None = Field(
        default=None,
        description="onnxruntime execution providers; default CUDA when available (onnxruntime-gpu), then CPU",
    )
    batch_size: int = Field(default=8, ge=1, le=256, description="images per onnxruntime run")
    threads: int | None = Field(default=None, ge=1, le=1024, description=THREADS_HELP)
    streams: int | None = Field(default=None, ge=1, le=1024, description=STREAMS_HELP)

    label_set: ClassVar[tuple[str, ...]] = NUDENET_LABELS

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        check_label_thresholds(v, NUDENET_LABELS, "NudeNet", 0.0, 1.0)
        return v


def _as_image_list(images: Any) -> list[Any]:
    """Turn the ``images`` argument into a list, refusing a lone image or a non-sequence."""
    return as_image_list(images, "nudenet")


def _iou_greedy_nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou_threshold: float) -> list[int]:
    """Class-agnostic greedy NMS with the semantics of ``cv2.dnn.NMSBoxes`` on float boxes.

    ``boxes`` are (x, y, w, h). Boxes scoring ``> score_threshold`` are visited by decreasing
    score (stable for ties); one is kept when its IoU with every box kept so far is
    ``<= iou_threshold``. Two boxes of zero total area count as overlapping fully.
    Returns the kept indices, best first.
    """
    scores32 = scores.astype(np.float32)
    candidates = np.flatnonzero(scores32 > np.float32(score_threshold))
    order = candidates[np.argsort(-scores32[candidates], kind="stable")]
    b = boxes.astype(np.float64)
    x1, y1 = b[:, 0], b[:, 1]
    x2, y2 = x1 + b[:, 2], y1 + b[:, 3]
    areas = b[:, 2] * b[:, 3]
    threshold = np.float32(iou_threshold)
    kept: list[int] = []
    for idx in order:
        if kept:
            k = np.asarray(kept)
            iw = np.minimum(x2[idx], x2[k]) - np.maximum(x1[idx], x1[k])
            ih = np.minimum(y2[idx], y2[k]) - np.maximum(y1[idx], y1[k])
            inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
            total = areas[idx] + areas[k]
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = np.where(total <= np.finfo(np.float64).eps, 1.0, inter / (total - inter))
            # OpenCV computes 1 - (1 - iou) and compares it as a float32
            overlap = np.float32(1.0) - (1.0 - iou).astype(np.float32)
            if np.any(overlap > threshold):
                continue
        kept.append(int(idx))
    return kept


class NudeNetClassifier(ImageClassifier):
    """NudeNet v3 body-part detector run with onnxruntime.

    ``scores[label]`` is the label's highest class score over all anchors (before any cutoff);
    ``detections`` are the package's boxes (cutoff then NMS) in original-image pixels.
    Safe to share between threads: the onnxruntime session is only ever ``run``.
    """

    name = "nudenet"
    labels: tuple[str, ...] = NUDENET_LABELS

    #: side of the square model input, as the package uses for ``320n.onnx``
    input_size: int = 320
    #: the package's NMS settings (``cv2.dnn.NMSBoxes(boxes, scores, 0.25, 0.45)``)
    nms_score_threshold: float = 0.25
    nms_iou_threshold: float = 0.45

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        providers: list[str] | None = None,
        batch_size: int = 8,
        detection_threshold: float = 0.2,
        *,
        threads: int | None = None,
        streams: int | None = None,
    ) -> None:
        """Load the model (default: the ``320n.onnx`` inside the nudenet package).

        ``providers`` defaults to CUDA when onnxruntime offers it, then CPU. ``batch_size`` images
        go through one ``session.run``. ``detection_threshold`` is the package's candidate
        cutoff (best class score ``>=`` it); NMS further keeps only scores ``> 0.25``. ``threads``
        and ``streams``: see :class:`guard.output.base.OnnxRunner`.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GuardInputError(f"nudenet: batch_size must be a positive integer, got {batch_size!r}")
        try:
            threshold_ok = 0.0 <= float(detection_threshold) <= 1.0
        except (TypeError, ValueError):
            threshold_ok = False
        if not threshold_ok:
            raise GuardInputError(f"nudenet: detection_threshold must be in [0, 1], got {detection_threshold!r}")
        self.batch_size = batch_size
        self.detection_threshold = float(detection_threshold)
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self._runner = OnnxRunner(self.model_path, providers, self.name, threads=threads, streams=streams)
        self._session = self._runner.session
        self._check_model(self._session, self.model_path)
        self.provider = self._runner.provider
        logger.info("nudenet: %s running on %s", self.model_path.name, self.provider)

    @classmethod
    def from_config(cls, cfg: NudeNetConfig) -> NudeNetClassifier:
        return cls(
            model_path=cfg.model_path,
            providers=cfg.providers,
            batch_size=cfg.batch_size,
            threads=cfg.threads,
            streams=cfg.streams,
        )

    def _check_model(self, session: Any, path: Path) -> None:
        """Refuse a model that is not a single-input NCHW detector with 4 + 18 values per anchor."""
        inputs, outputs = session.get_inputs(), session.get_outputs()
        expected = 4 + len(self.labels)
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not outputs:
            raise ModelLoadError(f"nudenet: {path} is not a single-input NCHW detection model")
        rows = outputs[0].shape[1] if len(outputs[0].shape) == 3 else None
        if isinstance(rows, int) and rows != expected:
            raise ModelLoadError(
                f"nudenet: {path} outputs {rows} values per anchor, expected {expected} "
                f"(4 box coordinates + {len(self.labels)} classes)"
            )

    # ----------------------------------------------------------------------------- processing

    def _preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, int, int, int]:
        """RGB uint8 HxWx3 -> (3x320x320 float32 BGR in [0, 1], width, height, padded side)."""
        import cv2

        height, width = rgb.shape[:2]
        side, size = max(height, width), self.input_size
        # The package pads to a side x side square and resizes that. Only a few rows (columns)
        # of the padding next to the image reach the output; the rest resizes to zeros. So the
        # canvas keeps a margin of padding and is resized with the square's exact scale factor,
        # which gives the same pixels without allocating side**2 for a very elongated image.
        margin = -(-side // size) + 2
        canvas = np.zeros((min(side, height + margin), min(side, width + margin), 3), np.uint8)
        canvas[:height, :width] = rgb[:, :, ::-1]  # BGR, as the package feeds files
        if side != size:
            factor = size / side
            canvas = cv2.resize(canvas, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        square = np.zeros((size, size, 3), np.uint8)
        square[: canvas.shape[0], : canvas.shape[1]] = canvas[:size, :size]
        blob = square.astype(np.float32) * np.float32(1.0 / 255.0)
        return np.ascontiguousarray(blob.transpose(2, 0, 1)), width, height, side

    def _decode(self, raw: np.ndarray, width: int, height: int, side: int) -> ClassifierOutput:
        """One image's raw output (4 + classes, anchors) -> scores and NMS-ed detections."""
        rows = np.ascontiguousarray(raw.T, dtype=np.float32)  # (anchors, 4 + classes)
        n_labels = len(self.labels)
        if rows.ndim != 2 or rows.shape[1] != 4 + n_labels:
            raise ModelLoadError(f"nudenet: model output has shape {raw.shape}, expected ({4 + n_labels}, anchors)")
        class_scores = rows[:, 4:]
        per_label = class_scores.max(axis=0) if len(rows) else np.zeros(n_labels, np.float32)
        scores = {label: float(np.clip(s, 0.0, 1.0)) for label, s in zip(self.labels, per_label)}

        best = class_scores.max(axis=1)
        keep = best >= np.float32(self.detection_threshold)
        if not keep.any():
            return ClassifierOutput(scores=scores, detections=[])
        best, cls = best[keep], class_scores[keep].argmax(axis=1)
        cx, cy, bw, bh = (rows[keep, i] for i in range(4))
        # same float32 arithmetic as the package: centre -> corner, then model px -> image px
        scale, model_side = np.float32(side), np.float32(self.input_size)
        x = (cx - bw / np.float32(2)) * scale / model_side
        y = (cy - bh / np.float32(2)) * scale / model_side
        bw = bw * scale / model_side
        bh = bh * scale / model_side
        x = np.clip(x, np.float32(0), np.float32(width))
        y = np.clip(y, np.float32(0), np.float32(height))
        bw = np.minimum(bw, np.float32(width) - x)
        bh = np.minimum(bh, np.float32(height) - y)
        boxes = np.stack([x, y, bw, bh], axis=1)

        kept = _iou_greedy_nms(boxes, best, self.nms_score_threshold, self.nms_iou_threshold)
        detections = [
            Detection(
                label=self.labels[int(cls[i])],
                score=float(best[i]),
                box=tuple(int(v) for v in boxes[i]),  # type: ignore[arg-type]
            )
            for i in kept
        ]
        return ClassifierOutput(scores=scores, detections=detections)

    def classify(self, images: Sequence[Any]) -> list[ClassifierOutput]:
        """Score each image; ``images`` is a list of PIL images, numpy arrays or torch tensors."""
        items = _as_image_list(images)
        rgb = [to_rgb_uint8(img, where=f"image {i}") for i, img in enumerate(items)]  # every image checked first
        raw = self._runner.map(rgb, lambda a: self._preprocess(a)[0], self.batch_size)
        return [self._decode(r, a.shape[1], a.shape[0], max(a.shape[:2])) for r, a in zip(raw, rgb)]


#: the registry's names for this module (see guard.output.registry)
Config = NudeNetConfig
Classifier = NudeNetClassifier
