"""The output check: run the policy's classifiers on images, compare per-label thresholds, decide
what to do, and do it (:func:`apply_action`).

Classifiers run in the policy's order (cheap first). With ``require: any`` every classifier sees
every image and an image is flagged when any of them flags it. With ``require: all`` a classifier
sees only the images every earlier one flagged, and an image is flagged only when all flag it (a
confirming cascade: the expensive classifier runs on few images). When several classifiers flag an
image, the strongest of their actions applies (black / placeholder > pixelate > blur > boxes > flag).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from guard.output.base import ClassifierOutput, ImageClassifier
from guard.output.labels import ACTION_RANK, BLOCKING_ACTIONS
from guard.policy.models import OutputActionsConfig, OutputConfig
from guard.report import OutputVerdict

__all__ = [
    "BLOCKING_ACTIONS",
    "CheckVerdict",
    "OutputChecker",
    "apply_action",
    "blank_like",
    "build_classifier",
]

logger = logging.getLogger("guard.output")

_CLASSIFIERS: dict[tuple, ImageClassifier] = {}
_CLASSIFIERS_LOCK = threading.Lock()

#: settings that only change how scores are judged, not the classifier instance
_JUDGING_KEYS = {"thresholds", "threshold", "action", "flag_only"}

_BOX_FALLBACK = {"blur_boxes": "blur", "pixelate_boxes": "pixelate"}


def _config_key(cfg: Any) -> tuple:
    data = cfg.model_dump(mode="json", exclude=_JUDGING_KEYS)
    return (cfg.type, json.dumps(data, sort_keys=True))


def build_classifier(cfg: Any) -> ImageClassifier:
    """One shared classifier instance per configuration (models are costly to load)."""
    key = _config_key(cfg)
    with _CLASSIFIERS_LOCK:
        clf = _CLASSIFIERS.get(key)
        if clf is None:
            if cfg.type == "nudenet":
                from guard.output.nudenet import NudeNetClassifier

                clf = NudeNetClassifier(model_path=cfg.model_path, providers=cfg.providers,
                                        batch_size=cfg.batch_size)
            elif cfg.type == "safety_checker":
                from guard.output.safety_checker import SafetyCheckerClassifier

                clf = SafetyCheckerClassifier(cfg.model_path, subfolder=cfg.subfolder,
                                              sensitivity=cfg.sensitivity, device=cfg.device)
            elif cfg.type == "clip_zero_shot":
                from guard.output.clip_zero_shot import ClipZeroShotClassifier

                clf = ClipZeroShotClassifier(cfg.model_path, concepts=cfg.concepts, neutral=cfg.neutral,
                                             mode=cfg.mode, logit_scale=cfg.logit_scale, device=cfg.device)
            else:  # pragma: no cover - the schema only admits known types
                raise ValueError(f"unknown classifier type {cfg.type!r}")
            _CLASSIFIERS[key] = clf
        return clf


def label_hits(cfg: Any, name: str, out: ClassifierOutput) -> list[tuple[str, float, float, str]]:
    """The labels of ``out`` over their policy thresholds: (label, score, threshold, text)."""
    hits = []
    if cfg.type == "safety_checker":  # margins; strictly above, as the checker itself decides
        from guard.output.labels import SAFETY_CHECKER_CONCEPT_LABELS

        wanted = {label: 0.0 for label in SAFETY_CHECKER_CONCEPT_LABELS}
        wanted.update(cfg.thresholds)
        for label, thr in wanted.items():
            s = out.scores.get(label)
            if s is not None and s > thr:
                hits.append((label, s, thr, f"{name}:{label} {s:.3f}>{thr:.3f}"))
        return hits
    if cfg.type == "clip_zero_shot":
        items = [(label, cfg.threshold_for(label)) for label in cfg.concepts]
    else:
        items = list(cfg.thresholds.items())
    for label, thr in items:
        s = out.scores.get(label, 0.0)
        if s >= thr:
            hits.append((label, s, thr, f"{name}:{label} {s:.2f}>={thr:.2f}"))
    return hits


@dataclass
class CheckVerdict(OutputVerdict):
    """:class:`OutputVerdict` plus what the action needs and why it was chosen.

    ``action_reason`` says which action runs and why; ``boxes`` are the (x, y, w, h) regions a box
    action covers; ``skipped`` names classifiers a ``require: all`` cascade did not run on this
    image; ``unconfirmed`` holds hits that did not count because a later classifier disagreed.
    """

    action_reason: str = ""
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    settings: Optional[OutputActionsConfig] = field(default=None, repr=False, compare=False)
    placeholder: Optional[str] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["action_reason"] = self.action_reason
        if self.boxes:
            d["boxes"] = [list(b) for b in self.boxes]
        if self.skipped:
            d["skipped"] = list(self.skipped)
        if self.unconfirmed:
            d["unconfirmed"] = list(self.unconfirmed)
        return d


class OutputChecker:
    """Runs the configured classifiers on a batch of images and decides per image (see the module doc)."""

    def __init__(self, cfg: OutputConfig, *, base_dir: str | os.PathLike[str] | None = None,
                 classifiers: Sequence[ImageClassifier] | None = None):
        """``base_dir``: where a relative placeholder path is looked up (default: the working
        directory). ``classifiers``: instances to use instead of building them from ``cfg``
        (one per ``cfg.classifiers`` entry; for tests and custom classifiers)."""
        self.cfg = cfg
        self.placeholder: Optional[str] = None
        if not cfg.enabled:
            self.classifiers: list[tuple[str, Any, ImageClassifier]] = []
            return
        if classifiers is not None and len(classifiers) != len(cfg.classifiers):
            raise ValueError(f"{len(classifiers)} classifier instances for {len(cfg.classifiers)} configurations")
        built = list(classifiers) if classifiers is not None else [build_classifier(c) for c in cfg.classifiers]
        names: list[str] = []
        for clf in built:
            base = clf.name
            n, name = 1, base
            while name in names:
                n += 1
                name = f"{base}_{n}"
            names.append(name)
        self.classifiers = list(zip(names, cfg.classifiers, built))
        if cfg.actions.placeholder and any(c.action == "placeholder" for c in cfg.classifiers):
            p = Path(cfg.actions.placeholder).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            from guard.output.actions import load_placeholder

            load_placeholder(p)  # a missing or unreadable file fails now, not on the first flag
            self.placeholder = str(p)

    @property
    def active(self) -> bool:
        return bool(self.classifiers)

    def check(self, images: Sequence[Any]) -> list[CheckVerdict]:
        n = len(images)
        verdicts = [CheckVerdict(settings=self.cfg.actions, placeholder=self.placeholder) for _ in range(n)]
        if not n or not self.classifiers:
            return verdicts
        require_all = self.cfg.require == "all"
        # per image: (name, cfg, hits, output) of each classifier that flagged it
        flaggers: list[list[tuple[str, Any, list, ClassifierOutput]]] = [[] for _ in range(n)]
        for k, (name, cfg, clf) in enumerate(self.classifiers):
            if require_all:
                idx = [i for i in range(n) if len(flaggers[i]) == k]
            else:
                idx = list(range(n))
            if require_all:
                for i in range(n):
                    if len(flaggers[i]) < k:
                        verdicts[i].skipped.append(name)
            if not idx:
                continue
            outs = clf.classify([images[i] for i in idx])
            if len(outs) != len(idx):
                raise RuntimeError(f"{name} returned {len(outs)} results for {len(idx)} images")
            for i, o in zip(idx, outs):
                v = verdicts[i]
                v.scores[name] = dict(o.scores)
                if o.detections:
                    v.detections[name] = [d.to_dict() for d in o.detections]
                hits = label_hits(cfg, name, o)
                if hits:
                    flaggers[i].append((name, cfg, hits, o))
        for i, v in enumerate(verdicts):
            self._decide(v, flaggers[i], require_all)
        return verdicts

    def _decide(self, v: CheckVerdict, flaggers: list, require_all: bool) -> None:
        texts = [h[3] for _, _, hits, _ in flaggers for h in hits]
        if not flaggers or (require_all and len(flaggers) < len(self.classifiers)):
            if flaggers:
                v.unconfirmed = texts
                missing = [name for name, *_ in self.classifiers][len(flaggers)]
                v.action_reason = (f"not flagged: require all, and {missing} did not confirm "
                                   f"{', '.join(name for name, *_ in flaggers)}")
            return
        v.flagged.extend(texts)
        name, cfg = max(((nm, c) for nm, c, _, _ in flaggers), key=lambda t: ACTION_RANK[t[1].action])
        action = cfg.action
        why = f"{action} (action of {name}) because " + ", ".join(texts)
        if action in _BOX_FALLBACK:
            boxes = []
            for _, _, hits, out in flaggers:
                hit_labels = {h[0] for h in hits}
                boxes += [tuple(d.box) for d in out.detections if d.label in hit_labels]
            if boxes:
                v.boxes = boxes
                pad = self.cfg.actions.box_padding
                why += f"; {len(boxes)} box(es), padded by {pad:g} of their size"
            else:
                whole = _BOX_FALLBACK[action]
                why += (f"; no classifier gave a box for the flagged labels, so {whole} covers the "
                        "whole image")
                action = whole
        v.action = action
        v.action_reason = why


def apply_action(image: Any, verdict: OutputVerdict, *, latent: bool = False) -> Any:
    """The image after the verdict's action, same type / size / dtype (``flag`` and ``none`` return
    it unchanged). Latents (``latent=True``) cannot be blurred meaningfully: any altering action
    zeroes them. If an action fails, the image is blacked out instead (fail closed) and the verdict
    says so; ``verdict.action`` / ``action_reason`` always describe what was done."""
    action = verdict.action
    if action in ("none", "flag"):
        return image
    reason_attr = hasattr(verdict, "action_reason")

    def note(text: str) -> None:
        if reason_attr:
            verdict.action_reason = (verdict.action_reason + "; " if verdict.action_reason else "") + text

    if latent and action not in ("blank", "black"):
        note(f"latent output: {action} replaced by zeroed latents")
        verdict.action = "blank"
        return blank_like(image)
    if action in ("blank", "black"):
        return blank_like(image)
    from guard.output import actions as A

    settings = getattr(verdict, "settings", None) or OutputActionsConfig()
    boxes = list(getattr(verdict, "boxes", []) or [])
    try:
        if action == "blur":
            return A.blur(image, radius=settings.blur_radius)
        if action == "pixelate":
            return A.pixelate(image, cells=settings.pixelate_cells)
        if action == "blur_boxes":
            if not boxes:
                raise ValueError("blur_boxes without boxes")
            return A.blur(image, boxes, radius=settings.blur_radius, padding=settings.box_padding)
        if action == "pixelate_boxes":
            if not boxes:
                raise ValueError("pixelate_boxes without boxes")
            return A.pixelate(image, boxes, cells=settings.pixelate_cells, padding=settings.box_padding)
        if action == "placeholder":
            path = getattr(verdict, "placeholder", None) or settings.placeholder
            if not path:
                raise ValueError("no placeholder image configured")
            return A.replace(image, path)
        raise ValueError(f"unknown action {action!r}")
    except Exception as exc:
        msg = f"{action} failed ({type(exc).__name__}: {exc}); blanked instead (fail closed)"
        logger.error("output action %s", msg)
        note(msg)
        verdict.action = "blank"
        return blank_like(image)


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
