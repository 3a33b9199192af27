"""The output check: run the policy's image classifiers, judge each category the policy forbids, decide
what to do, and do it (:func:`apply_action`).

A category (``output.categories``; e.g. sexual, gore) lists *signals*: a classifier and the labels
of it that stand for the category, each with a threshold. ``require: any``: one hitting signal flags
the image. ``require: all``: every signal must hit, in order, and a later signal's classifier runs
only on the images the earlier ones hit (a confirming cascade: the expensive classifier sees few
images); when the first hits and a later one does not, ``unconfirmed_action`` applies. Each
classifier runs at most once per image, whatever the number of categories that use it. When several
categories flag an image, the strongest action applies (black / placeholder > pixelate > blur >
boxes > flag).

The older ``output.classifiers`` list syntax becomes categories here: with ``require: any`` one
category per classifier (named after it), with ``all`` one cascade over them all whose action is the
strongest of their actions.

``check(images, target="input")`` judges input images of editing pipelines: only the categories with
``inputs: true`` count, and each verdict's ``input_decision`` says block / escalate / allow.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from guard.output.base import ClassifierOutput, ImageClassifier, ModelMissingError
from guard.output.labels import ACTION_RANK, BLOCKING_ACTIONS
from guard.policy.models import OutputActionsConfig, OutputConfig
from guard.report import OutputVerdict

__all__ = [
    "BLOCKING_ACTIONS",
    "CheckVerdict",
    "OutputChecker",
    "Rule",
    "apply_action",
    "blank_like",
    "build_classifier",
    "rules_of",
]

logger = logging.getLogger(__name__)

_CLASSIFIERS: dict[tuple, ImageClassifier] = {}
_CLASSIFIERS_LOCK = threading.Lock()

_BOX_FALLBACK = {"blur_boxes": "blur", "pixelate_boxes": "pixelate"}
_INPUT_RANK = {"allow": 0, "escalate": 1, "block": 2}


def build_classifier(cfg: Any) -> ImageClassifier:
    """One shared classifier instance per configuration (models are costly to load)."""
    from guard.output import registry

    key = cfg.instance_key()
    with _CLASSIFIERS_LOCK:
        clf = _CLASSIFIERS.get(key)
        if clf is None:
            clf = registry.classifier_class(cfg.type).from_config(cfg)
            _CLASSIFIERS[key] = clf
        return clf


@dataclass
class Signal:
    """One classifier's labels standing for a category: label -> threshold."""

    classifier: str
    thresholds: dict[str, float]
    action: str | None = None  # the older list syntax: each classifier's own action


@dataclass
class Rule:
    """A category as the checker runs it (see the module doc)."""

    name: str
    signals: list[Signal]
    require: str = "any"
    action: str | None = "blank"  # None: the strongest action of the signals that hit
    unconfirmed_action: str = "none"
    outputs: bool = True
    inputs: bool = True
    input_action: str | None = None
    legacy: bool = False  # from the list syntax: flagged texts keep their old form (no category prefix)


