"""The learned screen decision: one logistic-regression head per built-in category over every signal
of :mod:`guard.screen.features`, applied with numpy from a small artifact shipped in the package
(``guard/screen/models/screen-v1.npz`` + ``.json``; trained by :mod:`guard.screen.train`).

Two sets of heads: the main one reads every signal but the multilingual sentence embedding; the
non-English one (``*_ml`` arrays, when the artifact has them) also reads the USE-m3 embedding and
scores the prompts the multilingual encoder read (``ml:active``), so that a Hindi or Korean prompt
is judged by what it means rather than by MiniLM's word pieces of it. Each set has its own
calibration tails and therefore its own operating points.

Operating points are calibrated, not hand-set: the artifact keeps, per head, the upper tail of the
out-of-fold scores of benign calibration prompts (everyday captions and hard negatives). A policy's
``screen.sensitivity`` (``low | medium | high``, or an explicit target false-positive rate, per
category or for all) picks the score at which each head blocks and escalates.

Head types (``meta["head_type"]``, artifact format 3; a format-2 artifact is ``lr``): ``lr``, one
logistic regression per head; ``mlp``, the same linear part plus a one-hidden-layer ReLU trunk
shared by the heads (``w1``, ``b1``, ``w2``). Both are explained exactly: an MLP's contributions
are each feature's distance from its baseline times the gradient of the logit at the prompt,
which for a ReLU network is exact (the active units are linear there).
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
from guard.screen.neighbours import NeighbourIndex

logger = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "screen-v1"

#: per sensitivity: target block FPR on everyday benign prompts; the other rates derive from it
SENSITIVITY_FPR = {"low": 0.0002, "medium": 0.0005, "high": 0.003}
#: hard negatives (trigger words in benign senses) may be this many times as often over the line
HARD_FACTOR = 6.0
#: escalation operates at this many times the block rate
ESCALATE_FACTOR = 5.0

#: gibberish (issue 10 item 4: gibberish that carries an unsafe fragment is blocked, pure gibberish is
#: escalated). A prompt of an optimised prompt's form (suspicion at least ``SOUP_SUSPICION``: one word
#: in five an unknown fragment, or a stray special token) that holds no key term of a blocking concept
#: of a head's category (exact or misspelt) and does not read as another language blocks on that head only at a learned
#: score of ``SOUP_BLOCK_MIN`` or more, and is escalated under it: a head's calibrated line is set on
#: benign prose, and the embedding of a stray-token soup sits near the adversarial soups the head was
#: trained on whatever the soup says. Chosen out of fold on the training rows (15,105-row corpus and the
#: shared sets' training rows; benign soups blocked / adversarial soups blocked / Ring-A-Bell violence
#: blocked, %): no rule 10.4 / 91.6 / 99.6; suspicion >= 0.5 and 0.95: 6.3 / 90.9 / 99.6; >= 0.3 and
#: 0.9: 5.0 / 90.9 / 99.6; >= 0.3 and 0.95: 4.1 / 90.3 / 99.6; >= 0.3 and 0.98: 2.8 / 88.6 / 99.6 (an
#: escalated soup is still flagged). Explicit, misspelt, euphemistic, implicit, I2P, Ring-A-Bell nudity,
#: hard-negative and COCO training rows are unchanged by it; translated rows 93.79 -> 93.75.
SOUP_SUSPICION = 0.3
SOUP_BLOCK_MIN = 0.9

Sensitivity = str | float

#: artifact formats this module reads: 2 (logistic regression only) and 3 (``head_type``)
FORMATS = ("guard-learned-screen/2", "guard-learned-screen/3")
HEAD_TYPES = ("lr", "mlp")


@dataclass(frozen=True)
class OperatingPoint:
    category: str
    block: float  # probability at or above which the head blocks
    escalate: float  # probability at or above which it escalates
    target_fpr: float
    variant: str = "main"  # "main" | "ml" (the non-English heads)

    def describe(self) -> str:
        who = "non-English model, " if self.variant == "ml" else ""
        return f"{who}block >= {self.block:.3f}, escalate >= {self.escalate:.3f} (target FPR {self.target_fpr:g})"


VARIANTS = ("main", "ml")
_PER_CONCEPT = ("similarity", "lexical", "contrast")


@dataclass(frozen=True)
class _SignalKeys:
    """How one variant's features sum into the signals a reason names (see ``contributions``)."""

    key_of: np.ndarray  # the signal of each feature
    labels: list[str]  # each signal in words (in order of its first feature)
    base: np.ndarray  # the baseline each feature's contribution is measured from
    mean: np.ndarray  # the training means it was computed for
    positions: np.ndarray  # 0 .. n-1
    by_signal: np.ndarray  # features grouped by signal, in feature order within each
    starts: np.ndarray  # where each signal's group starts in ``by_signal``


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


