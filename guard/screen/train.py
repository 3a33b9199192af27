"""Trains the learned screen decision (``guard train-screen``): seeded, reproducible, minutes on 2 cores.

    python -m guard.screen.train [--data ../shared/data/prompts] [--out guard/screen/models/screen-v1]

Data (see ``guard/screen/data/README.md`` for the fixed split): the shipped corpus's train part; when
``--data`` holds the shared prompt sets, also COCO captions (``int(case_number) % 5 != 0``), I2P
(``case_number % 5 != 0``: nudity >= 50 % is sexual, <= 10 % is not sexual; other heads ignore
I2P), Ring-A-Bell nudity and its clothed counterparts and Ring-A-Bell violence (row index ``% 3 !=
2``). Evaluation rows are never read here. Every training prompt also appears, with a seeded
probability, in one obfuscated form (leetspeak, homoglyphs, spacing, fullwidth, invisible characters,
combining marks) with the same label, so obfuscation alone carries no risk.

Steps: featurise every prompt with the default policy's screen; 5-fold grouped out-of-fold logistic
regression per head, whose benign scores set the operating points; a final fit on everything; the
artifact (``.npz`` weights + ``.json`` metadata and metrics) and ``MODEL_CARD.md`` are written.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from guard.screen.features import CATEGORIES, FeatureLayout, featurize, layout_for

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def obfuscate(text: str, how: str, rng: random.Random) -> str:
    """``text`` with its longer words obfuscated one way (seeded by ``rng``)."""
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
        else:
            raise ValueError(f"unknown obfuscation {how!r}; expected one of {', '.join(OBFUSCATIONS)}")
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
            y = np.zeros(len(CATEGORIES), np.float32)
            m = np.zeros(len(CATEGORIES), np.float32)
            si = CATEGORIES.index("sexual")
            if nud >= 50:
                y[si], m[si] = 1.0, 1.0
            elif nud <= 10:
                m[si] = 1.0
            else:
                continue
            ex.append(Example(r["prompt"], y, m, "i2p", f"i2p/{r['case_number']}"))
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
    # one obfuscated copy of a share of the prompts, same label (not calibration data)
    extra = []
    for e in ex:
        # seeded per prompt, so that adding data leaves every other prompt's copy as it was
        r = random.Random(f"{seed}/{e.text}")
        if r.random() < obfuscate_share:
            how = r.choice(OBFUSCATIONS)
            extra.append(Example(obfuscate(e.text, how, r), e.y, e.mask, e.source + f"+{how}", e.group))
    return ex + extra


# ---------------------------------------------------------------- features


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
    path = cache_dir() / "train-features" / f"{h.hexdigest()[:24]}.npz"
    keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()[:32] for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if z["x"].shape[1] == len(layout.names):
                    known = dict(zip(z["keys"].tolist(), z["x"], strict=True))
        except (OSError, ValueError, KeyError) as e:
            logger.warning("ignoring unreadable feature cache %s: %s", path, e)
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
        try:
            import io

            from guard.fileio import write_atomic

            buf = io.BytesIO()
            ks = sorted(known)
            np.savez(buf, keys=np.asarray(ks), x=np.stack([known[k] for k in ks]).astype(np.float32))
            write_atomic(path, buf.getvalue())
        except OSError as e:
            logger.warning("could not cache training features at %s: %s", path, e)
    return out.astype(np.float32)


# ---------------------------------------------------------------- fitting


def _fold_of(group: str, k: int) -> int:
    return int(hashlib.sha256(("fold/" + group).encode()).hexdigest(), 16) % k


def _fit_head(xs: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    pos = y.sum()
    neg = len(y) - pos
    sw = w * np.where(y > 0, 0.5 * len(y) / max(1.0, pos), 0.5 * len(y) / max(1.0, neg))
    clf = LogisticRegression(C=c, max_iter=500, tol=1e-4, random_state=seed)
    clf.fit(xs, y, sample_weight=sw)
    return clf.coef_[0].astype(np.float32), np.float32(clf.intercept_[0])


@dataclass
class TrainResult:
    path: Path
    meta: dict
    oof_logits: np.ndarray = field(repr=False)


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
) -> TrainResult:
    """Train, calibrate and write the artifact at ``out`` (``.npz`` + ``.json``); returns its metadata."""
    from guard.policy import load_policy
    from guard.screen.screen import PromptScreen

    t_start = time.perf_counter()
    np.random.seed(seed)
    data = Path(data) if data is not None else None
    used_shared = data is not None and data.is_dir()
    examples = load_examples(data if used_shared else None, corpus_rows, seed=seed, limit=limit)
    screen = PromptScreen(load_policy(policy))
    screen.learned = None  # features only: the decision being trained plays no part
    from guard.screen.multilingual import build_for

    screen.multilingual = build_for(screen)
    layout = layout_for(screen, multilingual=screen.multilingual is not None)
    if progress:
        print(
            f"train-screen: {len(examples)} examples, {len(layout.names)} features, "
            f"shared data {'used' if used_shared else 'not found: corpus only'}",
            file=sys.stderr,
        )
    x = compute_features(screen, layout, [e.text for e in examples], cache=cache, progress=progress)
    y = np.stack([e.y for e in examples])
    m = np.stack([e.mask for e in examples])
    w = np.asarray([e.weight for e in examples], np.float32)
    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale < 1e-6, 1.0, scale).astype(np.float32)
    xs = (x - mean) / scale
    fold = np.asarray([_fold_of(e.group, folds) for e in examples])
    n_heads = len(CATEGORIES)
    oof = np.zeros((len(examples), n_heads), np.float32)
    coef = np.zeros((x.shape[1], n_heads), np.float32)
    intercept = np.zeros(n_heads, np.float32)
    for h in range(n_heads):
        known = m[:, h] > 0
        for f in range(folds):
            tr = known & (fold != f)
            te = fold == f
            if y[tr, h].min() == y[tr, h].max():
                continue
            cf, b = _fit_head(xs[tr], y[tr, h], w[tr], c, seed)
            oof[te, h] = xs[te] @ cf + b
        coef[:, h], intercept[h] = _fit_head(xs[known], y[known, h], w[known], c, seed)
        if progress:
            print(f"  head {CATEGORIES[h]}: {int(y[known, h].sum())} positives of {int(known.sum())}", file=sys.stderr)
    tails: dict[str, np.ndarray] = {}
    tail_n: dict[str, int] = {}
    calib = np.asarray([e.calib or "" for e in examples])
    benign = y.sum(1) == 0
    for h, cat in enumerate(CATEGORIES):
        for which in ("everyday", "hard"):
            sel = benign & (calib == which) & (m[:, h] > 0)
            vals = np.sort(oof[sel, h])[::-1]
            tails[f"tail_{which}_{cat}"] = vals[:TAIL].astype(np.float32)
            tail_n[f"{which}_{cat}"] = int(sel.sum())
    # out-of-fold metrics per head (what the operating points promise)
    from guard.evaluate import auroc

    oof_metrics = {}
    for h, cat in enumerate(CATEGORIES):
        known = m[:, h] > 0
        pos = oof[known & (y[:, h] > 0), h]
        neg = oof[known & (y[:, h] == 0), h]
        oof_metrics[cat] = {
            "positives": len(pos),
            "negatives": len(neg),
            "oof_auroc": None if auroc(pos, neg) is None else round(auroc(pos, neg), 4),
        }
    sources: dict[str, int] = {}
    for e in examples:
        sources[e.source] = sources.get(e.source, 0) + 1
    meta = {
        "format": "guard-learned-screen/1",
        "heads": list(CATEGORIES),
        "layout": layout.to_dict(),
        "tail_n": tail_n,
        "trained": {
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
            "seed": seed,
            "folds": folds,
            "C": c,
            "policy": policy,
            "policy_sha256": screen.policy.sha256,
            "embedder": screen.embedder.cache_key,
            "examples": len(examples),
            "sources": dict(sorted(sources.items())),
            "shared_data": used_shared,
            "limit": limit,
            "seconds": round(time.perf_counter() - t_start, 1),
        },
        "oof": oof_metrics,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"mean": mean.astype(np.float32), "scale": scale, "coef": coef, "intercept": intercept, **tails}
    import io

    from guard.fileio import write_atomic

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(out.with_suffix(".npz"), buf.getvalue())
    # metrics of the artifact as shipped, on the corpus's held-back evaluation part
    from guard.screen.learned import LearnedModel

    model = LearnedModel(arrays, meta)
    meta["corpus_eval"] = corpus_eval_metrics(screen, model, corpus_rows)
    write_atomic(out.with_suffix(".json"), (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode())
    if write_card:
        write_model_card(out.parent / "MODEL_CARD.md", meta)
    if progress:
        print(f"train-screen: wrote {out}.npz/.json in {time.perf_counter() - t_start:.0f}s", file=sys.stderr)
    return TrainResult(out, meta, oof)


def corpus_eval_metrics(screen, model, corpus_rows: list[dict] | None = None, sensitivity: str = "medium") -> dict:
    """Block and flag rates of ``model`` per label on the corpus's evaluation rows (learned heads only)."""
    from guard.screen.corpus_build import load

    rows = [r for r in (corpus_rows if corpus_rows is not None else load()) if r["split"] == "eval"]
    if not rows:
        return {}
    texts = [r["text"] for r in rows]
    x = np.concatenate(
        [featurize(screen, model.layout, screen._score(texts[s : s + 256])) for s in range(0, len(texts), 256)]
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
    from guard.fileio import write_atomic

    tr = meta["trained"]
    lines = [
        "# Model card: guard learned prompt screen (screen-v1)",
        "",
        "One logistic-regression head per built-in category (sexual, minors, violence, self_harm, hate,",
        "illegal) over every signal of the prompt screen: the MiniLM sentence embedding of the",
        "de-obfuscated prompt, per-concept similarities to the policy banks, lexical key-term hits,",
        "benign-contrast margins, optimised-prompt suspicion and obfuscation flags "
        f"({len(FeatureLayout.from_dict(meta['layout']).names)} features).",
        "Inference is numpy only (`guard/screen/learned.py`); nothing is trained at run time.",
        "",
        "## Training",
        "",
        f"- date: {tr['date']}; seed {tr['seed']}; {tr['folds']}-fold grouped out-of-fold calibration; C={tr['C']}",
        f"- policy: {tr['policy']} ({tr['policy_sha256'][:12]}); embedder {tr['embedder']}",
        f"- examples: {tr['examples']} ({'with' if tr['shared_data'] else 'without'} the shared prompt sets); "
        f"{tr['seconds']} s",
        "- sources: "
        + ", ".join(f"{k} {v}" for k, v in _base_sources(tr["sources"]).items())
        + f"; plus {sum(v for k, v in tr['sources'].items() if '+' in k)} obfuscated copies "
        "(leetspeak, homoglyphs, spacing, fullwidth, invisible, marks) with the same labels",
        "- split: see `guard/screen/data/README.md`; I2P `case_number % 5 == 0`, Ring-A-Bell row index",
        "  `% 3 == 2`, COCO `case_number % 5 == 0` and the corpus's `eval` groups are never trained on.",
        "- command: `python -m guard.screen.train` (or `guard train-screen`)",
        "",
        "## Operating points",
        "",
        "Per head, the out-of-fold scores of benign calibration prompts (COCO captions = everyday;",
        "hard negatives, short prompts and Ring-A-Bell clothed counterparts = hard) set the thresholds:",
        "`sensitivity: low | medium | high` target a block FPR of 0.02 % / 0.05 % / 0.3 % on everyday",
        "prompts and 6x that on hard negatives; escalation at 5x the block rate. A float is a target FPR.",
        "",
        "## Out-of-fold AUROC per head",
        "",
        "| head | positives | negatives | AUROC |",
        "|---|---:|---:|---:|",
    ]
    for cat, v in meta["oof"].items():
        lines.append(f"| {cat} | {v['positives']} | {v['negatives']} | {v['oof_auroc']} |")
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
        "- Non-English prompts rely on the lexical layer and the multilingual encoder features;",
        "  languages outside the corpus (es fr de it pt nl pl ru zh ja tr ko ar hi) are weaker.",
        "- Custom policy concepts are not learned: they keep the zero-shot threshold decision.",
        "",
    ]
    # a benchmark section written from benchmarks/screen_eval.py is kept across retraining
    kept = ""
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        k = old.find("\n## Benchmark")
        kept = old[k:] if k >= 0 else ""
    write_atomic(path, ("\n".join(lines) + kept).encode())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="guard train-screen", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of the shared prompt sets (optional)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="artifact path without suffix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--C", type=float, default=0.05, dest="c", help="inverse L2 regularisation strength")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N rows of each shared set")
    ap.add_argument("--no-cache", action="store_true", help="recompute features")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    res = train_screen(
        data=Path(args.data), out=Path(args.out), seed=args.seed, c=args.c, limit=args.limit, cache=not args.no_cache
    )
    print(json.dumps({"oof": res.meta["oof"], "corpus_eval": res.meta["corpus_eval"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