def _unique_names(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for base in names:
        n, name = 1, base
        while name in out:
            n += 1
            name = f"{base}_{n}"
        out.append(name)
    return out


def rules_of(cfg: OutputConfig, names: Sequence[str] | None = None) -> tuple[list[tuple[str, Any]], list[Rule]]:
    """(classifier name, settings) in run order, and the categories as :class:`Rule` s. ``names``:
    the names of the list syntax's classifiers (default their types, numbered when repeated)."""
    if isinstance(cfg.classifiers, dict):
        cls = list(cfg.classifiers.items())
        rules = [
            Rule(
                name,
                [Signal(cid, dict(t)) for cid, t in cat.signals.items()],
                cat.require,
                cat.action,
                cat.unconfirmed_action,
                cat.outputs,
                cat.inputs,
                cat.input_action,
            )
            for name, cat in cfg.categories.items()
        ]
        return cls, rules
    names = list(names) if names is not None else _unique_names([c.type for c in cfg.classifiers])
    cls = list(zip(names, cfg.classifiers))
    if cfg.require == "all":
        rules = (
            [Rule("output", [Signal(n, c.legacy_thresholds(), c.action) for n, c in cls], "all", None, legacy=True)]
            if cls
            else []
        )
    else:
        rules = [Rule(n, [Signal(n, c.legacy_thresholds())], "any", c.action, legacy=True) for n, c in cls]
    return cls, rules


@dataclass
class CheckVerdict(OutputVerdict):
    """:class:`OutputVerdict` plus what the action needs and why it was chosen.

    ``action_reason`` says which action runs and why; ``boxes`` are the (x, y, w, h) regions a box
    action covers; ``skipped`` names classifiers not run on this image (a ``require: all`` cascade
    stopped before them, or their model is not installed and the policy says ``missing: skip``);
    ``unconfirmed`` holds hits that did not count because a later signal disagreed;
    ``input_decision`` (input images only) is block / escalate / allow, or none when nothing flagged.
    """

    action_reason: str = ""
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    target: str = "output"
    input_decision: str = "none"
    settings: OutputActionsConfig | None = field(default=None, repr=False, compare=False)
    placeholder: str | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["action_reason"] = self.action_reason
        if self.boxes:
            d["boxes"] = [list(b) for b in self.boxes]
        if self.skipped:
            d["skipped"] = list(self.skipped)
        if self.unconfirmed:
            d["unconfirmed"] = list(self.unconfirmed)
        if self.target == "input":
            d["target"] = "input"
            d["input_decision"] = self.input_decision
        return d


@dataclass
class _Hit:
    classifier: str
    label: str
    score: float
    threshold: float
    text: str


class OutputChecker:
    """Runs the configured classifiers on a batch of images and judges every category (see the module doc)."""

    def __init__(
        self,
        cfg: OutputConfig,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        classifiers: Sequence[ImageClassifier] | dict[str, ImageClassifier] | None = None,
        input_action: str = "block",
    ):
        """``base_dir``: where a relative placeholder path is looked up (default: the working
        directory). ``classifiers``: instances to use instead of building them from ``cfg`` (one per
        list entry, or a mapping id -> instance for the mapping syntax; for tests and custom
        classifiers). ``input_action``: a flagged input image's decision where its category names
        none (the policy's ``input_images.action``)."""
        self.cfg = cfg
        self.placeholder: str | None = None
        self.input_action = input_action
        self.missing: dict[str, str] = {}  # classifier name -> why it is left out
        self.classifiers: list[tuple[str, Any, ImageClassifier]] = []
        self.rules: list[Rule] = []
        if not cfg.enabled:
            return
        n_cfg = len(cfg.classifiers)
        names = None
        if classifiers is not None and isinstance(cfg.classifiers, list):
            if isinstance(classifiers, dict) or len(classifiers) != n_cfg:
                raise ValueError(f"{len(classifiers)} classifier instances for {n_cfg} configurations")
            names = _unique_names([c.name for c in classifiers])
        cls, rules = rules_of(cfg, names)
        used = {s.classifier for r in rules for s in r.signals}
        for k, (name, ccfg) in enumerate(cls):
            if name not in used:  # named in output.classifiers but by no category: not loaded
                continue
            if classifiers is not None:
                clf = classifiers[k] if isinstance(cfg.classifiers, list) else classifiers.get(name)
                if clf is None:
                    raise ValueError(f"no classifier instance for {name!r}")
            else:
                try:
                    clf = build_classifier(ccfg)
                except ModelMissingError as exc:
                    if ccfg.missing != "skip":
                        raise
                    self.missing[name] = str(exc)
                    logger.warning("output check: %s left out (missing: skip): %s", name, exc)
                    continue
            self.classifiers.append((name, ccfg, clf))
        present = {name for name, *_ in self.classifiers}
        for r in rules:
            r.signals = [s for s in r.signals if s.classifier in present]
            if r.signals:
                self.rules.append(r)
        self._cfg_of = {name: c for name, c, _ in self.classifiers}
        self._clf_of = {name: clf for name, _, clf in self.classifiers}
        if cfg.actions.placeholder and any(
            "placeholder" in (r.action, r.unconfirmed_action) or any(s.action == "placeholder" for s in r.signals)
            for r in self.rules
        ):
            p = Path(cfg.actions.placeholder).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            from guard.output.actions import load_placeholder

            load_placeholder(p)  # a missing or unreadable file fails now, not on the first flag
            self.placeholder = str(p)

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def check(self, images: Sequence[Any], *, target: Literal["output", "input"] = "output") -> list[CheckVerdict]:
        """One verdict per image, in order. ``target``: ``output`` (generated images: the categories with
        ``outputs: true``, actions on the image) or ``input`` (input images of an editing pipeline: the
        categories with ``inputs: true``, ``input_decision`` on the request)."""
        if target not in ("output", "input"):
            raise ValueError(f"target must be 'output' or 'input', got {target!r}")
        n = len(images)
        verdicts = [
            CheckVerdict(settings=self.cfg.actions, placeholder=self.placeholder, target=target) for _ in range(n)
        ]
        for v in verdicts:
            v.skipped.extend(f"{name} (not installed)" for name in self.missing)
        rules = [r for r in self.rules if (r.outputs if target == "output" else r.inputs)]
        if not n or not rules:
            return verdicts
        outputs: dict[str, dict[int, ClassifierOutput]] = {name: {} for name, *_ in self.classifiers}
        # per rule and image: index of the next signal of an all-cascade, or -1 once it stopped
        cursor = {(ri, i): 0 for ri in range(len(rules)) for i in range(n)}
        hits: dict[tuple[int, int], list[list[_Hit]]] = {}
        while True:
            wanted: dict[str, set[int]] = {}
            for ri, r in enumerate(rules):
                for i in range(n):
                    if r.require == "any":
                        for s in r.signals:
                            if i not in outputs[s.classifier]:
                                wanted.setdefault(s.classifier, set()).add(i)
                        continue
                    while 0 <= cursor[ri, i] < len(r.signals):  # advance the cascade on what is known
                        s = r.signals[cursor[ri, i]]
                        if i not in outputs[s.classifier]:
                            wanted.setdefault(s.classifier, set()).add(i)
                            break
                        got = self._hits(s, outputs[s.classifier][i], r)
                        hits.setdefault((ri, i), []).append(got)
                        cursor[ri, i] = cursor[ri, i] + 1 if got else -1
            if not wanted:
                break
            for name, _, clf in self.classifiers:  # policy order, each on the images that need it
                idx = sorted(wanted.get(name, ()))
                if not idx:
                    continue
                outs = clf.classify([images[i] for i in idx])
                if len(outs) != len(idx):
                    raise RuntimeError(f"{name} returned {len(outs)} results for {len(idx)} images")
                for i, o in zip(idx, outs):
                    outputs[name][i] = o
                    verdicts[i].scores[name] = dict(o.scores)
                    if o.detections:
                        verdicts[i].detections[name] = [d.to_dict() for d in o.detections]
        for ri, r in enumerate(rules):
            if r.require == "any":
                for i in range(n):
                    hits[ri, i] = [self._hits(s, outputs[s.classifier][i], r) for s in r.signals]
        for i, v in enumerate(verdicts):
            ran = {name for name in outputs if i in outputs[name]}
            v.skipped.extend(
                name
                for name, *_ in self.classifiers
                if name not in ran and any(s.classifier == name for r in rules for s in r.signals)
            )
            self._decide(v, [(r, hits.get((ri, i), [])) for ri, r in enumerate(rules)], outputs, i)
        return verdicts

    def _hits(self, s: Signal, out: ClassifierOutput, rule: Rule) -> list[_Hit]:
        cfg = self._cfg_of[s.classifier]
        found = []
        for label, thr in s.thresholds.items():
            score = out.scores.get(label)
            if score is None:
                continue
            if cfg.hit(score, thr):
                op = ">" if cfg.strictly_above else ">="
                digits = 3 if cfg.strictly_above else 2
                text = f"{s.classifier}:{label} {score:.{digits}f}{op}{thr:.{digits}f}"
                found.append(
                    _Hit(s.classifier, label, float(score), float(thr), text if rule.legacy else f"{rule.name}: {text}")
                )
        return found

    def _decide(
        self,
        v: CheckVerdict,
        judged: list[tuple[Rule, list[list[_Hit]]]],
        outputs: dict[str, dict[int, ClassifierOutput]],
        i: int,
    ) -> None:
        flagged: list[tuple[Rule, str, list[_Hit], str]] = []  # rule, action, hits, who chose the action
        notes: list[str] = []
        for r, per_signal in judged:
            got = [h for hs in per_signal for h in hs]
            if not got:
                continue
            confirmed = r.require == "any" or (len(per_signal) == len(r.signals) and all(per_signal))
            if confirmed:
                if r.action is None:  # list syntax, require all: the strongest of the classifiers' actions
                    s = max(r.signals, key=lambda s: ACTION_RANK[s.action])
                    flagged.append((r, s.action, got, s.classifier))
                else:
                    flagged.append((r, r.action, got, r.name if r.legacy else f"category {r.name}"))
                continue
            names = [s.classifier for s, hs in zip(r.signals, per_signal) if hs]
            missing = r.signals[len(per_signal) - 1].classifier if per_signal and not per_signal[-1] else "?"
            if r.unconfirmed_action != "none":
                flagged.append((r, r.unconfirmed_action, got, f"category {r.name}, unconfirmed by {missing}"))
            else:
                v.unconfirmed.extend(h.text for h in got)
                notes.append(
                    (f"{r.name}: " if not r.legacy else "")
                    + f"require all, and {missing} did not confirm {', '.join(names)}"
                )
        if v.target == "input":
            self._decide_input(v, flagged, notes)
            return
        if not flagged:
            if notes:
                v.action_reason = "not flagged: " + "; ".join(notes)
            return
        for r, action, got, _ in flagged:
            v.flagged.extend(h.text for h in got)
            self._record(v, r, action, got)
        r, action, got, who = max(flagged, key=lambda t: ACTION_RANK[t[1]])
        why = f"{action} (action of {who}) because " + ", ".join(v.flagged)
        if notes:
            why += "; also " + "; ".join(notes)
        if action in _BOX_FALLBACK:
            boxes = []
            for _, _, hs, _ in flagged:
                for name in dict.fromkeys(h.classifier for h in hs):
                    labels = {h.label for h in hs if h.classifier == name}
                    boxes += [tuple(d.box) for d in outputs[name][i].detections if d.label in labels]
            if boxes:
                v.boxes = boxes
                why += f"; {len(boxes)} box(es), padded by {self.cfg.actions.box_padding:g} of their size"
            else:
                whole = _BOX_FALLBACK[action]
                why += f"; no classifier gave a box for the flagged labels, so {whole} covers the whole image"
                action = whole
        v.action = action
        v.action_reason = why

    def _record(self, v: CheckVerdict, r: Rule, action: str, got: list[_Hit], **extra: Any) -> None:
        top = max(got, key=lambda h: (h.score - h.threshold, h.score))
        v.categories[r.name] = {
            "classifier": top.classifier,
            "label": top.label,
            "score": round(top.score, 4),
            "threshold": round(top.threshold, 4),
            "action": action,
            "hits": [h.text for h in got],
            **extra,
        }

    def _decide_input(self, v: CheckVerdict, flagged: list, notes: list[str]) -> None:
        decisions = []
        for r, action, got, who in flagged:
            if ", unconfirmed by " in who:  # an input is refused only on a confirmed category
                v.unconfirmed.extend(h.text for h in got)
                notes.append(f"{r.name}: require all, and {who.rsplit(' ', 1)[-1]} did not confirm")
                continue
            decision = r.input_action or self.input_action
            v.flagged.extend(h.text for h in got)
            self._record(v, r, action, got, input_action=decision)
            decisions.append((decision, r.name))
        if not decisions:
            v.action_reason = ("not flagged: " + "; ".join(notes)) if notes else ""
            return
        decision, name = max(decisions, key=lambda d: _INPUT_RANK[d[0]])
        v.input_decision = decision
        v.action_reason = f"input image: {decision} (category {name}) because " + ", ".join(v.flagged)


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
