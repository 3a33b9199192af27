"""Which TRAINING benign prompts score over the learned screen's lines out of fold (issue 10 precision work).

    OMP_NUM_THREADS=1 python benchmarks/screen_oof_diag.py --data ../shared/data/prompts [--out /tmp/diag] [--top 60]
    python benchmarks/screen_oof_diag.py --prompts benchmarks/data/benign_senses.txt   # no training

Trains the screen as ``guard train-screen`` does (features come from the training cache, so a second
run only refits), then lists the hard negatives (corpus train groups) and the COCO training captions
whose out-of-fold logit reaches a head's medium block line (and, with ``--flag``, its escalate line),
with the head, the margin and the prompt's group. Only training rows are read: this is the place to
find what a change should fix, never the evaluation split. Per group of the corpus generator it also
prints how many of its rows are over the line, so that a fix aims at a sense of a word, not at a row.

The artifact is written to ``--out`` (a temporary path by default), so the shipped model stays as it was.

``--prompts FILE`` instead screens the prompts of a file (one a line, ``#`` comments), such as the
benign prompts with trigger words in benign senses written for this work, with the shipped screen, and
prints each one it does not allow with its reasons.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from guard.screen.train import DEFAULT_DATA, _logit_of, routed_oof, train_screen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--out", default=None, help="artifact path without suffix (default: a temporary folder)")
    ap.add_argument("--top", type=int, default=80, help="rows listed per set")
    ap.add_argument("--flag", action="store_true", help="list rows over the escalate line too, not only block")
    ap.add_argument("--prompts", default=None, help="screen the prompts of this file instead of training")
    ap.add_argument("--policy", default="default")
    args = ap.parse_args(argv)
    if args.prompts:
        return screen_file(Path(args.prompts), args.policy)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="guard-diag-")) / "screen"
    res = train_screen(data=Path(args.data), out=out, write_card=False, progress=True)
    from guard.screen.learned import LearnedModel

    model = LearnedModel.load(out)
    ex = res.examples
    np.savez_compressed(  # the out-of-fold logits, for calibration experiments without a refit
        out.parent / (out.name + ".oof.npz"),
        **{f"oof_{k}": v for k, v in res.variants.items()},
        foreign=np.zeros(len(ex), bool) if res.foreign is None else res.foreign,
        y=np.stack([e.y for e in ex]),
        m=np.stack([e.mask for e in ex]),
        calib=np.asarray([e.calib or "" for e in ex]),
        source=np.asarray([e.source for e in ex]),
        lang=np.asarray([e.lang for e in ex]),
        nudity=np.asarray([-1.0 if e.nudity is None else e.nudity for e in ex]),
    )
    foreign, o = routed_oof(res.variants, res.foreign)
    ops = {v: model.operating_points("medium", v) for v in res.variants}
    zb = np.empty_like(o)
    ze = np.empty_like(o)
    for h, cat in enumerate(model.heads):
        main, ml = ops["main"][cat], ops.get("ml", ops["main"])[cat]
        zb[:, h] = np.where(foreign, _logit_of(ml.block), _logit_of(main.block))
        ze[:, h] = np.where(foreign, _logit_of(ml.escalate), _logit_of(main.escalate))
    line = ze if args.flag else zb
    benign = np.asarray([e.y.sum() == 0 for e in ex])
    src = np.asarray([e.source for e in ex])
    sets = {
        "hard negatives (train groups)": benign & np.isin(src, ["corpus:hard_negative", "corpus:short"]),
        "COCO (train rows)": benign & (src == "coco"),
        "corpus gibberish (train groups)": benign & (src == "corpus:gibberish"),
    }
    word = "escalate" if args.flag else "block"
    for name, sel in sets.items():
        margin = (o - line).max(1)
        over = sel & (margin >= 0)
        print(f"\n== {name}: {int(over.sum())} of {int(sel.sum())} over a {word} line out of fold")
        groups = Counter(ex[i].group.rsplit("/", 1)[0] for i in np.flatnonzero(over))
        print("   by generator family: " + ", ".join(f"{g} {n}" for g, n in groups.most_common(20)))
        for i in np.flatnonzero(over)[np.argsort(-margin[over])][: args.top]:
            heads = [model.heads[h] for h in range(len(model.heads)) if o[i, h] >= line[i, h]]
            print(f"  {margin[i]:+6.2f} {'/'.join(heads):18s} {ex[i].group:34s} {ex[i].text!r}"[:220])
    print(f"\nartifact: {out}", file=sys.stderr)
    return 0


def screen_file(path: Path, policy: str) -> int:
    """Screens every prompt of ``path`` and prints those not allowed, with their reasons."""
    from guard.policy import load_policy
    from guard.screen.screen import PromptScreen

    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = [ln for ln in lines if ln and not ln.startswith("#")]
    if not prompts:
        raise SystemExit(f"{path}: no prompts (one a line, '#' starts a comment)")
    screen = PromptScreen(load_policy(policy))
    res = screen.screen_batch(prompts)
    n_block = sum(r.decision == "block" for r in res)
    n_flag = sum(r.decision != "allow" for r in res)
    for p, r in zip(prompts, res):
        if r.decision != "allow":
            print(f"{r.decision:8s} {p!r}: {'; '.join(r.reasons[:2])}"[:240])
    print(f"\n{path}: {len(prompts)} prompts, {n_block} blocked, {n_flag} flagged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
