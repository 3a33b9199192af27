"""Calibrate and evaluate the prompt screen on the shared benchmark prompts.

    python benchmarks/screen_eval.py [--policy default] [--data ../shared/data/prompts] [--limit N]

Prints, side by side: benign flag rates (COCO-10k captions, Ring-A-Bell clothed counterparts) and
unsafe block rates (I2P 'sexual', I2P nudity >= 50 %, Ring-A-Bell nudity, I2P per category), and per
concept the COCO score quantiles that thresholds are set against. Needs ../shared (not shipped).
The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from guard.policy import load_policy
from guard.screen import PromptScreen


def read_column(path: Path, column: str, limit: int | None = None) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    vals = [r[column] for r in rows]
    return vals[:limit] if limit else vals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="default")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/prompts"))
    ap.add_argument("--limit", type=int, default=None, help="use only the first N rows of each file")
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        print(f"no benchmark data at {data}; pass --data", file=sys.stderr)
        return 2

    policy = load_policy(args.policy)
    t0 = time.perf_counter()
    screen = PromptScreen(policy)
    print(f"policy {policy.name} ({policy.sha256[:12]}): {len(policy.concepts)} concepts, "
          f"{screen.index.ntotal} phrases; index ready in {time.perf_counter() - t0:.1f}s")

    i2p_rows = list(csv.DictReader(open(data / "i2p.csv", newline="", encoding="utf-8")))
    if args.limit:
        i2p_rows = i2p_rows[: args.limit * 3]
    sets = {
        "coco": read_column(data / "coco_10k.csv", "prompt", args.limit),
        "rab_sensitive": read_column(data / "ring_a_bell_nudity.csv", "sensitive prompt"),
        "rab_normal": read_column(data / "ring_a_bell_nudity.csv", "normal prompt"),
        "i2p": [r["prompt"] for r in i2p_rows],
        "artists": read_column(data / "big_artist_prompts.csv", "prompt"),
    }
    decisions: dict[str, list[str]] = {}
    timing: dict[str, float] = {}
    for name, prompts in sets.items():
        t = time.perf_counter()
        res = []
        for s in range(0, len(prompts), 512):
            res.extend(screen.screen_batch(prompts[s : s + 512]))
        timing[name] = (time.perf_counter() - t) * 1000 / max(1, len(prompts))
        decisions[name] = [r.decision for r in res]
        if name == "coco":
            coco_res = res
        if name == "rab_sensitive":
            rab_res = res

    def rate(ds: list[str], which=("block",)) -> float:
        return 100.0 * sum(d in which for d in ds) / max(1, len(ds))

    i2p_dec = decisions["i2p"]
    cats = ["sexual", "violence", "self-harm", "hate", "shocking", "harassment", "illegal activity"]
    by_cat = {c: [d for d, r in zip(i2p_dec, i2p_rows) if c in r["categories"]] for c in cats}
    nud50 = [d for d, r in zip(i2p_dec, i2p_rows) if float(r["nudity_percentage"] or 0) >= 50]

    print(f"\n{'set':34s} {'n':>6s} {'block %':>8s} {'blk+esc %':>9s} {'ms/prompt':>9s}")
    def line(label, ds, ms=None):
        print(f"{label:34s} {len(ds):6d} {rate(ds):8.2f} {rate(ds, ('block', 'escalate')):9.2f}"
              + (f" {ms:9.2f}" if ms is not None else ""))
    line("benign: COCO-10k captions", decisions["coco"], timing["coco"])
    line("benign: Ring-A-Bell clothed", decisions["rab_normal"], timing["rab_normal"])
    line("unsafe: Ring-A-Bell nudity", decisions["rab_sensitive"], timing["rab_sensitive"])
    line("unsafe: I2P nudity >= 50 %", nud50)
    for c in cats:
        line(f"unsafe: I2P {c}", by_cat[c])
    line("unsafe: I2P all", i2p_dec, timing["i2p"])
    line("styles: famous-artist prompts", decisions["artists"], timing["artists"])

    # which concepts fire on benign captions (what to fix first)
    fp: dict[str, int] = {}
    examples: dict[str, str] = {}
    for r, p in zip(coco_res, sets["coco"]):
        if r.decision != "allow":
            fp[r.concept] = fp.get(r.concept, 0) + 1
            examples.setdefault(r.concept, f"{p!r} ~ {r.phrase!r} {r.score:.3f}")
    if fp:
        print("\nCOCO flags by concept:")
        for k, v in sorted(fp.items(), key=lambda kv: -kv[1]):
            print(f"  {k:36s} {v:4d}  e.g. {examples[k]}")
    missed = [p for p, r in zip(sets["rab_sensitive"], rab_res) if r.decision == "allow"]
    if missed:
        print(f"\nRing-A-Bell nudity allowed ({len(missed)}), first 5:")
        for p in missed[:5]:
            print("  ", p)

    scores = screen.concept_scores(sets["coco"])
    print("\nper-concept COCO similarity quantiles (threshold should sit above q99.9):")
    print(f"  {'concept':36s} {'thr':>5s} {'q99':>6s} {'q99.9':>6s} {'max':>6s}")
    for ci, c in enumerate(policy.concepts):
        col = scores[:, ci]
        print(f"  {c.id:36s} {policy.threshold_for(c):5.2f} {np.quantile(col, .99):6.3f} "
              f"{np.quantile(col, .999):6.3f} {col.max():6.3f}")

    print("\nRESULT "
          f"coco_block_pct={rate(decisions['coco']):.2f} "
          f"coco_flag_pct={rate(decisions['coco'], ('block', 'escalate')):.2f} "
          f"rab_block_pct={rate(decisions['rab_sensitive']):.2f} "
          f"rab_normal_block_pct={rate(decisions['rab_normal']):.2f} "
          f"i2p_sexual_block_pct={rate(by_cat['sexual']):.2f} "
          f"i2p_nudity50_block_pct={rate(nud50):.2f} "
          f"ms_per_prompt={timing['coco']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
