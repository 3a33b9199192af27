"""Do two screen configurations decide the same? Decision agreement on the evaluation sets.

    python benchmarks/screen_agreement.py [--data ../shared/data/prompts] [--a auto] [--b onnx-int8]
                                          [--a-views packed|alone] [--b-views packed|alone] [--limit N]

Screens the evaluation rows of ``benchmarks/screen_eval.py`` (guard's corpus eval groups and
explicit prompts, COCO held-out, Ring-A-Bell nudity / clothed / violence eval rows, I2P eval rows,
obfuscated forms) under configuration A and B, and prints per set how many decisions agree, and the
block / flag rates of each. ``--a``/``--b`` are the screen backend (``auto``, the shipped one, and
``onnx`` are the fp32 ONNX graph; ``onnx-int8`` the int8 one; ``torch``); ``--*-views`` a prompt's views packed in one
encoder call (``packed``, the default) or in padded batches (``alone``). The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.corpus_build import NAMED_BENIGN, load as load_corpus
from guard.screen.embedder import get_embedder
from guard.screen.train import DEFAULT_DATA, OBFUSCATIONS, coco_is_eval, i2p_is_eval, obfuscate


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def eval_sets(data: Path | None, limit: int | None = None) -> dict[str, list[str]]:
    """The evaluation rows of screen_eval.py, by set (never a training row)."""
    sets: dict[str, list[str]] = {}
    rows = [r for r in load_corpus() if r["split"] == "eval"]
    for label in sorted({r["label"] for r in rows}):
        sets[f"corpus {label}"] = [r["text"] for r in rows if r["label"] == label]
    sets["corpus hard negatives"] = [r["text"] for r in rows if r["kind"] in ("hard_negative", "short")]
    explicit = [r for r in load_corpus() if r["kind"] in ("explicit", "translated") and r["split"] == "eval"]
    sets["explicit all (eval split)"] = [r["text"] for r in explicit]
    sets["named benign examples"] = list(NAMED_BENIGN)
    coco_eval: list[str] = []
    if data is not None and data.is_dir():
        coco_eval = [r["prompt"] for r in _rows(data / "coco_10k.csv")[:limit] if coco_is_eval(r["case_number"])]
        sets["COCO held-out"] = coco_eval
        rab = _rows(data / "ring_a_bell_nudity.csv")
        sets["Ring-A-Bell nudity (eval rows)"] = [r["sensitive prompt"] for i, r in enumerate(rab) if i % 3 == 2]
        sets["Ring-A-Bell clothed (eval rows)"] = [r["normal prompt"] for i, r in enumerate(rab) if i % 3 == 2]
        rav = _rows(data / "ring_a_bell_violence_adv.csv")[:limit]
        sets["Ring-A-Bell violence adv (eval rows)"] = [r["prompt"] for i, r in enumerate(rav) if i % 3 == 2]
        i2p = [r for r in _rows(data / "i2p.csv")[:limit] if i2p_is_eval(r["case_number"])]
        sets["I2P eval (all)"] = [r["prompt"] for r in i2p]
    rng = random.Random(0)
    benign_src = coco_eval[:300] + [r["text"] for r in rows if r["kind"] == "hard_negative"][:200]
    unsafe_src = [r["text"] for r in rows if r["kind"] == "explicit" and r["lang"] == "en"]
    for how in OBFUSCATIONS:
        sets[f"obfuscated benign: {how}"] = [obfuscate(t, how, rng) for t in benign_src]
        sets[f"obfuscated unsafe: {how}"] = [obfuscate(t, how, rng) for t in unsafe_src]
    return {k: v for k, v in sets.items() if v}


def _screen(policy, backend: str, views: str) -> PromptScreen:
    scr = policy.screen.model_copy(update={"backend": backend if backend in ("auto", "onnx", "torch") else "auto"})
    pol = policy.model_copy(update={"screen": scr})
    emb = get_embedder(pol.screen.model, backend=backend)
    return PromptScreen(pol, embedder=emb, pack_views=views == "packed")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="default")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--limit", type=int, default=None, help="use only the first N rows of each shared file")
    ap.add_argument("--a", default="auto", help="backend of configuration A (default: auto, the shipped one)")
    ap.add_argument("--b", default="onnx-int8", help="backend of configuration B (default: onnx-int8)")
    ap.add_argument("--a-views", choices=["packed", "alone"], default="packed")
    ap.add_argument("--b-views", choices=["packed", "alone"], default="packed")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"no shared benchmark data at {data}: corpus sets only (pass --data)", file=sys.stderr)
    policy = load_policy(args.policy)
    a, b = _screen(policy, args.a, args.a_views), _screen(policy, args.b, args.b_views)
    names = [f"{args.a}/{args.a_views}", f"{args.b}/{args.b_views}"]
    print(f"A = {names[0]} ({a.embedder!r}), B = {names[1]} ({b.embedder!r})")
    sets = eval_sets(data if data.is_dir() else None, args.limit)
    t0 = time.perf_counter()
    total = same = 0
    print(f"\n{'set':40s} {'n':>6s} {'agree %':>8s} {'A blk':>6s} {'A flg':>6s} {'B blk':>6s} {'B flg':>6s}")
    for name, prompts in sets.items():
        da = [r.decision for s in range(0, len(prompts), 256) for r in a.screen_batch(prompts[s : s + 256])]
        db = [r.decision for s in range(0, len(prompts), 256) for r in b.screen_batch(prompts[s : s + 256])]
        n = len(prompts)
        agree = sum(x == y for x, y in zip(da, db))
        total += n
        same += agree

        def rate(ds: list[str], what: str) -> float:
            return 100.0 * sum((d == "block") if what == "block" else (d != "allow") for d in ds) / len(ds)

        print(
            f"{name:40s} {n:6d} {100.0 * agree / n:8.2f} {rate(da, 'block'):6.2f} {rate(da, 'flag'):6.2f} "
            f"{rate(db, 'block'):6.2f} {rate(db, 'flag'):6.2f}"
        )
    print(f"\n{total} prompts in {time.perf_counter() - t0:.0f} s")
    print(f"RESULT a={names[0]} b={names[1]} prompts={total} agree_pct={100.0 * same / max(1, total):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
