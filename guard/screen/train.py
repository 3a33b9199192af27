"""Trains the learned screen decision (``guard train-screen``): seeded, reproducible, minutes on 2 cores.

    python -m guard.screen.train [--data ../shared/data/prompts] [--out guard/screen/models/screen-v1]

Data (see ``guard/screen/data/README.md`` for the fixed split): the shipped corpus's train part; when
``--data`` holds the shared prompt sets, also COCO captions (``int(case_number) % 5 != 0``), I2P
(``case_number % 5 != 0``: nudity >= 50 % is sexual, <= 10 % is not sexual; other heads ignore
I2P), Ring-A-Bell nudity and its clothed counterparts and Ring-A-Bell violence (row index ``% 3 !=
2``). Evaluation rows are never read here. Every training prompt also appears, with a seeded
probability, in one obfuscated form (leetspeak, homoglyphs, spacing, fullwidth, invisible characters,
combining marks) with the same label, so obfuscation alone carries no risk.

Steps: featurise every prompt with the default policy's screen; index the training prompts'
embeddings and labels and give every prompt the neighbour features of the other folds' prompts
(:mod:`guard.screen.neighbours`; ``--no-neighbours``: none); 5-fold grouped out-of-fold logistic
regression per head, whose benign scores set the operating points; a final fit on everything; the
artifact (``.npz`` weights + ``.json`` metadata and metrics) and ``MODEL_CARD.md`` are written.

``--head mlp`` adds a shared one-hidden-layer ReLU trunk on top of that regression (seeded Adam,
early stopping on a grouped share of each fold's training groups). Measured out of fold on the
training rows (64 units) it did not beat the regression (AUROC lower on 9 of 12 heads, hard
negatives flagged 3.7 vs 3.3 %), so ``lr`` stays the default.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from guard.screen.fastpath import (
    GATE_FORMAT,
    TARGET_MISS,
    CheapSignals,
    FastGate,
    model_fingerprint,
    policy_digest,
    sigmoid,
)
from guard.screen.features import CATEGORIES, FeatureLayout, featurize, layout_for
from guard.screen.neighbours import NeighbourIndex

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the multilingual encoders in words (model card)
_ML_NAMES = {"e5": "multilingual-e5-small, 4-bit", "usem3": "USE-m3", "e5+usem3": "multilingual-e5-small and USE-m3"}


def _default_data() -> Path:
    """``$GUARD_DATA``, else the first ``shared/data/prompts`` beside the checkout or one level up."""
    env = os.environ.get("GUARD_DATA")
    if env:
        return Path(env)
    for base in (REPO_ROOT.parent, REPO_ROOT.parent.parent):
        p = base / "shared" / "data" / "prompts"
        if p.is_dir():
            return p
    return REPO_ROOT.parent / "shared" / "data" / "prompts"


DEFAULT_DATA = _default_data()
DEFAULT_OUT = Path(__file__).resolve().parent / "models" / "screen-v1"
TAIL = 400  # benign calibration scores kept per head and set


@dataclass
class Example:
    text: str
    y: np.ndarray  # (6,) 0/1
    mask: np.ndarray  # (6,) 1 where the label is known for that head
    source: str
    group: str
    calib: str | None = None  # "everyday" | "hard": benign calibration data
    weight: float = 1.0
    lang: str = ""  # corpus rows: the language
    nudity: float | None = None  # I2P rows: share of generated images with nudity (percent)


#: categories an unsafe prompt of the key's category may also belong to: those heads ignore it
#: (a self-harm prompt is often violent, a terror attack both illegal and violent, ...)
OVERLAPS = {
    "sexual": (),
    "minors": (),
    "violence": ("self_harm", "illegal", "hate"),
    "self_harm": ("violence",),
    "hate": ("violence",),
    "illegal": ("violence", "hate"),
}


def _label(cat: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Targets and mask for one example: a prompt of one category is a negative for every other head
    except those of overlapping categories (ignored); sexual content involving minors is sexual."""
    y = np.zeros(len(CATEGORIES), np.float32)
    m = np.ones(len(CATEGORIES), np.float32)
    if cat is not None:
        y[CATEGORIES.index(cat)] = 1.0
        for o in OVERLAPS[cat]:
            m[CATEGORIES.index(o)] = 0.0
        if cat == "minors":
            y[CATEGORIES.index("sexual")] = 1.0
    return y, m


# ---------------------------------------------------------------- obfuscation (training + evaluation)

_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_CYR = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}
OBFUSCATIONS = ("leetspeak", "homoglyphs", "spacing", "fullwidth", "invisible", "marks")
#: transforms no training row is made with: ``benchmarks/obfuscation_eval.py --probes`` measures how the
#: de-obfuscation holds against forms the learned decision never saw (``upside_down`` turns the whole text)
PROBE_OBFUSCATIONS = ("small_caps", "upside_down", "stars", "greek")
# (written here, not taken from guard.screen.normalize's tables, so that a wrong entry there shows in the probe)
_SMALL_CAPS = dict(zip("abcdefghijklmnopqrstuvwyz", "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘǫʀꜱᴛᴜᴠᴡʏᴢ", strict=True))
_TURNED = dict(zip("abcdefghijklmnopqrstuvwxyz", "ɐqɔpǝɟƃɥᴉɾʞlɯuodbɹsʇnʌʍxʎz", strict=True))
_TURNED_MARKS = str.maketrans({",": "'", "'": ",", ".": "˙", "!": "¡", "?": "¿"})
_GREEK = {"a": "α", "e": "ε", "o": "ο", "i": "ι", "k": "κ", "t": "τ", "x": "χ", "v": "ν", "u": "υ", "p": "ρ"}


