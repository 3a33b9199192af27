"""Out-of-fold recall of the learned screen on its TRAINING rows, per language and category, and the
training rows it misses: the diagnosis of issue 10's recall without reading an evaluation row.

It trains the screen into a scratch artifact (``guard train-screen``'s code; features come from the
cache of ``GUARD_CACHE_DIR``), takes each training row's out-of-fold logits (the non-English heads'
for the rows the multilingual encoder read), and decides each row twice:

- ``heads``: the learned heads alone at their medium operating points (what ``oof_rates`` reports);
- ``full``: the screen's whole decision (key-term rules, the gibberish rule, co-occurrence rules and
  the optimised-prompt check) with the out-of-fold probabilities in place of the final model's.

Only corpus rows of the ``train`` split are read (``load_examples`` never yields an evaluation row).

    GUARD_CACHE_DIR=... OMP_NUM_THREADS=1 python benchmarks/screen_oof_misses.py --data ../shared/data/prompts
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def _pct(a: int, n: int) -> str:
    return f"{100 * a / n:5.1f}" if n else "  n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder of the shared prompt sets")
    ap.add_argument("--kinds", default="translated,explicit", help="corpus kinds of unsafe rows to diagnose")
    ap.add_argument("--lang", default=None, help="only rows of these languages (comma-separated)")
    ap.add_argument("--category", default=None, help="only rows of these categories (comma-separated)")
    ap.add_argument("--show", type=int, default=40, help="missed rows to print (0: none)")
    ap.add_argument("--benign", action="store_true", help="also the non-English hard negatives blocked out of fold")
    ap.add_argument("--out", default=None, help="scratch artifact path (default: a temporary folder)")
    ap.add_argument("--save-oof", default=None, help="write the out-of-fold logits and routing here (.npz)")
    args = ap.parse_args(argv)

    from guard.policy import load_policy
    from guard.screen import screen as screen_module
    from guard.screen.features import CATEGORIES, featurize
    from guard.screen.learned import LearnedModel
    from guard.screen.screen import PromptScreen
    from guard.screen.train import DEFAULT_DATA, routed_oof, train_screen

    data = Path(args.data) if args.data else DEFAULT_DATA
    tmp = tempfile.TemporaryDirectory(prefix="guard-oof-")
    out = Path(args.out) if args.out else Path(tmp.name) / "screen"
    res = train_screen(data=data, out=out, write_card=False, progress=True)
    examples = res.examples
    foreign = res.foreign if res.foreign is not None else np.zeros(len(examples), bool)
    oof_ml = res.variants.get("ml")
    _, logits = routed_oof(res.variants, res.foreign)
    model = LearnedModel.load(out)
    if args.save_oof:
        np.savez_compressed(
            args.save_oof,
            oof=res.oof_logits,
            oof_ml=oof_ml if oof_ml is not None else np.zeros(0),
            foreign=foreign,
            texts=np.asarray([e.text for e in examples]),
            source=np.asarray([e.source for e in examples]),
            lang=np.asarray([e.lang for e in examples]),
            y=np.stack([e.y for e in examples]),
            mask=np.stack([e.mask for e in examples]),
            calib=np.asarray([e.calib or "" for e in examples]),
        )

    kinds = {f"corpus:{k.strip()}" for k in args.kinds.split(",") if k.strip()}
    langs = {s.strip() for s in args.lang.split(",")} if args.lang else None
    cats = {s.strip() for s in args.category.split(",")} if args.category else None
    rows = []
    for i, e in enumerate(examples):
        label = CATEGORIES[int(np.argmax(e.y))] if e.y.max() >= 0.5 else None
        if e.source in kinds and label is not None:
            if (langs is None or e.lang in langs) and (cats is None or label in cats):
                rows.append((i, label))
        elif args.benign and label is None and e.source in ("corpus:hard_negative", "corpus:short") and foreign[i]:
            if langs is None or e.lang in langs:
                rows.append((i, None))
    if not rows:
        raise SystemExit("no training rows match")

    # the learned heads alone, at their medium operating points
    ops = {v: model.operating_points("medium", v) for v in (("main", "ml") if model.has_ml else ("main",))}

    def head_block(i: int) -> tuple[bool, float]:
        pts = ops["ml" if foreign[i] and model.has_ml else "main"]
        z = logits[i]
        over = [float(z[h]) - float(np.log(pts[c].block / (1 - pts[c].block))) for h, c in enumerate(CATEGORIES)]
        return max(over) >= 0, max(over)

    # the whole decision with the out-of-fold probabilities
    screen_module.get_model = lambda path=None: model  # the scratch artifact, not the shipped one
    screen = PromptScreen(load_policy("default"))
    texts = [examples[i].text for i, _ in rows]
    scored = screen._score(texts)
    feats = featurize(screen, model.layout, scored, fill=model.mean, neighbours=model.neighbours)
    runtime_ml = model.variant_of(feats)
    full = []
    for k, ((i, _), sc) in enumerate(zip(rows, scored)):
        z = oof_ml[i] if (runtime_ml[k] and oof_ml is not None) else res.oof_logits[i]
        proba = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        full.append(screen._decide(k, sc, proba.astype(np.float32), feats[k]))

    stats: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    missed = []
    for k, (i, label) in enumerate(rows):
        e = examples[i]
        blocked_h, margin = head_block(i)
        blocked_f = full[k].decision == "block"
        unsafe = label is not None
        key = (e.lang, label or "benign")
        s = stats[key]
        s[0] += 1
        s[1] += blocked_h
        s[2] += blocked_f
        s[3] += bool(foreign[i])
        if (unsafe and not blocked_f) or (not unsafe and blocked_f):
            missed.append((e.lang, label or "benign", e.text, full[k], margin, bool(foreign[i]), bool(runtime_ml[k])))

    print("lang  category    n  heads%  full%  ml-routed%")
    by_lang: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (lang, cat), (n, bh, bf, nf) in sorted(stats.items()):
        print(f"{lang:5} {cat:10} {n:4}  {_pct(bh, n)}  {_pct(bf, n)}  {_pct(nf, n)}")
        if cat != "benign":
            for d, key in ((by_lang, lang), (by_cat, cat)):
                d[key][0] += n
                d[key][1] += bh
                d[key][2] += bf
    print("\nper language (unsafe rows): n heads% full%")
    for lang, (n, bh, bf) in sorted(by_lang.items(), key=lambda kv: kv[1][2] / kv[1][0]):
        print(f"  {lang:8} {n:4} {_pct(bh, n)} {_pct(bf, n)}")
    print("per category (unsafe rows): n heads% full%")
    for cat, (n, bh, bf) in sorted(by_cat.items(), key=lambda kv: kv[1][2] / kv[1][0]):
        print(f"  {cat:10} {n:4} {_pct(bh, n)} {_pct(bf, n)}")
    n_all = max(1, sum(v[0] for v in by_lang.values()))
    heads_pct = 100 * sum(v[1] for v in by_lang.values()) / n_all
    full_pct = 100 * sum(v[2] for v in by_lang.values()) / n_all
    print(f"RESULT oof_unsafe_rows={n_all} oof_heads_block_pct={heads_pct:.2f} oof_full_block_pct={full_pct:.2f}")
    if args.show:
        print(f"\nmissed training rows (out of fold; first {args.show} of {len(missed)}):")
        for lang, cat, text, r, margin, ml_train, ml_run in missed[: args.show]:
            route = "ml" if ml_run else "main"
            if ml_train != ml_run:
                route += "(train:" + ("ml" if ml_train else "main") + ")"
            print(f"  [{lang} {cat} -> {r.decision} via {route}, best head margin {margin:+.2f}] {text}")
            print(f"      {'; '.join(r.reasons[:2])}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
