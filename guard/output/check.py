"""The output check: run the policy's classifiers on images, compare per-label thresholds, decide."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from guard.output.base import ImageClassifier
from guard.policy.models import NudeNetConfig, OutputConfig
from guard.report import OutputVerdict

_CLASSIFIERS: dict[tuple, ImageClassifier] = {}
_CLASSIFIERS_LOCK = threading.Lock()


def build_classifier(cfg: NudeNetConfig) -> ImageClassifier:
    """One shared classifier instance per configuration (ONNX sessions are costly to create)."""
    key = (cfg.type, cfg.model_path)
    with _CLASSIFIERS_LOCK:
        clf = _CLASSIFIERS.get(key)
        if clf is None:
            if cfg.type == "nudenet":
                from guard.output.nudenet import NudeNetClassifier

                clf = NudeNetClassifier(model_path=cfg.model_path)
            else:  # pragma: no cover - the schema only admits known types
                raise ValueError(f"unknown classifier type {cfg.type!r}")
            _CLASSIFIERS[key] = clf
        return clf


class OutputChecker:
    """Runs every configured classifier on a batch of images; an image is flagged when any label's
    score reaches its threshold. The action of the first flagging classifier applies
    (``blank`` outranks ``flag``)."""

    def __init__(self, cfg: OutputConfig):
        self.cfg = cfg
        self.classifiers = [(c, build_classifier(c)) for c in cfg.classifiers] if cfg.enabled else []

    @property
    def active(self) -> bool:
        return bool(self.classifiers)

    def check(self, images: Sequence[Any]) -> list[OutputVerdict]:
        verdicts = [OutputVerdict() for _ in images]
        if not images:
            return verdicts
        for cfg, clf in self.classifiers:
            outs = clf.classify(list(images))
            for v, o in zip(verdicts, outs):
                v.scores[clf.name] = dict(o.scores)
                if o.detections:
                    v.detections[clf.name] = [d.to_dict() for d in o.detections]
                hits = [
                    f"{clf.name}:{label} {o.scores.get(label, 0.0):.2f}>={thr:.2f}"
                    for label, thr in cfg.thresholds.items()
                    if o.scores.get(label, 0.0) >= thr
                ]
                if hits:
                    v.flagged.extend(hits)
                    if cfg.action == "blank" or v.action == "none":
                        v.action = cfg.action
        return verdicts


def blank_like(image: Any) -> Any:
    """A black image of the same type and shape (PIL, numpy HWC, torch CHW)."""
    try:
        from PIL import Image

        if isinstance(image, Image.Image):
            return Image.new(image.mode, image.size)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(image, np.ndarray):
        return np.zeros_like(image)
    if type(image).__module__.startswith("torch"):
        import torch

        return torch.zeros_like(image)
    raise TypeError(f"cannot blank an image of type {type(image).__name__}")