def obfuscate(text: str, how: str, rng: random.Random) -> str:
    """``text`` with its longer words obfuscated one way (seeded by ``rng``)."""
    if how == "upside_down":  # the whole text turned half a turn: every letter turned, in reverse order
        return "".join(_TURNED.get(ch, ch) for ch in text.lower())[::-1].translate(_TURNED_MARKS)
    words = text.split(" ")
    idx = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()] or list(range(len(words)))
    pick = set(rng.sample(idx, max(1, len(idx) // 2))) if idx else set()
    out = []
    for i, w in enumerate(words):
        if i not in pick:
            out.append(w)
            continue
        if how == "leetspeak":
            w = "".join(_LEET.get(ch, ch) for ch in w)
        elif how == "homoglyphs":
            w = "".join(_CYR.get(ch, ch) for ch in w)
        elif how == "spacing":
            w = " ".join(w)
        elif how == "fullwidth":
            w = "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in w)
        elif how == "invisible":
            w = "\u200b".join(w)
        elif how == "marks":
            w = "".join(ch + "\u0301" if ch.isalpha() and rng.random() < 0.5 else ch for ch in w)
        elif how == "small_caps":
            w = "".join(_SMALL_CAPS.get(ch, ch) for ch in w.lower())
        elif how == "stars":  # up to three vowels after the first letter censored
            vowels = [j for j, ch in enumerate(w) if j > 0 and ch in "aeiou"][:3]
            w = "".join("*" if j in vowels else ch for j, ch in enumerate(w))
        elif how == "greek":  # Greek look-alikes for some letters of a Latin word
            w = "".join(_GREEK.get(ch, ch) if rng.random() < 0.5 else ch for ch in w)
        else:
            raise ValueError(
                f"unknown obfuscation {how!r}; expected one of {', '.join(OBFUSCATIONS + PROBE_OBFUSCATIONS)}"
            )
        out.append(w)
    return " ".join(out)


# ---------------------------------------------------------------- data


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def coco_is_eval(case_number: str) -> bool:
    return int(case_number) % 5 == 0


def i2p_is_eval(case_number: str) -> bool:
    return int(float(case_number)) % 5 == 0


def load_examples(
    data: Path | None,
    corpus_rows: list[dict] | None = None,
    *,
    seed: int = 0,
    obfuscate_share: float = 0.15,
    limit: int | None = None,
) -> list[Example]:
    """Training examples (never an evaluation row)."""
    from guard.screen.corpus_build import load

    rows = corpus_rows if corpus_rows is not None else load()
    ex: list[Example] = []
    for r in rows:
        if r["split"] != "train":
            continue
        cat = None if r["label"] == "benign" else r["label"]
        y, m = _label(cat)
        ex.append(
            Example(
                r["text"],
                y,
                m,
                f"corpus:{r['kind']}",
                r["group"],
                calib="hard" if r["kind"] in ("hard_negative", "short") else None,
                lang=r.get("lang", ""),
            )
        )
    if data is not None and data.is_dir():
        for r in _rows(data / "coco_10k.csv")[:limit]:
            if not coco_is_eval(r["case_number"]):
                y, m = _label(None)
                ex.append(Example(r["prompt"], y, m, "coco", f"coco/{r['case_number']}", calib="everyday"))
        for r in _rows(data / "i2p.csv")[:limit]:
            if i2p_is_eval(r["case_number"]):
                continue
            nud = float(r["nudity_percentage"] or 0)
            t = i2p_sexual_target(nud)
            if t is None:
                continue
            y = np.zeros(len(CATEGORIES), np.float32)
            m = np.zeros(len(CATEGORIES), np.float32)
            si = CATEGORIES.index("sexual")
            y[si], m[si] = t, 1.0
            ex.append(Example(r["prompt"], y, m, "i2p", f"i2p/{r['case_number']}", nudity=nud))
        for i, r in enumerate(_rows(data / "ring_a_bell_nudity.csv")[:limit]):
            if i % 3 == 2:
                continue
            y, m = _label("sexual")
            ex.append(Example(r["sensitive prompt"], y, m, "rab_nudity", f"rab_nudity/{i}"))
            y, m = _label(None)
            ex.append(Example(r["normal prompt"], y, m, "rab_clothed", f"rab_nudity/{i}", calib="hard"))
        for i, r in enumerate(_rows(data / "ring_a_bell_violence_adv.csv")[:limit]):
            if i % 3 == 2:
                continue
            y, m = _label("violence")
            ex.append(Example(r["prompt"], y, m, "rab_violence", f"rab_violence/{i}"))
    for e in ex:
        e.weight = SOURCE_WEIGHT.get(e.source, 1.0)
        if e.source == "i2p" and e.nudity is not None and e.nudity >= I2P_POSITIVE_MIN:
            e.weight *= I2P_POSITIVE_WEIGHT
    # one obfuscated copy of a share of the prompts, same label (not calibration data)
    extra = []
    for e in ex:
        # seeded per prompt, so that adding data leaves every other prompt's copy as it was
        r = random.Random(f"{seed}/{e.text}")
        if r.random() < obfuscate_share:
            how = r.choice(OBFUSCATIONS)
            extra.append(
                Example(
                    obfuscate(e.text, how, r), e.y, e.mask, e.source + f"+{how}", e.group, weight=e.weight, lang=e.lang
                )
            )
    return ex + extra


#: training weight per source (1 where absent): the few paired Ring-A-Bell nudity prompts and their
#: clothed counterparts teach the sexual head where euphemism ends, so they count more (out of fold,
#: x3 vs x1: clothed counterparts flagged 17 vs 28 %, the nudity prompts unchanged at 58 % blocked)
SOURCE_WEIGHT: dict[str, float] = {"rab_nudity": 3.0, "rab_clothed": 3.0}

#: feature groups the non-English heads read (with the USE-m3 embedding): the lexical layer, the
#: suspicion and obfuscation signals, the shape and the multilingual cosines; not MiniLM's
#: embedding, similarities or contrasts, which mean little for a Hindi or Korean prompt. Measured
#: out of fold on the translated training rows, this beats the heads over every column (e.g. tr
#: 81 vs 67 % blocked, de 91 vs 71 %, non-English hard negatives flagged 7 vs 9 %).
ML_GROUPS = ("lexical", "suspicion", "obfuscation", "shape", "multilingual")
#: weight of the prompts read as not English when fitting the non-English heads (out of fold, 3 vs 1:
#: pl 78 vs 69 % blocked, ko 77 vs 73 %, hi 23 vs 17 %, non-English hard negatives unchanged)
NON_ENGLISH_WEIGHT = 3.0

#: I2P's label is a share of images with nudity, not a judgement of the prompt: prompts at or over
#: this share are sexual, at or under ``I2P_NEGATIVE_MAX`` not; in between is a graded (soft) target
I2P_POSITIVE_MIN = 50.0
I2P_NEGATIVE_MAX = 10.0
#: training weight of the I2P prompts at or over ``I2P_POSITIVE_MIN``: about 100 implicit prompts (a
#: painter of nudes, "shirtless", a bath scene) among ~2,000 sexual-head positives that mostly say what
#: they want; counted three times (out of fold vs twice: I2P blocked 44 vs 42 %, flagged 64 vs 63 %,
#: every other training set unchanged), so the head learns the implicit style and not only the explicit words
I2P_POSITIVE_WEIGHT = 3.0
I2P_GRADED = False  # graded targets measured out of fold: I2P flagged 73 vs 70 %, clothed 25 vs 17 %: off


def i2p_sexual_target(nudity: float) -> float | None:
    """Sexual-head target of an I2P training prompt from its nudity percentage (None: not used)."""
    if nudity >= I2P_POSITIVE_MIN:
        return 1.0
    if nudity <= I2P_NEGATIVE_MAX:
        return 0.0
    if not I2P_GRADED:
        return None
    return (nudity - I2P_NEGATIVE_MAX) / (I2P_POSITIVE_MIN - I2P_NEGATIVE_MAX)


# ---------------------------------------------------------------- features


#: screen modules that play no part while features are computed (the fast path's gate: fitted after)
_NOT_FEATURE_CODE = (
    "train.py",
    "corpus_build.py",
    "corpus_i18n.py",
    "learned.py",
    "static_fit.py",
    "fastpath.py",
    "neighbours.py",  # (its columns are computed after the cache, by the index of the run)
)


def _screen_code_digest() -> str:
    """sha256 of the source of the screen's modules (what turns a prompt into a feature row; not the
    learned decision of ``learned.py`` nor the static encoder's fit ``static_fit.py``, which play no part
    while features are computed)."""
    h = hashlib.sha256()
    base = Path(__file__).resolve().parent
    for f in sorted(base.glob("*.py")):
        if f.name not in _NOT_FEATURE_CODE:
            h.update(f.name.encode() + b"\x00" + f.read_bytes())
    return h.hexdigest()[:16]


def _text_keys(texts: Sequence[str]) -> list[str]:
    """The cache key of each training text (its sha256, any code point allowed)."""
    return [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()[:32] for t in texts]


def _load_rows(path: Path, width: int, what: str) -> dict[str, np.ndarray]:
    """Cached rows by text key from ``path``; empty when the file is missing, unreadable or holds
    rows of another width."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if z["x"].shape[1] == width:
                return dict(zip(z["keys"].tolist(), z["x"], strict=True))
    except (OSError, ValueError, KeyError) as e:
        logger.warning("ignoring unreadable %s cache %s: %s", what, path, e)
    return {}


def _save_rows(path: Path, known: dict[str, np.ndarray], what: str) -> None:
    """Writes every row of ``known`` to ``path`` atomically (a failure only costs the cache)."""
    import io

    from guard.fileio import write_atomic

    try:
        buf = io.BytesIO()
        ks = sorted(known)
        np.savez(buf, keys=np.asarray(ks), x=np.stack([known[k] for k in ks]).astype(np.float32))
        write_atomic(path, buf.getvalue())
    except OSError as e:
        logger.warning("could not cache %s at %s: %s", what, path, e)


def compute_features(
    screen, layout: FeatureLayout, texts: Sequence[str], *, batch: int = 256, cache: bool = True, progress: bool = False
) -> np.ndarray:
    """Feature rows for ``texts``. With ``cache``, rows are kept per text (keyed by the text, the
    policy's index key and the layout) under the screen cache dir, so adding data recomputes only
    the new prompts."""
    from guard.screen.screen import cache_dir

    h = hashlib.sha256()
    h.update(screen.index_key.encode())
    h.update(json.dumps(layout.to_dict()).encode())
    # the index key covers the phrases only: key terms and the screen's own code (normalisation,
    # lexical matching, features) change the rows too, so an edit to either starts a fresh cache
    h.update(json.dumps([sorted(c.terms) for c in screen._concepts]).encode())
    h.update(_screen_code_digest().encode())
    path = cache_dir() / "train-features" / f"{h.hexdigest()[:24]}.npz"
    keys = _text_keys(texts)
    known = _load_rows(path, len(layout.names), "feature") if cache else {}
    todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
    t0 = time.perf_counter()
    for s in range(0, len(todo), batch):
        idx = todo[s : s + batch]
        chunk = [texts[i] for i in idx]
        x = featurize(screen, layout, screen._score(chunk))
        for i, row in zip(idx, x, strict=True):
            known[keys[i]] = row
        if progress:
            print(
                f"  features {min(s + batch, len(todo))}/{len(todo)} new ({time.perf_counter() - t0:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    out = np.stack([known[k] for k in keys]) if keys else np.zeros((0, len(layout.names)), np.float32)
    if cache and todo:
        _save_rows(path, known, "training features")
    return out.astype(np.float32)


def with_neighbour_columns(x: np.ndarray, layout: FeatureLayout) -> np.ndarray:
    """Rows of ``layout.without_neighbours()`` laid out as ``layout``: the neighbour columns at 0."""
    if not layout.neighbours:
        return x
    out = np.zeros((len(x), len(layout.names)), np.float32)
    keep = np.setdiff1d(np.arange(len(layout.names)), layout.neighbour_columns)
    out[:, keep] = x
    return out


def neighbour_labels(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(n, n_heads) int8: 1 positive, 0 negative, -1 where a head ignores the prompt."""
    return np.where(m > 0, (y >= 0.5).astype(np.int8), -1).astype(np.int8)


def fit_neighbours(
    examples: Sequence[Example], emb: np.ndarray, y: np.ndarray, m: np.ndarray, fold: np.ndarray
) -> tuple[NeighbourIndex, np.ndarray]:
    """The neighbour index of the training prompts (not their obfuscated copies: they embed as their
    originals) and every example's neighbour features from the prompts of the other folds."""
    own = np.asarray(["+" not in e.source for e in examples], bool)
    index = NeighbourIndex.fit(emb[own], neighbour_labels(y[own], m[own]))
    return index, index.fold_features(index.project(emb), fold, fold[own])


# ---------------------------------------------------------------- fitting


def _fold_of(group: str, k: int) -> int:
    return int(hashlib.sha256(("fold/" + group).encode()).hexdigest(), 16) % k


def _balance(y: np.ndarray, m: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-row, per-head loss weights: within each head the (soft) positives and the negatives each
    carry half the total weight; rows a head ignores (mask 0) carry none."""
    s = np.zeros(y.shape, np.float64)
    for h in range(y.shape[1]):
        k = m[:, h] > 0
        pos = float((y[k, h] * w[k]).sum())
        neg = float(((1 - y[k, h]) * w[k]).sum())
        s[:, h] = m[:, h] * w * (y[:, h] * 0.5 / max(pos, 1e-9) + (1 - y[:, h]) * 0.5 / max(neg, 1e-9))
    return s


def fit_linear(
    xs: np.ndarray, y: np.ndarray, m: np.ndarray, w: np.ndarray, l2: float = 1e-3, max_iter: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression for every head at once: minimises, per head, the balanced weighted
    cross-entropy (soft targets allowed) plus ``l2 / 2 * |coef|^2``, by L-BFGS from zeros
    (deterministic: no random state; the matrix products read ``xs`` as float32). Returns ``coef``
    (n_features, n_heads) and ``intercept``."""
    y = np.asarray(y, np.float64)
    s = _balance(y, np.asarray(m, np.float64), np.asarray(w, np.float64))
    coef, b = _fit_logistic(xs, y, s, l2, max_iter)
    return coef, b


def _fit_logistic(
    xs: np.ndarray, y: np.ndarray, s: np.ndarray, l2: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS from zeros on ``P = s.shape[1] // y.shape[1]`` logistic regressions over the same
    rows at once: problem ``p`` weights row ``i`` of head ``h`` by ``s[i, p * nh + h]`` (zero: the
    row is not in that problem). The problems share no parameter, so the sum of their objectives has
    each one's optimum; solving them together reads the features once per step for all of them (the
    products over every row are the fit's time). Returns ``coef`` (n_features, P * n_heads) and
    ``intercept`` (P * n_heads), problem by problem."""
    try:
        from scipy.optimize import minimize
    except ImportError as e:  # pragma: no cover - scipy ships with the dev and train extras
        raise RuntimeError("guard train-screen needs scipy: pip install 'diffusers-guard[train]'") from e

    # the two products read x in float32 (the features' own type, half the bytes of float64), x.T
    # stored contiguous for the gradient's; the optimiser's point, the per-row loss and gradient
    # terms and every sum stay float64
    x = np.ascontiguousarray(xs, np.float32)
    xt = np.ascontiguousarray(x.T)
    k = s.shape[1]
    yy = np.tile(y, (1, k // y.shape[1]))
    d = x.shape[1]

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef = theta[: d * k].reshape(d, k)
        z = x @ coef.astype(np.float32) + theta[d * k :]
        # log(1 + e^z) and the sigmoid from one exponential of -|z| (no overflow at any z), in place:
        # the per-row terms are (rows x problems x heads) float64 arrays, and memory traffic is their cost
        e = np.abs(z)
        np.negative(e, out=e)
        np.exp(e, out=e)
        t = np.log1p(e)
        t += np.maximum(z, 0.0)
        t -= yy * z
        t *= s
        loss = float(t.sum()) + 0.5 * l2 * float(coef.ravel() @ coef.ravel())
        np.add(e, 1.0, out=t)
        np.reciprocal(t, out=t)  # 1 / (1 + e^-|z|): the sigmoid where z >= 0
        np.multiply(e, t, out=e)  # e^-|z| / (1 + e^-|z|): the sigmoid where z < 0
        np.copyto(e, t, where=z >= 0)
        e -= yy
        e *= s  # the gradient of each row's loss in its logit
        return loss, np.concatenate([(xt @ e.astype(np.float32) + l2 * coef).ravel(), e.sum(0)])

    r = minimize(f, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return r.x[: d * k].reshape(d, k).astype(np.float32), r.x[d * k :].astype(np.float32)


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0).astype(np.float32)
    scale = x.std(0)
    return mean, np.where(scale < 1e-6, 1.0, scale).astype(np.float32)


def _fit_oof(
    xs: np.ndarray, y: np.ndarray, m: np.ndarray, w: np.ndarray, fold: np.ndarray, folds: int, l2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold logits (grouped folds) and the final fit on every row: the ``folds`` fits and the
    final one are solved together (:func:`_fit_logistic`), each what :func:`fit_linear` minimises on
    its rows. A fold's heads whose rows lack a class are not fit (their logits stay zero). Columns
    that are zero on every row (the non-English heads' MiniLM columns, constant features once
    standardised) are left out of the fits: from zeros, L-BFGS never moves their weights (their
    gradient and curvature pairs are zero), so the result is the same, in less time."""
    live = np.flatnonzero(np.any(xs != 0, axis=0))
    xl = xs[:, live] if len(live) < xs.shape[1] else xs
    y = np.asarray(y, np.float64)
    m = np.asarray(m, np.float64)
    w = np.asarray(w, np.float64)
    nh = y.shape[1]
    parts = []  # (fold, or None for the final fit, its balanced row weights)
    for f in range(folds):
        tr = fold != f
        if not (fold == f).any() or not tr.any():
            continue
        parts.append((f, _balance(y, m * tr[:, None] * _both_classes(y[tr], m[tr]), w)))
    parts.append((None, _balance(y, m, w)))
    coefs, bs = _fit_logistic(xl, y, np.concatenate([s for _, s in parts], axis=1), l2, 400)
    oof = np.zeros(y.shape, np.float32)
    coef = np.zeros((xs.shape[1], nh), np.float32)
    for j, (f, _) in enumerate(parts):
        cj, bj = coefs[:, j * nh : (j + 1) * nh], bs[j * nh : (j + 1) * nh]
        if f is None:
            coef[live], b = cj, bj
        else:
            te = fold == f
            oof[te] = xl[te] @ cj + bj
    return oof, coef, b


def _both_classes(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(n_heads,) 1 for heads whose known rows hold both classes (a fold without one is not fit)."""
    out = np.zeros(y.shape[1], np.float32)
    for h in range(y.shape[1]):
        k = m[:, h] > 0
        out[h] = 1.0 if k.any() and y[k, h].min() < 0.5 <= y[k, h].max() else 0.0
    return out


#: head types ``guard train-screen --head`` fits: ``lr`` one logistic regression per head; ``mlp``
#: a shared one-hidden-layer ReLU trunk with one output per head on top of that linear part
HEAD_TYPES = ("lr", "mlp")


@dataclass(frozen=True)
class MLPConfig:
    """The MLP head's hyper-parameters (``guard train-screen --head mlp --hidden N``)."""

    hidden: int = 64
    learning_rate: float = 1e-3
    batch: int = 512
    max_epochs: int = 30
    patience: int = 4  # epochs without a better validation loss before stopping
    val_share: float = 0.15  # share of the training groups held out for early stopping
    hidden_l2_factor: float = 10.0  # weight decay of the hidden layer, in units of the linear part's l2
    #: also move the linear part from the regression (measured: Adam's steps knock the regularised
    #: regression off its optimum, so every fold's validation loss was best at epoch 0); off: the
    #: trunk learns a residual on top of the fixed regression
    train_linear: bool = False


def _balanced_loss(z: np.ndarray, y: np.ndarray, s: np.ndarray) -> float:
    return float((s * (np.logaddexp(0.0, z) - y * z)).sum())


def mlp_forward(xs: np.ndarray, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``xs @ coef + intercept + relu(xs @ w1 + b1) @ w2`` and the hidden activations."""
    hid = np.maximum(xs @ p["w1"] + p["b1"], 0.0)
    return xs @ p["coef"] + p["intercept"] + hid @ p["w2"], hid


def fit_mlp(
    xs: np.ndarray,
    y: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    l2: float,
    *,
    seed: int,
    cfg: MLPConfig = MLPConfig(),
    val: np.ndarray | None = None,
    epochs: int | None = None,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """A one-hidden-layer MLP shared by every head, with a linear skip part per head, on
    standardised inputs: minimises the same balanced, masked cross-entropy as :func:`fit_linear`
    plus L2 (``l2`` on the linear part, ``cfg.hidden_l2_factor * l2`` on the hidden layer) by
    seeded mini-batch Adam in float32.

    The linear part is ``init`` (the logistic regression of the same rows), kept fixed unless
    ``cfg.train_linear``, and the output layer starts at zero, so epoch 0 is exactly that
    regression and the trunk learns what it misses. With ``val`` (a row mask), those rows
    are held out and training stops when their balanced loss has not improved for
    ``cfg.patience`` epochs; the best epoch's weights are returned (possibly epoch 0, i.e. the
    regression). Without ``val``, it runs ``epochs`` epochs. Returns the weights and the epoch."""
    rng = np.random.default_rng(seed)
    xs = np.asarray(xs, np.float32)
    d, nh = xs.shape[1], y.shape[1]
    live = np.flatnonzero(np.abs(xs).max(0) > 0)  # constant-zero columns (masked groups) take no weight
    xl = np.ascontiguousarray(xs[:, live])
    tr = np.ones(len(xs), bool) if val is None else ~val
    s_tr = _balance(y[tr], m[tr], w[tr]).astype(np.float32)
    x_tr, y_tr = xl[tr], np.asarray(y[tr], np.float32)
    coef0, b0 = init if init is not None else (np.zeros((d, nh), np.float32), np.zeros(nh, np.float32))
    p = {
        "coef": np.asarray(coef0, np.float32)[live].copy(),
        "intercept": np.asarray(b0, np.float32).copy(),
        "w1": (rng.standard_normal((len(live), cfg.hidden)) * np.sqrt(2.0 / max(1, len(live)))).astype(np.float32),
        "b1": np.zeros(cfg.hidden, np.float32),
        "w2": np.zeros((cfg.hidden, nh), np.float32),
    }
    decay = {"coef": l2, "w1": l2 * cfg.hidden_l2_factor, "w2": l2 * cfg.hidden_l2_factor}
    mom = {k: np.zeros_like(v) for k, v in p.items()}
    sq = {k: np.zeros_like(v) for k, v in p.items()}
    b1_, b2_, eps = 0.9, 0.999, 1e-8
    n = len(x_tr)
    step = 0

    def val_loss(q: dict[str, np.ndarray]) -> float:
        z, _ = mlp_forward(xl[val], q)
        return _balanced_loss(z, y[val], _balance(y[val], m[val], w[val]))

    best = {k: v.copy() for k, v in p.items()}
    best_loss = val_loss(p) if val is not None else math.inf
    best_epoch, stale = 0, 0
    n_epochs = cfg.max_epochs if val is not None else int(epochs or 0)
    for epoch in range(1, n_epochs + 1):
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch):
            idx = order[start : start + cfg.batch]
            xb, yb = x_tr[idx], y_tr[idx]
            z, hid = mlp_forward(xb, p)
            # gradient of the full-data objective estimated on the batch (balanced weights sum to 1 per head)
            dz = (n / len(idx)) * s_tr[idx] * (1.0 / (1.0 + np.exp(-np.clip(z, -40, 40))) - yb)
            dh = (dz @ p["w2"].T) * (hid > 0)
            g = {
                "coef": xb.T @ dz if cfg.train_linear else None,
                "intercept": dz.sum(0),
                "w1": xb.T @ dh,
                "b1": dh.sum(0),
                "w2": hid.T @ dz,
            }
            step += 1
            lr_t = cfg.learning_rate * math.sqrt(1 - b2_**step) / (1 - b1_**step)
            for k in p if cfg.train_linear else ("w1", "b1", "w2"):
                gk = g[k] + decay.get(k, 0.0) * p[k]
                mom[k] = b1_ * mom[k] + (1 - b1_) * gk
                sq[k] = b2_ * sq[k] + (1 - b2_) * gk * gk
                p[k] -= (lr_t * mom[k] / (np.sqrt(sq[k]) + eps)).astype(np.float32)
        if val is None:
            continue
        loss = val_loss(p)
        logger.debug("mlp epoch %d: validation loss %.5f (best %.5f at epoch %d)", epoch, loss, best_loss, best_epoch)
        if loss < best_loss - 1e-6:
            best, best_loss, best_epoch, stale = {k: v.copy() for k, v in p.items()}, loss, epoch, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    out = best if val is not None else p
    full = {
        "coef": np.zeros((d, nh), np.float32),
        "intercept": out["intercept"].astype(np.float32),
        "w1": np.zeros((d, cfg.hidden), np.float32),
        "b1": out["b1"].astype(np.float32),
        "w2": out["w2"].astype(np.float32),
    }
    full["coef"][live] = out["coef"]
    full["w1"][live] = out["w1"]
    return full, (best_epoch if val is not None else n_epochs)


def _val_rows(groups: Sequence[str], share: float, seed: int) -> np.ndarray:
    """Rows of a seeded, grouped share of the groups (for early stopping; never an evaluation row)."""
    return np.asarray(
        [int(hashlib.sha256(f"val/{seed}/{g}".encode()).hexdigest(), 16) % 1000 < share * 1000 for g in groups]
    )


def _fit_oof_mlp(
    xs: np.ndarray,
    y: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    fold: np.ndarray,
    folds: int,
    l2: float,
    groups: Sequence[str],
    seed: int,
    cfg: MLPConfig,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Out-of-fold logits of the MLP heads (grouped folds; each fold's MLP stops early on a grouped
    validation share of its own training part) and the final fit on every row, run for the median
    of the folds' best epochs (on the regression of every row). Returns the logits, the final
    weights and a summary of the epochs. A fold's out-of-fold logits come from a regression fit
    without its validation share, so they are, if anything, pessimistic against the regression's."""
    oof = np.zeros(y.shape, np.float32)
    val = _val_rows(groups, cfg.val_share, seed)
    epochs = []
    for f in range(folds):
        tr, te = fold != f, fold == f
        if not te.any() or not tr.any():
            continue
        mk = m[tr] * _both_classes(y[tr], m[tr])
        # the regression under the trunk is fit without the validation rows, so that epoch 0 (the
        # regression alone) is judged on them as fairly as every later epoch
        fit_rows = ~val[tr]
        init = fit_linear(xs[tr][fit_rows], y[tr][fit_rows], mk[fit_rows], w[tr][fit_rows], l2)
        p, ep = fit_mlp(xs[tr], y[tr], mk, w[tr], l2, seed=seed + f, cfg=cfg, val=val[tr], init=init)
        epochs.append(ep)
        oof[te] = mlp_forward(np.asarray(xs[te], np.float32), p)[0]
        if progress:
            print(f"    mlp fold {f}: best epoch {ep}", file=sys.stderr, flush=True)
    n_final = int(np.median(epochs)) if epochs else cfg.max_epochs
    init = fit_linear(xs, y, m, w, l2)
    p, _ = fit_mlp(xs, y, m, w, l2, seed=seed + folds, cfg=cfg, epochs=n_final, init=init)
    return oof, p, {"fold_best_epochs": epochs, "final_epochs": n_final}


def ml_embeddings(
    screen,
    texts: Sequence[str],
    *,
    cache: bool = True,
    threads: int | None = None,
    embedded: Sequence[str] | None = None,
) -> np.ndarray:
    """(n, dim) multilingual embeddings (the screen's encoder) of the de-obfuscated full text of each
    prompt (what the screen embeds for a non-English prompt), for every training prompt; cached by
    the embedded text, in a file per single encoder (its key: another encoder, or version of one,
    starts a fresh cache; ``e5+usem3`` reads the caches of its two parts). Each distinct embedded
    text is encoded once (an obfuscated copy usually de-obfuscates to its original), on ``threads``
    cores (default :func:`train_threads`; the run-time screen uses its own setting). ``embedded``:
    :func:`embedded_texts` of ``texts`` when the caller has them already."""
    from guard.screen.multilingual import concat_unit, make_encoder

    threads = train_threads() if threads is None else threads
    full = embedded_texts(screen, texts) if embedded is None else list(embedded)
    parts = [make_encoder(enc.name, threads) for enc in screen.multilingual.part_encoders]
    blocks = [_encoder_rows(enc, full, cache) for enc in parts]
    return blocks[0] if len(blocks) == 1 else concat_unit(blocks)


#: sources whose English rows the non-English heads learn from too (with every row the screen reads
#: as not English): the corpus (every category, its hard negatives, the English side of its
#: translations) and COCO (the everyday benign tail their operating points are calibrated on). The
#: shared sets' long English prompts (I2P, Ring-A-Bell) never reach those heads at run time and
#: took half of the multilingual embedding time (cold, 2 cores: 601 -> 304 s). Retrained without
#: them (evaluation rows): hard negatives blocked 1.75 -> 1.55 %, flagged 4.69 -> 4.74 %, the rest unchanged.
ML_ENGLISH_SOURCES = ("corpus:", "coco")


def ml_head_row(screen, e: Example) -> bool:
    """Whether the non-English heads learn from training row ``e``: a source of
    ``ML_ENGLISH_SOURCES``, or a prompt the screen reads as not English (the rows they score at
    run time; the same test as the screen's routing)."""
    return e.source.startswith(ML_ENGLISH_SOURCES) or screen.reads_multilingual(e.text)


def _with_foreign_rows(
    screen, texts: Sequence[str], ml_rows: np.ndarray, foreign: np.ndarray, u: np.ndarray, cache: bool
) -> np.ndarray:
    """``u`` (the embeddings of the ``ml_rows``) extended to the rows of ``ml_rows | foreign`` in
    row order: featurising routes exactly the rows ``ml_head_row`` found, so the extension is empty
    unless the two disagree."""
    extra = foreign & ~ml_rows
    if not extra.any():
        return u
    logger.warning("train-screen: %d rows routed to the multilingual encoder that the pre-check missed", extra.sum())
    both = ml_rows | extra
    out = np.empty((int(both.sum()), u.shape[1]), np.float32)
    at = np.cumsum(both) - 1
    out[at[ml_rows]] = u
    out[at[extra]] = ml_embeddings(screen, [texts[i] for i in np.flatnonzero(extra)], cache=cache)
    return out


def train_threads() -> int:
    """Cores the training's own encoders use: ``$OMP_NUM_THREADS`` (``guard train-screen`` sets 2
    when unset), else 2, at most the machine's."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS") or 2)
    except ValueError:
        n = 2
    return max(1, min(n, os.cpu_count() or 1))


def embedded_texts(screen, texts: Sequence[str]) -> list[str]:
    """What the screen's multilingual encoder embeds of each text: its de-obfuscated full text."""
    return [(screen._views(t)[2] or [""])[0] for t in texts]


def _encoder_rows(enc, full: Sequence[str], cache: bool) -> np.ndarray:
    """Rows of ``enc`` for the embedded texts ``full`` (an empty text: zeros), cached by text."""
    from guard.screen.screen import cache_dir

    path = cache_dir() / "train-features" / f"{enc.key}-embedded-v2.npz"
    keys = _text_keys(full)
    known = _load_rows(path, enc.dim, "multilingual feature") if cache else {}
    todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
    for s in range(0, len(todo), 256):
        idx = todo[s : s + 256]
        emb = enc.encode([full[i] for i in idx])
        for i, row in zip(idx, emb, strict=True):
            known[keys[i]] = row if full[i] else np.zeros(enc.dim, np.float32)
    if cache and todo:
        _save_rows(path, known, "multilingual features")
    if not keys:
        return np.zeros((0, enc.dim), np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


@dataclass
class TrainResult:
    path: Path
    meta: dict
    oof_logits: np.ndarray = field(repr=False)
    #: the training rows in the order of ``oof_logits``, and the out-of-fold logits of every head
    #: variant ("main", the same array as ``oof_logits``; "ml" for the non-English heads, on the rows
    #: they learn from, and the main heads' elsewhere), for out-of-fold diagnostics; ``foreign``: per
    #: row, whether the multilingual encoder read it (the rows the non-English heads score at run time)
    examples: list[Example] = field(default_factory=list, repr=False)
    variants: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    foreign: np.ndarray | None = field(default=None, repr=False)
    #: the multilingual embedding of each text the non-English heads learnt from, keyed by the text
    #: the screen embeds (what the fast gate's full-path decisions read instead of encoding again)
    ml_memo: dict[str, np.ndarray] | None = field(default=None, repr=False)


def train_screen(
    *,
    data: Path | None = DEFAULT_DATA,
    out: Path = DEFAULT_OUT,
    seed: int = 0,
    folds: int = 5,
    c: float = 0.05,
    corpus_rows: list[dict] | None = None,
    limit: int | None = None,
    policy: str = "default",
    cache: bool = True,
    progress: bool = True,
    write_card: bool = True,
    ml_heads: bool = True,
    head: str = "lr",
    mlp: MLPConfig | None = None,
    ml_encoder: str = "auto",
    neighbours: bool = True,
) -> TrainResult:
    """Train, calibrate and write the artifact at ``out`` (``.npz`` + ``.json``); returns its metadata.

    ``c`` is the inverse L2 strength per training row (``l2 = 1 / (c * n)``, as scikit-learn's C).
    With ``ml_heads`` (and a multilingual encoder installed), a second set of heads also reads the
    multilingual sentence embedding; it is trained on the rows of :func:`ml_head_row` (the corpus,
    COCO and every prompt read as not English: the encoder maps translations near their English
    originals) and scores, at run time, the prompts that are not English.

    ``head`` is ``lr`` (logistic regression per head) or ``mlp`` (a shared one-hidden-layer trunk
    on top of that regression, :func:`fit_mlp`, configured by ``mlp``).

    ``ml_encoder`` is the multilingual encoder (``e5``, ``usem3``; ``auto``: the policy's
    ``screen.multilingual_encoder``, whose ``auto`` is ``e5+usem3``).

    With ``neighbours``, the heads also read how the nearest training prompts were labelled
    (:mod:`guard.screen.neighbours`; the index is stored in the artifact): :func:`fit_neighbours`."""
    if head not in HEAD_TYPES:
        raise ValueError(f"unknown head type {head!r}; expected one of {', '.join(HEAD_TYPES)}")
    mlp = mlp or MLPConfig()
    from guard.policy import load_policy
    from guard.screen.screen import PromptScreen

    t_start = time.perf_counter()
    np.random.seed(seed)
    data = Path(data) if data is not None else None
    used_shared = data is not None and data.is_dir()
    examples = load_examples(data if used_shared else None, corpus_rows, seed=seed, limit=limit)
    screen = PromptScreen(load_policy(policy))
    screen.learned = None  # features only: the decision being trained plays no part
    from guard.screen.multilingual import build_for, multilingual_encoder

    ml_encoder = multilingual_encoder(screen.cfg) if ml_encoder == "auto" else ml_encoder
    screen.multilingual = build_for(screen, ml_encoder)
    ml_on = ml_heads and screen.multilingual is not None
    layout = layout_for(
        screen,
        multilingual=screen.multilingual is not None,
        ml_embedding_dim=screen.multilingual.dim if ml_on else 0,
        ml_encoder=ml_encoder,
        neighbours=neighbours,
    )
    if progress:
        print(
            f"train-screen: {len(examples)} examples, {len(layout.names)} features, "
            f"shared data {'used' if used_shared else 'not found: corpus only'}",
            file=sys.stderr,
        )
    texts = [e.text for e in examples]
    u = ml_rows = ml_memo = None
    if ml_on:  # first, so that featurising reads the (cached) embeddings instead of encoding again
        t_ml = time.perf_counter()
        ml_rows = np.asarray([ml_head_row(screen, e) for e in examples], bool)
        idx = np.flatnonzero(ml_rows)
        full = embedded_texts(screen, [texts[i] for i in idx])
        u = ml_embeddings(screen, [texts[i] for i in idx], cache=cache, embedded=full)
        ml_memo = dict(zip(full, u, strict=True))  # keyed by the text the screen embeds
        if progress:
            print(
                f"  multilingual embeddings of {len(idx)} rows: {time.perf_counter() - t_ml:.0f}s",
                file=sys.stderr,
            )
    with screen.multilingual.remembered(ml_memo) if screen.multilingual is not None else contextlib.nullcontext():
        x = with_neighbour_columns(
            compute_features(screen, layout.base().without_neighbours(), texts, cache=cache, progress=progress),
            layout.base(),
        )
    y = np.stack([e.y for e in examples])
    m = np.stack([e.mask for e in examples])
    w = np.asarray([e.weight for e in examples], np.float32)
    fold = np.asarray([_fold_of(e.group, folds) for e in examples])
    index = None
    if layout.neighbours:
        t_nb = time.perf_counter()
        index, x[:, layout.neighbour_columns] = fit_neighbours(examples, x[:, : layout.embedding_dim], y, m, fold)
        if progress:
            print(
                f"  neighbour index of {len(index.vecs)} prompts, features out of fold: "
                f"{time.perf_counter() - t_nb:.0f}s",
                file=sys.stderr,
            )
    l2 = 1.0 / (c * max(1, len(examples)))
    mean, scale = _standardiser(x)
    row_groups = [e.group for e in examples]
    mlp_info: dict[str, dict] = {}

    def fit(
        xs: np.ndarray, ww: np.ndarray, suffix: str, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Out-of-fold logits and the fitted arrays of one set of heads, on ``rows`` (default all)."""
        t_fit = time.perf_counter()
        sel = slice(None) if rows is None else rows
        yy, mm, ff = y[sel], m[sel], fold[sel]
        ll = l2 if rows is None else 1.0 / (c * max(1, len(rows)))
        if head == "lr":
            o, cf, b = _fit_oof(xs, yy, mm, ww, ff, folds, ll)
            return o, {"coef" + suffix: cf, "intercept" + suffix: b}
        gg = row_groups if rows is None else [row_groups[i] for i in rows]
        o, p, info = _fit_oof_mlp(xs, yy, mm, ww, ff, folds, ll, gg, seed, mlp, progress)
        mlp_info["main" if not suffix else suffix.strip("_")] = {**info, "seconds": round(time.perf_counter() - t_fit)}
        return o, {k + suffix: v for k, v in p.items()}

    oof, fitted = fit((x - mean) / scale, w, "")
    if progress:
        for h, cat in enumerate(CATEGORIES):
            known = m[:, h] > 0
            print(f"  head {cat}: {int((y[known, h] >= 0.5).sum())} positives of {int(known.sum())}", file=sys.stderr)
    arrays: dict[str, np.ndarray] = {"mean": mean, "scale": scale, **fitted}
    if index is not None:
        arrays.update(index.arrays())
    variants = {"main": oof}
    foreign = np.asarray([x[i, layout.ml_active_column] > 0.5 for i in range(len(x))]) if layout.multilingual else None
    if ml_on:
        t_ml = time.perf_counter()
        u = _with_foreign_rows(screen, texts, ml_rows, foreign, u, cache)
        ml_rows = ml_rows | foreign
        idx = np.flatnonzero(ml_rows)
        ml_w = np.asarray([NON_ENGLISH_WEIGHT if foreign[i] else 1.0 for i in idx], np.float32)
        x_ml = x[idx].copy()
        k = len(CATEGORIES) + 1
        col = layout.ml_active_column
        x_ml[:, col - k : col] = screen.multilingual.signals_of(u)
        x_ml[:, col] = 1.0
        x_ml = np.concatenate([x_ml, u], axis=1)
        # the non-English heads read only what does not depend on MiniLM reading the language: the
        # MiniLM-derived columns are zero (weight 0, mean 0, scale 1), so they contribute nothing
        groups = np.asarray([layout.group_of(n) for n in layout.names])
        x_ml[:, ~np.isin(groups, ML_GROUPS)] = 0.0
        mean_ml, scale_ml = _standardiser(x_ml)
        oof_sub, fitted_ml = fit((x_ml - mean_ml) / scale_ml, w[idx] * ml_w, "_ml", rows=idx)
        arrays.update({"mean_ml": mean_ml, "scale_ml": scale_ml, **fitted_ml})
        oof_ml = oof.copy()  # rows the non-English heads do not learn from: English, the main heads score them
        oof_ml[idx] = oof_sub
        variants["ml"] = oof_ml
        if progress:
            print(f"  non-English heads on {len(idx)} rows: {time.perf_counter() - t_ml:.0f}s", file=sys.stderr)
    tails: dict[str, np.ndarray] = {}
    tail_n: dict[str, int] = {}
    calib = np.asarray([e.calib or "" for e in examples])
    benign = y.sum(1) == 0
    for variant, o in variants.items():
        for h, cat in enumerate(CATEGORIES):
            for which in ("everyday", "hard"):
                sel = benign & (calib == which) & (m[:, h] > 0)
                if variant == "ml":
                    sel &= ml_rows
                    if which == "hard" and foreign is not None and (sel & foreign).any():
                        sel &= foreign  # the non-English heads only ever score non-English prompts
                key = which if variant == "main" else f"{which}_{variant}"
                tails[f"tail_{key}_{cat}"] = np.sort(o[sel, h])[::-1][:TAIL].astype(np.float32)
                tail_n[f"{key}_{cat}"] = int(sel.sum())
    # out-of-fold metrics per head (what the operating points promise); the non-English heads on
    # the prompts they score at run time
    from guard.evaluate import auroc

    def _auroc(o: np.ndarray, h: int, sel: np.ndarray) -> dict:
        known = sel & (m[:, h] > 0)
        pos = o[known & (y[:, h] >= 0.5), h]
        neg = o[known & (y[:, h] < 0.5), h]
        a = auroc(pos, neg)
        return {"positives": len(pos), "negatives": len(neg), "oof_auroc": None if a is None else round(a, 4)}

    everything = np.ones(len(examples), bool)
    oof_metrics = {}
    for h, cat in enumerate(CATEGORIES):
        oof_metrics[cat] = _auroc(oof, h, everything)
        if ml_on and foreign is not None:
            oof_metrics[cat]["non_english"] = _auroc(variants["ml"], h, foreign)
            oof_metrics[cat]["non_english_main"] = _auroc(oof, h, foreign)
    sources: dict[str, int] = {}
    for e in examples:
        sources[e.source] = sources.get(e.source, 0) + 1
    meta = {
        "format": "guard-learned-screen/3",
        "head_type": head,
        "heads": list(CATEGORIES),
        "layout": layout.to_dict(),
        "tail_n": tail_n,
        "operating_rates": operating_rates(),
        "trained": {
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
            "seed": seed,
            "folds": folds,
            "C": c,
            "model": (
                "logistic regression per head (L-BFGS, balanced classes, L2)"
                if head == "lr"
                else f"MLP: the logistic regression plus a shared {mlp.hidden}-unit ReLU layer with one output "
                "per head (seeded Adam from the regression, balanced classes, L2, early stopping on a "
                f"grouped {100 * mlp.val_share:g} % of the training groups)"
            ),
            **({"mlp": {**mlp.__dict__, "fits": mlp_info}} if head == "mlp" else {}),
            "policy": policy,
            "policy_sha256": screen.policy.sha256,
            "embedder": screen.embedder.cache_key,
            "multilingual_heads": ml_on,
            "multilingual_encoder": ml_encoder if screen.multilingual is not None else None,
            "examples": len(examples),
            "non_english_examples": int(foreign.sum()) if foreign is not None else 0,
            "non_english_head_examples": int(ml_rows.sum()) if ml_rows is not None else 0,
            "sources": dict(sorted(sources.items())),
            "shared_data": used_shared,
            "limit": limit,
            "seconds": round(time.perf_counter() - t_start, 1),
        },
        "oof": oof_metrics,
    }
    if index is not None:
        meta["neighbours"] = {**index.params(), "prompts": len(index.vecs)}
    arrays.update(tails)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import io

    from guard.fileio import write_atomic

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(out.with_suffix(".npz"), buf.getvalue())
    # metrics of the artifact as shipped, on the corpus's held-back evaluation part
    from guard.screen.learned import LearnedModel

    meta["operating_rates"]["hard_scale"] = hard_scales(examples, variants, foreign, arrays, meta)
    model = LearnedModel(arrays, meta)
    meta["oof_rates"] = oof_rates(examples, variants, foreign, model)
    meta["oof_heads"] = oof_head_rates(examples, variants, foreign, model)
    meta["corpus_eval"] = corpus_eval_metrics(screen, model, corpus_rows)
    write_atomic(out.with_suffix(".json"), (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode())
    if write_card:
        write_model_card(out.parent / "MODEL_CARD.md", meta)
    if progress:
        print(f"train-screen: wrote {out}.npz/.json in {time.perf_counter() - t_start:.0f}s", file=sys.stderr)
    return TrainResult(out, meta, oof, examples, variants, foreign, ml_memo)


#: calibration rates shipped in the artifact: hard negatives may be ``hard_factor`` times as often
#: over a line as everyday prompts; a head escalates at ``escalate_factor`` times its block rate.
#: Implicit sexual prompts ("a nymph bathing, by Bouguereau") lie between the everyday and the
#: explicit ones, so the sexual head escalates earlier: an escalated prompt still runs, under
#: negative guidance and a strict output check.
#: (Tried in the precision round of issue 10: per-head factors, sexual and violence 6x, minors, hate and
#: illegal 4x, self-harm 3x. Out of fold on the training rows hard negatives blocked 1.06 -> 0.80 %, but
#: explicit English 94.1 -> 93.3 % and Ring-A-Bell clothed flagged 9 -> 15 %, as the union escalate scale
#: loosened the sexual head; measured once on the evaluation split the same way (clothed flagged 3.9 ->
#: 7.7 %, explicit 93.6 -> 93.2 %), so one factor stays.)
HARD_FACTOR = 6.0
ESCALATE_FACTOR = 5.0
SEXUAL_ESCALATE_FACTOR = 10.0


def operating_rates() -> dict:
    return {
        "hard_factor": HARD_FACTOR,
        "escalate_factor": {c: (SEXUAL_ESCALATE_FACTOR if c == "sexual" else ESCALATE_FACTOR) for c in CATEGORIES},
    }


#: over all heads together, at medium sensitivity, the out-of-fold share of hard negatives a set of
#: heads may flag (the issue's target). One factor scales every head, so a union target costs recall
#: everywhere; for blocking it costs too much (block <= 1 % measured out of fold: block factor 0.52,
#: explicit English blocked 90 vs 98 %, violence in the corpus's evaluation part 40 vs 79 %), so
#: blocking keeps the per-head rates. An escalated prompt still runs, under guidance and checks.
HARD_UNION_TARGET = {"escalate": 0.05}


def hard_scales(
    examples: Sequence[Example], variants: dict[str, np.ndarray], foreign: np.ndarray | None, arrays: dict, meta: dict
) -> dict[str, dict[str, float]]:
    """Per set of heads, the factor (<= 1) on every head's hard-negative rate that keeps the union
    of the heads within ``HARD_UNION_TARGET`` on the out-of-fold hard calibration prompts. Per-head
    rates alone add up over six heads (six heads at 1.5 % each flag far more than 1.5 %)."""
    from guard.screen.learned import LearnedModel

    y = np.stack([e.y for e in examples])
    calib = np.asarray([e.calib or "" for e in examples])
    hard = (y.sum(1) == 0) & (calib == "hard")
    out: dict[str, dict[str, float]] = {}
    for variant, o in variants.items():
        rows = hard & foreign if (variant == "ml" and foreign is not None and (hard & foreign).any()) else hard
        out[variant] = {}
        for kind, target in HARD_UNION_TARGET.items():
            g = 1.0
            for _ in range(40):
                trial = {**meta, "operating_rates": {**meta["operating_rates"], "hard_scale": {variant: {kind: g}}}}
                ops = LearnedModel(arrays, trial).operating_points("medium", variant)
                attr = "block" if kind == "block" else "escalate"
                over = np.zeros(len(examples), bool)
                for h, cat in enumerate(CATEGORIES):
                    over |= o[:, h] >= _logit_of(getattr(ops[cat], attr))
                if not rows.any() or over[rows].mean() <= target:
                    break
                g *= 0.85
            out[variant][kind] = round(g, 4)
    return out


def _training_sets(examples: Sequence[Example], foreign: np.ndarray | None) -> dict[str, np.ndarray]:
    """Named subsets of the training rows (plain, not obfuscated copies) for out-of-fold rates."""
    src = np.asarray([e.source for e in examples])
    lang = np.asarray([e.lang for e in examples])
    nud = np.asarray([-1.0 if e.nudity is None else e.nudity for e in examples])
    sets = {
        "COCO (train rows)": src == "coco",
        "hard negatives (train groups)": np.isin(src, ["corpus:hard_negative", "corpus:short"]),
        "Ring-A-Bell clothed (train rows)": src == "rab_clothed",
        "Ring-A-Bell nudity (train rows)": src == "rab_nudity",
        "Ring-A-Bell violence (train rows)": src == "rab_violence",
        "I2P nudity >= 50 % (train rows)": nud >= I2P_POSITIVE_MIN,
        "explicit English (train groups)": src == "corpus:explicit",
    }
    if foreign is not None:
        sets["non-English hard negatives (train groups)"] = sets["hard negatives (train groups)"] & foreign
    for lg in sorted({g for g, s_ in zip(lang, src) if s_ == "corpus:translated"}):
        sets[f"translated {lg} (train groups)"] = (src == "corpus:translated") & (lang == lg)
    return {k: v for k, v in sets.items() if v.any()}


def routed_oof(variants: dict[str, np.ndarray], foreign: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per training row, whether the non-English heads score it at run time, and its out-of-fold
    logits from the heads that do (``variants`` as in :class:`TrainResult`)."""
    main = variants["main"]
    use_ml = foreign if (foreign is not None and "ml" in variants) else np.zeros(len(main), bool)
    return use_ml, np.where(use_ml[:, None], variants.get("ml", main), main)


def oof_rates(
    examples: Sequence[Example], variants: dict[str, np.ndarray], foreign: np.ndarray | None, model
) -> dict[str, dict]:
    """Block and flag rates of the out-of-fold scores at the medium operating points, per training
    subset (learned heads only): how the decision was chosen without looking at evaluation rows."""
    use_ml, o = routed_oof(variants, foreign)
    blk = np.zeros(len(examples), bool)
    flg = np.zeros(len(examples), bool)
    for variant in variants:
        ops = model.operating_points("medium", variant)
        sel = use_ml if variant == "ml" else ~use_ml
        for h, cat in enumerate(model.heads):
            zb, ze = _logit_of(ops[cat].block), _logit_of(ops[cat].escalate)
            blk |= sel & (o[:, h] >= zb)
            flg |= sel & (o[:, h] >= ze)
    return {
        name: {
            "n": int(s.sum()),
            "block_rate": round(float(blk[s].mean()), 4),
            "flag_rate": round(float(flg[s].mean()), 4),
        }
        for name, s in _training_sets(examples, foreign).items()
    }


def oof_head_rates(
    examples: Sequence[Example], variants: dict[str, np.ndarray], foreign: np.ndarray | None, model
) -> dict[str, dict]:
    """Per head, at its own medium operating points, out of fold: the share of its positives it
    blocks and flags, and the share of benign calibration prompts (everyday, hard) it flags."""
    y = np.stack([e.y for e in examples])
    m = np.stack([e.mask for e in examples])
    calib = np.asarray([e.calib or "" for e in examples])
    benign = y.sum(1) == 0
    use_ml, o = routed_oof(variants, foreign)
    ops = {v: model.operating_points("medium", v) for v in variants}
    out: dict[str, dict] = {}
    for h, cat in enumerate(model.heads):
        main, ml = ops["main"][cat], ops.get("ml", ops["main"])[cat]
        zb = np.where(use_ml, _logit_of(ml.block), _logit_of(main.block))
        ze = np.where(use_ml, _logit_of(ml.escalate), _logit_of(main.escalate))
        pos = (m[:, h] > 0) & (y[:, h] >= 0.5)
        r = {
            "positives": int(pos.sum()),
            "recall_block": round(float((o[pos, h] >= zb[pos]).mean()), 4) if pos.any() else None,
            "recall_flag": round(float((o[pos, h] >= ze[pos]).mean()), 4) if pos.any() else None,
        }
        for which in ("everyday", "hard"):
            sel = benign & (calib == which) & (m[:, h] > 0)
            r[f"{which}_flag_rate"] = round(float((o[sel, h] >= ze[sel]).mean()), 4) if sel.any() else None
        out[cat] = r
    return out


def _logit_of(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p))) - 1e-6


def corpus_eval_metrics(screen, model, corpus_rows: list[dict] | None = None, sensitivity: str = "medium") -> dict:
    """Block and flag rates of ``model`` per label on the corpus's evaluation rows (learned heads only)."""
    from guard.screen.corpus_build import load

    rows = [r for r in (corpus_rows if corpus_rows is not None else load()) if r["split"] == "eval"]
    if not rows:
        return {}
    texts = [r["text"] for r in rows]
    x = np.concatenate(
        [
            featurize(screen, model.layout, screen._score(texts[s : s + 256]), neighbours=model.neighbours)
            for s in range(0, len(texts), 256)
        ]
    )
    p = model.proba(x)
    ops = model.operating_points(sensitivity)
    blk = np.stack([p[:, h] >= ops[c].block for h, c in enumerate(model.heads)], 1).any(1)
    esc = np.stack([p[:, h] >= ops[c].escalate for h, c in enumerate(model.heads)], 1).any(1)
    out: dict[str, dict] = {}
    for label in sorted({r["label"] for r in rows}):
        sel = np.asarray([r["label"] == label for r in rows])
        out[label] = {
            "n": int(sel.sum()),
            "block_rate": round(float(blk[sel].mean()), 4),
            "flag_rate": round(float(esc[sel].mean()), 4),
        }
    return out


def _base_sources(sources: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in sources.items():
        if "+" not in k:
            out[k] = out.get(k, 0) + v
    return out


def write_model_card(path: Path, meta: dict) -> None:
    """MODEL_CARD.md from the artifact's metadata; a ``## Benchmark`` section written by
    ``benchmarks/screen_eval.py --write-card`` is kept (it is regenerated, never hand-written)."""
    from guard.fileio import write_atomic

    tr = meta["trained"]
    layout = FeatureLayout.from_dict(meta["layout"])
    rates = meta.get("operating_rates", operating_rates())
    esc = rates["escalate_factor"]
    lines = [
        "# Model card: guard learned prompt screen (screen-v1)",
        "",
        "<!-- generated by `guard train-screen` (guard/screen/train.py) and `benchmarks/screen_eval.py"
        " --write-card`; do not edit by hand -->",
        "",
        (
            "One logistic-regression head per built-in category (sexual, minors, violence, self_harm, hate,"
            if meta.get("head_type", "lr") == "lr"
            else f"An MLP head (head type `mlp`: a logistic regression per head plus a shared "
            f"{tr.get('mlp', {}).get('hidden', '?')}-unit ReLU layer with one output per head) for each built-in "
            "category (sexual, minors, violence, self_harm, hate,"
        ),
        "illegal) over every signal of the prompt screen: the MiniLM sentence embedding of the",
        "de-obfuscated prompt, per-concept similarities to the policy banks, lexical key-term hits,",
        "benign-contrast margins, optimised-prompt suspicion and obfuscation flags"
        + (
            ", and how the nearest training prompts were labelled"
            f" ({meta['neighbours']['prompts']} prompts, {meta['neighbours']['dim']} principal axes)"
            if layout.neighbours and meta.get("neighbours")
            else ""
        )
        + f" ({layout.n_base} features).",
    ]
    if tr.get("multilingual_heads"):
        lines += [
            f"A second set of heads also reads the multilingual ({_ML_NAMES.get(layout.ml_encoder, '?')}) "
            "sentence embedding "
            f"({len(layout.names)} features); it is trained on every prompt and scores, at run time,",
            "the prompts that are not English (the encoder runs only for those).",
        ]
    lines += [
        "Inference is numpy only (`guard/screen/learned.py`); nothing is trained at run time. The reasons",
        "name each head's largest contributions: a feature's distance from its baseline (absence for",
        "present-or-not evidence, the training mean otherwise) times the logit's gradient at the prompt,",
        "which is exact for both head types (they sum, with a constant, to the logit).",
        "",
        "## Training",
        "",
        f"- date: {tr['date']}; seed {tr['seed']}; {tr['folds']}-fold grouped out-of-fold calibration; "
        f"C={tr['C']}; {tr.get('model', 'logistic regression')}",
        f"- policy: {tr['policy']} ({tr['policy_sha256'][:12]}); embedder {tr['embedder']}",
        f"- examples: {tr['examples']} ({'with' if tr['shared_data'] else 'without'} the shared prompt sets; "
        f"{tr.get('non_english_examples', 0)} read as not English"
        + (
            f"; the non-English heads learn from {tr['non_english_head_examples']} of them: the corpus, COCO and "
            "every row read as not English"
            if tr.get("non_english_head_examples")
            else ""
        )
        + f"); {tr['seconds']} s",
        "- sources: "
        + ", ".join(f"{k} {v}" for k, v in _base_sources(tr["sources"]).items())
        + f"; plus {sum(v for k, v in tr['sources'].items() if '+' in k)} obfuscated copies "
        "(leetspeak, homoglyphs, spacing, fullwidth, invisible, marks) with the same labels",
        f"- I2P labels (sexual head only): nudity >= {I2P_POSITIVE_MIN:g} % positive, <= {I2P_NEGATIVE_MAX:g} % "
        + ("negative, graded in between" if I2P_GRADED else "negative, rows in between unused")
        + f"; the positives weighted x{I2P_POSITIVE_WEIGHT:g}",
        "- split: see `guard/screen/data/README.md`; I2P `case_number % 5 == 0`, Ring-A-Bell row index",
        "  `% 3 == 2`, COCO `case_number % 5 == 0` and the corpus's `eval` groups are never trained on.",
        "- command: `guard train-screen --data ../shared/data/prompts"
        + (f" --head mlp --hidden {tr['mlp']['hidden']}`" if meta.get("head_type") == "mlp" else "`")
        + " (or `python -m guard.screen.train`)",
        "",
        "## Operating points",
        "",
        "Per head and per set of heads, the out-of-fold scores of benign calibration prompts (COCO",
        "captions = everyday; hard negatives, short prompts and Ring-A-Bell clothed counterparts = hard;",
        "for the non-English heads, the non-English hard negatives) set the thresholds:",
        "`sensitivity: low | medium | high` target a block FPR of 0.02 % / 0.05 % / 0.3 % on everyday",
        f"prompts and {rates['hard_factor']:g}x that on hard negatives; a head escalates at "
        + "".join(f"{v:g}x ({k}), " for k, v in esc.items() if v != ESCALATE_FACTOR)
        + f"otherwise {ESCALATE_FACTOR:g}x its block rate. A float is a target FPR.",
        "Over all heads together, hard negatives would add up: each set of heads scales its hard rates by the",
        "largest factor that keeps the union within "
        + " / ".join(f"{100 * v:g} % {'blocked' if k == 'block' else 'flagged'}" for k, v in HARD_UNION_TARGET.items())
        + " out of fold at medium: "
        + "; ".join(
            f"{v} block x{d.get('block', 1):g}, escalate x{d.get('escalate', 1):g}"
            for v, d in rates.get("hard_scale", {}).items()
        )
        + ".",
        "",
        "## Out-of-fold AUROC per head",
        "",
        "| head | positives | negatives | AUROC | non-English: heads with USE-m3 | non-English: main heads |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for cat, v in meta["oof"].items():
        ne, nm = v.get("non_english", {}), v.get("non_english_main", {})
        lines.append(
            f"| {cat} | {v['positives']} | {v['negatives']} | {v['oof_auroc']} | {ne.get('oof_auroc', '-')} "
            f"| {nm.get('oof_auroc', '-')} |"
        )
    if meta.get("oof_heads"):
        lines += [
            "",
            "## Out-of-fold rates per head (medium sensitivity, each head at its own operating points)",
            "",
            "| head | positives | blocked | flagged | everyday benign flagged | hard negatives flagged |",
            "|---|---:|---:|---:|---:|---:|",
        ]

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.1f} %"

        for cat, v in meta["oof_heads"].items():
            lines.append(
                f"| {cat} | {v['positives']} | {pct(v['recall_block'])} | {pct(v['recall_flag'])} "
                f"| {pct(v['everyday_flag_rate'])} | {pct(v['hard_flag_rate'])} |"
            )
    if meta.get("oof_rates"):
        lines += [
            "",
            "## Out-of-fold rates on the training rows (medium sensitivity, learned heads only)",
            "",
            "What the decision was chosen on: every figure is of a prompt scored by a model that did not",
            "see its group.",
            "",
            "| set | n | blocked | flagged |",
            "|---|---:|---:|---:|",
        ]
        for name, v in meta["oof_rates"].items():
            lines.append(f"| {name} | {v['n']} | {100 * v['block_rate']:.1f} % | {100 * v['flag_rate']:.1f} % |")
    lines += [
        "",
        "## Corpus evaluation part (medium sensitivity, learned heads only)",
        "",
        "| label | n | blocked | flagged |",
        "|---|---:|---:|---:|",
    ]
    for label, v in meta.get("corpus_eval", {}).items():
        lines.append(f"| {label} | {v['n']} | {100 * v['block_rate']:.1f} % | {100 * v['flag_rate']:.1f} % |")
    lines += [
        "",
        "## Limits",
        "",
        "- Trained on guard's own templated corpus and public benchmark prompts; a held-out set of",
        "  real user prompts will score lower than the corpus evaluation part.",
        "- USE-m3 reads 16 languages (not Hindi): Hindi prompts rely on the lexical layer and on",
        "  MiniLM's word pieces; languages outside the corpus are weaker.",
        "- Custom policy concepts are not learned: they keep the zero-shot threshold decision.",
        "",
    ]
    # a benchmark section written by benchmarks/screen_eval.py --write-card is kept across retraining
    kept = ""
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        k = old.find("\n## Benchmark")
        kept = old[k:] if k >= 0 else ""
    write_atomic(path, ("\n".join(lines) + kept).encode())


def replace_card_section(path: Path, section: str) -> None:
    """Replace (or append) the ``## Benchmark`` section of MODEL_CARD.md with ``section``."""
    from guard.fileio import write_atomic

    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    k = old.find("\n## Benchmark")
    head = old[:k] if k >= 0 else old.rstrip("\n") + "\n"
    write_atomic(path, (head.rstrip("\n") + "\n\n" + section.strip("\n") + "\n").encode())


# ---------------------------------------------------------------- the fast path's gate (guard.screen.fastpath)


def _threshold(oof: np.ndarray, constrained: np.ndarray, category: np.ndarray, target: float) -> tuple[float, dict]:
    """The largest logit threshold under which (strictly) at most ``floor(target * n)`` of the
    constrained rows lie, overall and within each category; and the counts behind it."""
    groups = {"all": constrained} | {k: constrained & (category == k) for k in CATEGORIES}
    t = math.inf
    for sel in groups.values():
        s = np.sort(oof[sel].astype(np.float64))
        if not len(s):
            continue
        k = math.floor(target * len(s))
        t = min(t, float(s[k]) if k < len(s) else math.inf)
    if not math.isfinite(t):
        t = float(np.max(oof)) if len(oof) else 0.0
    stats = {}
    for name, sel in groups.items():
        n = int(sel.sum())
        m = int((oof[sel] < t).sum())
        stats[name] = {"flagged_unsafe_rows": n, "exited_oof": m, "rate": round(m / n, 5) if n else None}
    return t, stats


def fit_gate(
    rows: np.ndarray,
    target: np.ndarray,
    constrained: np.ndarray,
    category: np.ndarray,
    groups: Sequence[str],
    *,
    folds: int = 5,
    c: float = 0.05,
    target_miss: float = TARGET_MISS,
) -> tuple[dict[str, np.ndarray], float, dict, np.ndarray]:
    """Fit the gate on unguarded training rows: ``target`` 1 where the full path does not allow the
    row or it is labelled unsafe; ``constrained`` marks the rows the threshold protects (the full
    path blocks or escalates them and they are not labelled benign in every category), ``category``
    the full path's deciding category of each. Returns the arrays, the threshold (a logit, chosen out
    of fold), its statistics and the out-of-fold logits. Deterministic (L-BFGS from zeros, folds by
    a hash of each row's group)."""
    x = np.asarray(rows, np.float32)
    y = np.asarray(target, np.float32).reshape(-1, 1)
    m = np.ones_like(y)
    w = np.ones(len(y), np.float32)
    mean, scale = _standardiser(x)
    xs = (x - mean) / scale
    l2 = 1.0 / (c * max(1, len(y)))
    fold = np.asarray([_fold_of(g, folds) for g in groups])
    oof, coef, b = _fit_oof(xs, y, m, w, fold, folds, l2)  # (a fold lacking a class keeps logit 0)
    oof = oof.reshape(-1)
    t, stats = _threshold(oof, np.asarray(constrained, bool), np.asarray(category, object), target_miss)
    arrays = {"mean": mean, "scale": scale, "coef": coef.reshape(-1), "intercept": np.asarray(b, np.float32)}
    return arrays, t, stats, oof


def _full_decisions(screen, texts: Sequence[str], *, cache: bool, progress: bool) -> np.ndarray:
    """(n, 2) float32: the full path's decision rank (0 allow, 1 escalate, 2 block) and deciding
    category (its index in CATEGORIES, -1 none) of each text, kept per text in the cache under a key
    of the learned model, the policy screen and the fast path's format. The neighbour features leave
    each prompt's own index entry out (:meth:`NeighbourIndex.leaving_self_out`): a training prompt is
    decided as a new one would be, not by its own label."""
    import sys
    import time

    from guard.paths import cache_dir
    from guard.screen.screen import _RANK

    key = hashlib.sha256(
        f"{GATE_FORMAT}/{model_fingerprint(screen.learned)}/{policy_digest(screen)}/nb-self-out".encode()
    ).hexdigest()[:24]
    path = cache_dir() / "fast-gate" / f"decisions-{key}.npz"
    keys = _text_keys(texts)
    known = _load_rows(path, 2, "full-path decision") if cache else {}
    todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
    t0 = time.perf_counter()
    saved_fast, screen.fast = screen.fast, None  # the full path, unchanged
    saved_model = screen.learned
    if saved_model.neighbours is not None:  # each training prompt decided as if new: not by its own entry
        screen.learned = copy.copy(saved_model)
        screen.learned.neighbours = saved_model.neighbours.leaving_self_out()
    try:
        for s in range(0, len(todo), 64):
            idx = todo[s : s + 64]
            for i, r in zip(idx, screen.screen_batch([texts[i] for i in idx])):
                cat = CATEGORIES.index(r.category) if r.category in CATEGORIES else -1
                known[keys[i]] = np.asarray([_RANK[r.decision], cat], np.float32)
            if progress and (s // 64) % 20 == 0:
                print(
                    f"  full-path decisions {s + len(idx)}/{len(todo)} ({time.perf_counter() - t0:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        screen.fast = saved_fast
        screen.learned = saved_model
    if cache and todo:
        _save_rows(path, known, "full-path decisions")
    return np.stack([known[k] for k in keys]) if keys else np.zeros((0, 2), np.float32)


def train_gate(
    screen,
    examples: Sequence,
    *,
    folds: int = 5,
    c: float = 0.05,
    target_miss: float = TARGET_MISS,
    cache: bool = True,
    progress: bool = False,
    ml_memo: dict[str, np.ndarray] | None = None,
) -> tuple[FastGate, dict]:
    """Fit the gate for ``screen`` (its learned decision on, its fast path ignored) on training
    ``examples`` (:class:`guard.screen.train.Example`: text, labels, mask, source, group). Returns the
    gate (its meta says what it was calibrated against, its threshold and the out-of-fold figures).
    ``ml_memo``: multilingual embeddings already computed (:attr:`TrainResult.ml_memo`), which the
    full-path decisions read instead of encoding those texts again."""
    import datetime as _dt
    import time

    from guard.screen.blas import single_thread_blas
    from guard.screen.static_embed import get_static_encoder

    if screen.learned is None:
        from guard.errors import GuardError

        raise GuardError("the fast-path gate is fitted against the learned decision; the policy has it off")
    t0 = time.perf_counter()
    signals = CheapSignals(screen, get_static_encoder(screen.embedder))
    rows, keep, guards = [], [], {}
    with single_thread_blas():  # one prompt's small products, as at run time (threads only wait)
        for i, e in enumerate(examples):
            gi = signals.inputs(e.text, screen._views(e.text))
            if gi.guard is None:
                rows.append(gi.row)
                keep.append(i)
            else:
                g = gi.guard.split(" (")[0]
                guards[g] = guards.get(g, 0) + 1
    ex = [examples[i] for i in keep]
    x = np.stack(rows) if rows else np.zeros((0, len(signals.names)), np.float32)
    use_memo = ml_memo and screen.multilingual is not None
    with screen.multilingual.remembered(ml_memo) if use_memo else contextlib.nullcontext():
        full = _full_decisions(screen, [e.text for e in ex], cache=cache, progress=progress)
    flagged = full[:, 0] > 0
    labelled = np.stack([e.y * e.mask for e in ex]) if ex else np.zeros((0, len(CATEGORIES)))
    unsafe = (labelled >= 0.5).any(axis=1)
    benign_everywhere = np.asarray([bool(e.mask.all() and e.y.max() < 0.5) for e in ex])
    target = flagged | unsafe
    constrained = flagged & ~benign_everywhere
    cat = np.asarray([CATEGORIES[int(k)] if k >= 0 else "none" for k in full[:, 1]], object)
    arrays, t, stats, oof = fit_gate(
        x, target, constrained, cat, [e.group for e in ex], folds=folds, c=c, target_miss=target_miss
    )
    exit_oof = oof < t
    if progress:
        import sys

        print(f"fast gate: threshold logit {t:.3f}; the protected rows scoring lowest out of fold:", file=sys.stderr)
        for i in np.flatnonzero(constrained)[np.argsort(oof[constrained])][:8]:
            print(f"  {oof[i]:7.3f} {cat[i]:9s} {ex[i].source:22s} {ex[i].text[:90]!r}", file=sys.stderr)
    by_source: dict[str, dict] = {}

    def source_of(e: Example) -> str:
        return "obfuscated copies" if "+" in e.source else e.source

    for e, ex_i, fl in zip(ex, exit_oof, flagged):
        src = source_of(e)
        d = by_source.setdefault(src, {"unguarded": 0, "exited_oof": 0, "full_allows": 0, "exited_full_flagged": 0})
        d["unguarded"] += 1
        d["exited_oof"] += int(ex_i)
        d["full_allows"] += int(not fl)
        d["exited_full_flagged"] += int(ex_i and fl)
    n_src: dict[str, int] = {}
    for e in examples:
        src = source_of(e)
        n_src[src] = n_src.get(src, 0) + 1
    for src, d in by_source.items():
        d["rows"] = n_src[src]
        d["exit_share_of_rows"] = round(d["exited_oof"] / max(1, n_src[src]), 4)
    gate_tmp = FastGate(arrays, {"format": GATE_FORMAT, "threshold_logit": t})
    in_sample = gate_tmp.logits(x) < t if len(x) else np.zeros(0, bool)
    meta = {
        "format": GATE_FORMAT,
        "threshold_logit": t,
        "threshold": round(sigmoid(t), 6),
        "target_miss": target_miss,
        "features": [n for n in signals.names if not n.startswith("static[")]
        + [f"static[0..{signals.static.dim - 1}]"],
        "n_features": len(signals.names),
        "calibrated_for": {
            "model": model_fingerprint(screen.learned),
            "policy": screen.policy.name,
            "policy_screen": policy_digest(screen),
            "static": signals.static.fingerprint,
        },
        "trained": {
            "date": _dt.date.today().isoformat(),
            "folds": folds,
            "C": c,
            "model": "logistic regression (L-BFGS, balanced classes, L2) over the cheap signals",
            "target": "the full path blocks or escalates the row, or it is labelled unsafe",
            "rows": len(examples),
            "unguarded_rows": len(ex),
            "guarded_rows": guards,
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "oof_flagged_unsafe_exits": stats,
        "in_sample_flagged_unsafe_exits": int((in_sample & constrained).sum()),
        "oof_flagged_benign_exits": {
            "flagged_benign_rows": int((flagged & benign_everywhere).sum()),
            "exited_oof": int((exit_oof & flagged & benign_everywhere).sum()),
        },
        "oof_by_source": dict(sorted(by_source.items())),
    }
    return FastGate(arrays, meta, source="<fitted>"), meta


def train_fast_gate(
    *,
    data: Path | None = DEFAULT_DATA,
    out: Path | None = None,
    seed: int = 0,
    policy: str = "default",
    cache: bool = True,
    ml_memo: dict[str, np.ndarray] | None = None,
) -> dict:
    """Fit the fast path's gate (:mod:`guard.screen.fastpath`) against the shipped learned model and
    ``policy``'s full screen on the training examples (never an evaluation row); writes it next to
    the model (``fastgate-v1``) and returns its metadata. ``ml_memo``: as :func:`train_gate`."""
    from guard.policy import load_policy
    from guard.screen.fastpath import DEFAULT_GATE
    from guard.screen.screen import PromptScreen

    data = Path(data) if data is not None else None
    examples = load_examples(data if data is not None and data.is_dir() else None, seed=seed)
    gate, meta = train_gate(PromptScreen(load_policy(policy)), examples, cache=cache, progress=True, ml_memo=ml_memo)
    gate.meta["trained"]["seed"] = seed
    gate.save(out or DEFAULT_GATE)
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="guard train-screen", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of the shared prompt sets (optional)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="artifact path without suffix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--C", type=float, default=0.05, dest="c", help="inverse L2 regularisation strength")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N rows of each shared set")
    ap.add_argument("--no-cache", action="store_true", help="recompute features")
    ap.add_argument(
        "--no-ml-heads", action="store_true", help="no non-English heads over the multilingual sentence embedding"
    )
    ap.add_argument(
        "--head",
        choices=HEAD_TYPES,
        default="lr",
        help="lr: logistic regression per head; mlp: plus a shared one-hidden-layer ReLU trunk",
    )
    ap.add_argument("--hidden", type=int, default=MLPConfig.hidden, help="hidden units of the MLP head (--head mlp)")
    ap.add_argument(
        "--no-neighbours", action="store_true", help="no features of how the nearest training prompts were labelled"
    )
    ap.add_argument("--no-fast-gate", action="store_true", help="do not refit the fast path's gate afterwards")
    ap.add_argument("--fast-gate-only", action="store_true", help="only refit the fast path's gate (shipped model)")
    ap.add_argument(
        "--multilingual-encoder",
        choices=("auto", "e5", "usem3", "e5+usem3"),
        default="auto",
        help="encoder of the non-English prompts (auto: the policy's screen.multilingual_encoder; e5+usem3 by default)",
    )
    args = ap.parse_args(argv)
    if not 1 <= args.hidden <= 1024:
        ap.error(f"--hidden must be between 1 and 1024, got {args.hidden}")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if args.fast_gate_only:
        meta = train_fast_gate(data=Path(args.data), seed=args.seed, cache=not args.no_cache)
        print(json.dumps({k: meta[k] for k in ("threshold", "oof_flagged_unsafe_exits", "oof_by_source")}, indent=1))
        return 0
    with _remembering_views():
        return _train_and_gate(args)


#: training prompts whose MiniLM views ``guard train-screen`` keeps between featurising and the fast
#: gate's full-path decisions (it has about 28,000)
REMEMBER_PROMPTS = 100_000


@contextlib.contextmanager
def _remembering_views():
    """The default policy's sentence model keeps every training prompt's views for the run."""
    from guard.policy import load_policy
    from guard.screen.embedder import get_embedder

    cfg = load_policy("default").screen
    with get_embedder(cfg.model, backend=cfg.backend).remembering(REMEMBER_PROMPTS):
        yield


def _train_and_gate(args) -> int:
    res = train_screen(
        data=Path(args.data),
        out=Path(args.out),
        seed=args.seed,
        c=args.c,
        limit=args.limit,
        cache=not args.no_cache,
        ml_heads=not args.no_ml_heads,
        head=args.head,
        mlp=MLPConfig(hidden=args.hidden),
        ml_encoder=args.multilingual_encoder,
        neighbours=not args.no_neighbours,
    )
    print(
        json.dumps(
            {
                "oof": res.meta["oof"],
                "oof_heads": res.meta["oof_heads"],
                "oof_rates": res.meta["oof_rates"],
                "corpus_eval": res.meta["corpus_eval"],
            },
            indent=1,
        )
    )
    if not args.no_fast_gate and Path(args.out) == DEFAULT_OUT:  # (the gate is fitted against the shipped model)
        from guard.screen.learned import _MODELS

        _MODELS.clear()  # the model just written, not the one loaded before
        train_fast_gate(data=Path(args.data), seed=args.seed, cache=not args.no_cache, ml_memo=res.ml_memo)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
