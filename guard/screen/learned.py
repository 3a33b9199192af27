"""The learned screen decision: one logistic-regression head per built-in category over every signal
of :mod:`guard.screen.features`, applied with numpy from a small artifact shipped in the package
(``guard/screen/models/screen-v1.npz`` + ``.json``; trained by :mod:`guard.screen.train`).

Operating points are calibrated, not hand-set: the artifact keeps, per head, the upper tail of the
out-of-fold scores of benign calibration prompts (everyday captions and hard negatives). A policy's
``screen.sensitivity`` (``low | medium | high``, or an explicit target false-positive rate, per
category or for all) picks the score at which each head blocks and escalates.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guard.errors import GuardError
from guard.screen.features import CATEGORIES, GROUP_WORDS, FeatureLayout

logger = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "screen-v1"

#: per sensitivity: target block FPR on everyday benign prompts; the other rates derive from it
SENSITIVITY_FPR = {"low": 0.0002, "medium": 0.0005, "high": 0.003}
#: hard negatives (trigger words in benign senses) may be this many times as often over the line
HARD_FACTOR = 6.0
#: escalation operates at this many times the block rate
ESCALATE_FACTOR = 5.0

Sensitivity = str | float


@dataclass(frozen=True)
class OperatingPoint:
    category: str
    block: float  # probability at or above which the head blocks
    escalate: float  # probability at or above which it escalates
    target_fpr: float

    def describe(self) -> str:
        return f"block >= {self.block:.3f}, escalate >= {self.escalate:.3f} (target FPR {self.target_fpr:g})"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


class LearnedModel:
    """Numpy inference for the trained heads. Immutable after loading; safe across threads."""

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: dict):
        self.meta = meta
        self.layout = FeatureLayout.from_dict(meta["layout"])
        self.heads: tuple[str, ...] = tuple(meta["heads"])
        self.mean = np.asarray(arrays["mean"], np.float32)
        self.scale = np.asarray(arrays["scale"], np.float32)
        self.coef = np.asarray(arrays["coef"], np.float32)  # (n_features, n_heads), on standardised inputs
        self.intercept = np.asarray(arrays["intercept"], np.float32)
        self.tails = {k: np.asarray(arrays[k], np.float32) for k in arrays if k.startswith("tail_")}
        self.tail_n = {k: int(v) for k, v in meta["tail_n"].items()}
        names = self.layout.names
        if self.coef.shape != (len(names), len(self.heads)) or self.mean.shape != (len(names),):
            raise GuardError(
                f"learned screen artifact is inconsistent: coef {self.coef.shape}, "
                f"{len(names)} features, {len(self.heads)} heads"
            )
        self.names = names
        self._groups = np.asarray([self.layout.group_of(n) for n in names])

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MODEL) -> LearnedModel:
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".npz", ".json") else base
        npz, js = base.with_suffix(".npz"), base.with_suffix(".json")
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as e:
            raise GuardError(f"cannot load the learned screen model {base}(.npz|.json): {e}") from e
        return cls(arrays, meta)

    # ------------------------------------------------------------------ scoring

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, n_heads) raw scores of raw feature rows."""
        return self.standardise(np.asarray(x, np.float32)) @ self.coef + self.intercept

    def proba(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logits(x))

    def contributions(self, x: np.ndarray, head: str, top: int = 4) -> list[tuple[str, float]]:
        """The largest signed contributions to one head's score for one feature row, in words, summed
        per concept for similarity / lexical / contrast and per group otherwise; largest first."""
        h = self.heads.index(head)
        c = self.standardise(np.asarray(x, np.float32)) * self.coef[:, h]
        agg: dict[str, float] = {}
        for name, group, v in zip(self.names, self._groups, c):
            if v == 0.0:
                continue
            if group in ("similarity", "lexical", "contrast") and ":" in name:
                key = f"{GROUP_WORDS[group]} {name.split(':', 1)[1]}"
            else:
                key = GROUP_WORDS[group]
            agg[key] = agg.get(key, 0.0) + float(v)
        return sorted(agg.items(), key=lambda kv: -kv[1])[:top]

    # ------------------------------------------------------------------ operating points

    def _tail_threshold(self, head: str, which: str, fpr: float) -> float:
        tail = self.tails.get(f"tail_{which}_{head}")
        n = self.tail_n.get(f"{which}_{head}", 0)
        if tail is None or n == 0 or len(tail) == 0:
            return -math.inf  # no calibration data of this kind: the other kind decides
        k = math.floor(fpr * n)  # at most k benign calibration prompts at or over the line
        if k >= len(tail):
            return float(tail[-1])
        return float(np.nextafter(tail[k], np.float32(np.inf)))

    def operating_point(self, head: str, sensitivity: Sensitivity = "medium") -> OperatingPoint:
        if isinstance(sensitivity, str):
            if sensitivity not in SENSITIVITY_FPR:
                raise GuardError(
                    f"unknown sensitivity {sensitivity!r} for {head}; expected low, medium, high "
                    "or a target false-positive rate in (0, 0.5)"
                )
            fpr = SENSITIVITY_FPR[sensitivity]
        else:
            fpr = float(sensitivity)
            if not 0.0 < fpr < 0.5:
                raise GuardError(f"target false-positive rate for {head} must be in (0, 0.5), got {fpr}")
        block = max(self._tail_threshold(head, "everyday", fpr), self._tail_threshold(head, "hard", fpr * HARD_FACTOR))
        esc = max(
            self._tail_threshold(head, "everyday", fpr * ESCALATE_FACTOR),
            self._tail_threshold(head, "hard", fpr * HARD_FACTOR * ESCALATE_FACTOR),
        )
        if not math.isfinite(block):
            raise GuardError(f"the learned screen artifact has no benign calibration scores for {head}")
        esc = min(esc, block)
        return OperatingPoint(head, float(_sigmoid(np.float32(block))), float(_sigmoid(np.float32(esc))), fpr)

    def operating_points(
        self, sensitivity: Sensitivity | Mapping[str, Sensitivity] = "medium"
    ) -> dict[str, OperatingPoint]:
        if isinstance(sensitivity, Mapping):
            unknown = sorted(set(sensitivity) - set(self.heads) - {"default"})
            if unknown:
                raise GuardError(
                    f"screen.sensitivity names unknown categories {unknown}; "
                    f"the learned heads are {', '.join(self.heads)} (or 'default')"
                )
            base = sensitivity.get("default", "medium")
            return {h: self.operating_point(h, sensitivity.get(h, base)) for h in self.heads}
        return {h: self.operating_point(h, sensitivity) for h in self.heads}


_MODELS: dict[str, LearnedModel] = {}
_MODELS_LOCK = threading.Lock()


def get_model(path: str | Path | None = None) -> LearnedModel:
    """Process-wide cached model (the shipped artifact unless ``path`` is given)."""
    key = str(path or DEFAULT_MODEL)
    with _MODELS_LOCK:
        m = _MODELS.get(key)
        if m is None:
            m = LearnedModel.load(path or DEFAULT_MODEL)
            _MODELS[key] = m
        return m


__all__ = ["CATEGORIES", "SENSITIVITY_FPR", "LearnedModel", "OperatingPoint", "get_model"]
