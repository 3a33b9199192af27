"""Obfuscated forms only: block and flag rates per transform, as ``benchmarks/screen_eval.py`` measures them.

    python benchmarks/obfuscation_eval.py [--data ../shared/data/prompts] [--how leetspeak] [--show 20]

The sets are built exactly as screen_eval builds them (the first 300 held-out COCO captions and 200
evaluation hard negatives as benign sources, the English explicit evaluation rows as unsafe sources,
one seeded generator over the transforms in the same order), so the figures are the same; ``--show``
prints benign prompts that were flagged and unsafe prompts that were not blocked, with the reason, to see
why. The set "none" is the sources unobfuscated (the floor no transform can go below; ``--how none`` for it
alone). ``--probes`` adds transforms no training row is made with (``train.PROBE_OBFUSCATIONS``: small
capitals, the whole text upside down, vowels censored with stars, Greek look-alikes), after the others, so
theirs stay the same. The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.corpus_build import load as load_corpus
from guard.screen.train import DEFAULT_DATA, OBFUSCATIONS, PROBE_OBFUSCATIONS, coco_is_eval, obfuscate


def sources(data: Path) -> tuple[list[str], list[str]]:
    """(benign, unsafe) source prompts of the obfuscated sets."""
    rows = [r for r in load_corpus() if r["split"] == "eval"]
    coco_eval: list[str] = []
    if (data / "coco_10k.csv").is_file():
        with open(data / "coco_10k.csv", newline="", encoding="utf-8") as f:
            coco_eval = [r["prompt"] for r in csv.DictReader(f) if coco_is_eval(r["case_number"])]
    benign = coco_eval[:300] + [r["text"] for r in rows if r["kind"] == "hard_negative"][:200]
    unsafe = [r["text"] for r in rows if r["kind"] == "explicit" and r["lang"] == "en"]
    return benign, unsafe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="default")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--how", default=None, help="comma-separated transforms (default: all)")
    ap.add_argument("--show", type=int, default=0, help="print up to N failures per set")
    ap.add_argument(
        "--probes",
        action="store_true",
        help="also the transforms no training row is made with (small capitals, upside down, stars, Greek)",
    )
    args = ap.parse_args(argv)
    screen = PromptScreen(load_policy(args.policy))
    benign, unsafe = sources(Path(args.data))
    hows = OBFUSCATIONS + (PROBE_OBFUSCATIONS if args.probes or args.how else ())
    want = set(args.how.split(",")) if args.how else set(hows)
    unknown = want - set(hows) - {"none"}
    if unknown:
        ap.error(f"--how: unknown transform {', '.join(sorted(unknown))}; expected {', '.join(('none',) + hows)}")
    rng = random.Random(0)
    out: dict[str, tuple[float, float]] = {}
    print(f"{'set':32s} {'n':>5s} {'block %':>8s} {'flag %':>8s}")
    for how in ("none",) + hows:
        if how == "none":  # the sources as they are: the floor no transform can go below
            sets = [("benign", list(benign)), ("unsafe", list(unsafe))]
            if args.how and "none" not in want:
                continue
            want.add("none")
        else:
            sets = [
                ("benign", [obfuscate(t, how, rng) for t in benign]),
                ("unsafe", [obfuscate(t, how, rng) for t in unsafe]),
            ]
        if how not in want:
            continue
        for kind, prompts in sets:
            res = []
            for s in range(0, len(prompts), 256):
                res.extend(screen.screen_batch(prompts[s : s + 256]))
            n = len(res)
            blk = 100.0 * sum(r.decision == "block" for r in res) / n
            flg = 100.0 * sum(r.decision != "allow" for r in res) / n
            out[f"{kind}_{how}"] = (blk, flg)
            print(f"{kind + ': ' + how:32s} {n:5d} {blk:8.2f} {flg:8.2f}")
            bad = [
                (p, r)
                for p, r in zip(prompts, res)
                if (r.decision != "allow" if kind == "benign" else r.decision != "block")
            ]
            for p, r in bad[: args.show]:
                print(f"    {r.decision:8s} {p[:90]!r} :: {'; '.join(r.reasons)[:220]}")
    print("\nRESULT " + " ".join(f"{k}_block={v[0]:.2f} {k}_flag={v[1]:.2f}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