class LearnedModel:
    """Numpy inference for the trained heads. Immutable after loading; safe across threads."""

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: dict, source: str = "<arrays>"):
        fmt = meta.get("format")
        if fmt not in FORMATS:
            raise GuardError(
                f"{source}: learned screen artifact format {fmt!r} is not supported; this guard reads "
                f"{', '.join(FORMATS)} (retrain with `guard train-screen`)"
            )
        self.head_type = str(meta.get("head_type", "lr")) if fmt != FORMATS[0] else "lr"
        if self.head_type not in HEAD_TYPES:
            raise GuardError(
                f"{source}: unknown learned head type {self.head_type!r}; expected one of {', '.join(HEAD_TYPES)}"
            )
        self.meta = meta
        self._arrays = dict(arrays)  # as loaded (for a copy with other operating rates)
        self.layout = FeatureLayout.from_dict(meta["layout"])
        self.heads: tuple[str, ...] = tuple(meta["heads"])
        self.mean = np.asarray(arrays["mean"], np.float32)
        self.scale = np.asarray(arrays["scale"], np.float32)
        self.coef = np.asarray(arrays["coef"], np.float32)  # (n_features, n_heads), on standardised inputs
        self.intercept = np.asarray(arrays["intercept"], np.float32)
        self.tails = {k: np.asarray(arrays[k], np.float32) for k in arrays if k.startswith("tail_")}
        self.tail_n = {k: int(v) for k, v in meta["tail_n"].items()}
        names = self.layout.names
        nb = self.layout.n_base
        if self.coef.shape != (nb, len(self.heads)) or self.mean.shape != (nb,):
            raise GuardError(
                f"learned screen artifact is inconsistent: coef {self.coef.shape}, "
                f"{nb} features, {len(self.heads)} heads"
            )
        self.has_ml = "coef_ml" in arrays
        if self.has_ml:
            self.mean_ml = np.asarray(arrays["mean_ml"], np.float32)
            self.scale_ml = np.asarray(arrays["scale_ml"], np.float32)
            self.coef_ml = np.asarray(arrays["coef_ml"], np.float32)
            self.intercept_ml = np.asarray(arrays["intercept_ml"], np.float32)
            if self.coef_ml.shape != (len(names), len(self.heads)) or self.mean_ml.shape != (len(names),):
                raise GuardError(
                    f"learned screen artifact is inconsistent: coef_ml {self.coef_ml.shape}, "
                    f"{len(names)} features, {len(self.heads)} heads"
                )
        self.names = names
        self.column_of = {n: i for i, n in enumerate(names)}
        #: the label-aware neighbour index of a layout with ``nb:*`` columns (guard.screen.neighbours)
        self.neighbours: NeighbourIndex | None = None
        if self.layout.neighbours:
            self.neighbours = NeighbourIndex.from_arrays(arrays, meta.get("neighbours") or {}, source)
            if self.neighbours.n_heads != len(self.heads) or len(self.neighbours.mean) != self.layout.embedding_dim:
                raise GuardError(
                    f"{source}: neighbour index has {self.neighbours.n_heads} heads over "
                    f"{len(self.neighbours.mean)} dimensions; the model has {len(self.heads)} heads over "
                    f"{self.layout.embedding_dim}"
                )
        self._hidden: dict[bool, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if self.head_type == "mlp":
            self._load_hidden(arrays, source)
        self._groups = np.asarray([self.layout.group_of(n) for n in names])
        # evidence that is either there or not (a key term, a benign look-alike, a sign of an optimised
        # prompt, an undone obfuscation) contributes against its absence, so that a missing benign
        # look-alike is never named as a reason; graded signals contribute against the training mean
        self._absent_is_zero = np.isin(self._groups, ["lexical", "contrast", "suspicion", "obfuscation"])
        #: per number of features (one per variant): see ``_signal_keys``
        self._keys: dict[int, _SignalKeys] = {}
        # the columns the gibberish rule reads (absent from a layout without them: the rule is off)
        self._sus_col = names.index("sus:score") if "sus:score" in names else None
        lex = [f"catlex:{h}" for h in self.heads]
        self._catlex_cols = np.asarray([names.index(n) for n in lex]) if all(n in names for n in lex) else None

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
        if not isinstance(meta, dict):
            raise GuardError(f"{js}: learned screen metadata must be a JSON object, got {type(meta).__name__}")
        return cls(arrays, meta, source=str(js))

    def _load_hidden(self, arrays: Mapping[str, np.ndarray], source: str) -> None:
        """The MLP trunk of each set of heads: ``w1`` (n_features, hidden), ``b1``, ``w2`` (hidden, n_heads)."""
        for ml, suffix in ((False, ""), (True, "_ml")):
            if ml and not self.has_ml:
                continue
            try:
                w1, b1, w2 = (np.asarray(arrays[k + suffix], np.float32) for k in ("w1", "b1", "w2"))
            except KeyError as e:
                raise GuardError(f"{source}: MLP learned screen artifact lacks the array {e.args[0]!r}") from e
            n = len(self._part(ml)[0])
            if w1.shape != (n, len(b1)) or w2.shape != (len(b1), len(self.heads)):
                raise GuardError(
                    f"{source}: MLP arrays{suffix} are inconsistent: w1 {w1.shape}, b1 {b1.shape}, w2 {w2.shape} "
                    f"for {n} features and {len(self.heads)} heads"
                )
            self._hidden[ml] = (w1, b1, w2)

    # ------------------------------------------------------------------ scoring

    def variant_of(self, x: np.ndarray) -> np.ndarray:
        """(n,) True for rows the non-English heads score (the multilingual encoder read them)."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        col = self.layout.ml_active_column
        if not self.has_ml or col is None or x.shape[1] != len(self.names):
            return np.zeros(x.shape[0], bool)
        return x[:, col] > 0.5

    def _part(self, ml: bool):
        if ml:
            return self.mean_ml, self.scale_ml, self.coef_ml, self.intercept_ml
        return self.mean, self.scale, self.coef, self.intercept

    def standardise(self, x: np.ndarray, ml: bool = False) -> np.ndarray:
        mean, scale, _, _ = self._part(ml)
        return (x[..., : len(mean)] - mean) / scale

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, n_heads) raw scores of raw feature rows (each row by the heads of its variant)."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        if self._hidden:
            return self._mlp_logits(x)
        out = self.standardise(x) @ self.coef + self.intercept
        ml = self.variant_of(x)
        if ml.any():
            out[ml] = self.standardise(x[ml], True) @ self.coef_ml + self.intercept_ml
        return out

    def _mlp_logits(self, x: np.ndarray) -> np.ndarray:
        def part(rows: np.ndarray, ml: bool) -> np.ndarray:
            _, _, coef, intercept = self._part(ml)
            w1, b1, w2 = self._hidden[ml]
            xs = self.standardise(rows, ml)
            return xs @ coef + intercept + np.maximum(xs @ w1 + b1, 0.0) @ w2

        out = part(x, False)
        ml = self.variant_of(x)
        if ml.any():
            out[ml] = part(x[ml], True)
        return out

    def logit_parts(self, x: np.ndarray, head: str) -> tuple[np.ndarray, float]:
        """One feature row's exact decomposition of one head's logit: per feature, its distance from
        the baseline (see :meth:`contributions`) times the logit's gradient there, and the constant
        that makes them sum to the logit. For logistic regression the constant is the same for every
        prompt; for an MLP it also holds the active hidden units' value at the baseline."""
        h = self.heads.index(head)
        x = np.asarray(x, np.float32)
        ml = bool(self.variant_of(x)[0])
        mean, scale, coef, intercept = self._part(ml)
        n = len(mean)
        base = np.where(self._absent_is_zero[:n], 0.0, mean).astype(np.float32)
        dist = (x[:n] - base) / scale  # standardised distance from the baseline
        s0 = (base - mean) / scale  # the baseline, standardised
        grad = coef[:, h].astype(np.float64)
        const = float(intercept[h]) + float(s0 @ coef[:, h])
        if self._hidden:
            w1, b1, w2 = self._hidden[ml]
            active = ((x[:n] - mean) / scale) @ w1 + b1 > 0
            grad = grad + w1[:, active] @ w2[active, h]
            const += float((b1[active] + s0 @ w1[:, active]) @ w2[active, h])
        return dist * grad, const

    def soup_without_fragment(self, x: np.ndarray) -> np.ndarray:
        """(n, n_heads) True where a raw feature row has an optimised prompt's form (suspicion at least
        ``SOUP_SUSPICION``) and no key term of a blocking concept of that head's category: pure gibberish
        for that head, which blocks it only at ``SOUP_BLOCK_MIN`` and escalates it under that (issue 10 item 4)."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        if self._sus_col is None or self._catlex_cols is None or x.shape[1] <= self._sus_col:
            return np.zeros((x.shape[0], len(self.heads)), bool)
        form = x[:, self._sus_col] >= SOUP_SUSPICION
        return form[:, None] & (x[:, self._catlex_cols] <= 0.0)

    def proba(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logits(x))

    def contributions(self, x: np.ndarray, head: str, top: int | None = 4) -> list[tuple[str, float]]:
        """The largest signed contributions to one head's logit for one feature row, in words, summed
        per concept for similarity / lexical / contrast and per group otherwise; largest first. Each is
        the feature's weight times its distance from a baseline: absence for present-or-not evidence
        (key terms, benign look-alikes, suspicion, obfuscation), the training mean for graded signals;
        the contributions and a per-head constant sum to the logit. For an MLP each weight is the
        logit's gradient at the prompt (exact: see :meth:`logit_parts`).

        Vectorised: each feature's signal (its key in words) is an index computed once per variant;
        the per-signal sums are one ``bincount`` over the features in order, in float64, as a running
        sum adds them (a zero adds nothing), and signals are ranked by sum, ties in the order of their
        first contributing (non-zero) feature, found by a ``minimum.reduceat`` over each signal's features."""
        if self._hidden:
            return self._grouped(*self._mlp_parts(x, head), top)
        h = self.heads.index(head)
        x = np.asarray(x, np.float32)
        ml = bool(self.variant_of(x)[0])
        mean, scale, coef, _ = self._part(ml)
        n = len(mean)
        keys = self._signal_keys(n, mean)
        c = (x[:n] - keys.base) / scale * coef[:, h]
        first = np.minimum.reduceat(np.where(c != 0.0, keys.positions, n)[keys.by_signal], keys.starts)
        present = np.flatnonzero(first < n)
        if not len(present):
            return []
        present = present[np.argsort(first[present])]  # in order of first appearance (all distinct)
        vals = np.bincount(keys.key_of, weights=c.astype(np.float64), minlength=len(keys.labels))[present]
        order = np.argsort(-vals, kind="stable")[:top]
        return [(keys.labels[int(present[k])], float(vals[k])) for k in order]

    def _signal_keys(self, n: int, mean: np.ndarray) -> _SignalKeys:
        """For the first ``n`` features: each one's signal, the signals in words, the baseline each is
        measured from (0 for present-or-not evidence, else the training mean). Cached per variant."""
        got = self._keys.get(n)
        if got is None or got.mean is not mean:
            index: dict[str, int] = {}
            key_of = np.empty(n, np.int64)
            for j, (name, group) in enumerate(zip(self.names[:n], self._groups[:n])):
                if group in ("similarity", "lexical", "contrast") and ":" in name:
                    key = f"{GROUP_WORDS[group]} {name.split(':', 1)[1]}"
                else:
                    key = GROUP_WORDS[group]
                key_of[j] = index.setdefault(key, len(index))
            by_signal = np.argsort(key_of, kind="stable")
            got = self._keys[n] = _SignalKeys(
                key_of=key_of,
                labels=list(index),
                base=np.where(self._absent_is_zero[:n], 0.0, mean),
                mean=mean,
                positions=np.arange(n),
                by_signal=by_signal,
                starts=np.searchsorted(key_of[by_signal], np.arange(len(index))),
            )
        return got

    def _mlp_parts(self, x: np.ndarray, head: str) -> tuple[np.ndarray, int]:
        c, _ = self.logit_parts(x, head)
        return c, len(c)

    def _grouped(self, c: np.ndarray, n: int, top: int | None) -> list[tuple[str, float]]:
        """Per-feature contributions summed per concept (similarity / lexical / contrast) or group, largest first."""
        agg: dict[str, float] = {}
        for name, group, v in zip(self.names[:n], self._groups[:n], c):
            if v == 0.0:
                continue
            key = f"{GROUP_WORDS[group]} {name.split(':', 1)[1]}" if group in _PER_CONCEPT and ":" in name else None
            key = key or GROUP_WORDS[group]
            agg[key] = agg.get(key, 0.0) + float(v)
        return sorted(agg.items(), key=lambda kv: -kv[1])[:top]

    # ------------------------------------------------------------------ operating points

    def _tail_threshold(self, head: str, which: str, fpr: float, variant: str = "main") -> float:
        which = which if variant == "main" else f"{which}_{variant}"
        tail = self.tails.get(f"tail_{which}_{head}")
        n = self.tail_n.get(f"{which}_{head}", 0)
        if tail is None or n == 0 or len(tail) == 0:
            return -math.inf  # no calibration data of this kind: the other kind decides
        k = math.floor(fpr * n)  # at most k benign calibration prompts at or over the line
        if k >= len(tail):
            return float(tail[-1])
        return float(np.nextafter(tail[k], np.float32(np.inf)))

    def operating_point(self, head: str, sensitivity: Sensitivity = "medium", variant: str = "main") -> OperatingPoint:
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
        if variant not in VARIANTS or (variant == "ml" and not self.has_ml):
            raise GuardError(f"the learned screen artifact has no {variant!r} heads")
        rates = self.meta.get("operating_rates", {})
        hard = float(rates.get("hard_factor", HARD_FACTOR))
        esc_f = float(rates.get("escalate_factor", {}).get(head, ESCALATE_FACTOR))
        # per head the hard negatives' rates are scaled down so that, over all heads together, the
        # hard negatives stay within the artifact's union targets (measured out of fold at training)
        scale = rates.get("hard_scale", {}).get(variant, {})
        block = max(
            self._tail_threshold(head, "everyday", fpr, variant),
            self._tail_threshold(head, "hard", fpr * hard * float(scale.get("block", 1.0)), variant),
        )
        esc = max(
            self._tail_threshold(head, "everyday", fpr * esc_f, variant),
            self._tail_threshold(head, "hard", fpr * hard * esc_f * float(scale.get("escalate", 1.0)), variant),
        )
        if not math.isfinite(block):
            raise GuardError(f"the learned screen artifact has no benign calibration scores for {head}")
        esc = min(esc, block)
        return OperatingPoint(head, float(_sigmoid(np.float32(block))), float(_sigmoid(np.float32(esc))), fpr, variant)

    def operating_points(
        self, sensitivity: Sensitivity | Mapping[str, Sensitivity] = "medium", variant: str = "main"
    ) -> dict[str, OperatingPoint]:
        if isinstance(sensitivity, Mapping):
            unknown = sorted(set(sensitivity) - set(self.heads) - {"default"})
            if unknown:
                raise GuardError(
                    f"screen.sensitivity names unknown categories {unknown}; "
                    f"the learned heads are {', '.join(self.heads)} (or 'default')"
                )
            base = sensitivity.get("default", "medium")
            return {h: self.operating_point(h, sensitivity.get(h, base), variant) for h in self.heads}
        return {h: self.operating_point(h, sensitivity, variant) for h in self.heads}


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


__all__ = ["CATEGORIES", "SENSITIVITY_FPR", "SOUP_BLOCK_MIN", "LearnedModel", "OperatingPoint", "get_model"]
