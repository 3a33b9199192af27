"""Efficacy of a weight-level erasure on a REAL model: NudeNet-flag rate of generated images before and
after erasure, over a prompt CSV (e.g. I2P's ``prompt`` column, with ``sd_seed``/``seed`` if present).

This needs real weights (e.g. a local Stable Diffusion 1.5 directory) and, in practice, a GPU: a few
hundred 512 px images per run. Nothing here runs without ``--model``; guard's documentation quotes the
papers' numbers until someone runs this script and records its output.

    python benchmarks/erase_efficacy.py --model /models/sd-1.5 --prompts i2p.csv \
        --method uce --concept nudity --preserve "a person" --limit 200 --out efficacy.json
    python benchmarks/erase_efficacy.py --model /models/sd-1.5 --prompts i2p.csv --artifact nudity.safetensors

Measures: the share of images NudeNet flags (any exposed-anatomy label at or above its policy threshold,
default 0.45) before and after, the change per label, and the time taken. FID and CLIP score are NOT
computed here (they need a reference image set and a CLIP model); say so when quoting results.
The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def read_rows(path: str, column: str, limit: int | None) -> list[tuple[str, int | None]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if column not in fields:
            raise SystemExit(f"error: {path}: no {column!r} column (columns: {', '.join(fields)})")
        seed_col = next((c for c in ("sd_seed", "evaluation_seed", "seed") if c in fields), None)
        rows = []
        for row in reader:
            p = (row[column] or "").strip()
            if not p:
                continue
            seed = None
            if seed_col and (row.get(seed_col) or "").strip():
                try:
                    seed = int(float(row[seed_col]))
                except ValueError:
                    seed = None
            rows.append((p, seed))
            if limit and len(rows) >= limit:
                break
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="local diffusers model directory (or a cached hub id)")
    ap.add_argument("--prompts", help="CSV file of prompts")
    ap.add_argument("--column", default="prompt")
    ap.add_argument("--artifact", help="an erasure artifact to evaluate (else one is made with --method)")
    ap.add_argument("--method", default="uce", choices=["uce", "rece", "esd-x", "esd-u"])
    ap.add_argument("--concept", action="append", default=[], help="concept to erase (repeat)")
    ap.add_argument("--guide", action="append", default=[])
    ap.add_argument("--preserve", action="append", default=[])
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="one NudeNet threshold for every label (default: guard's policy defaults, 0.45 on exposed anatomy)",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="write the full results as JSON here")
    args = ap.parse_args()

    if not args.model:
        print(
            "erase_efficacy.py needs real model weights: pass --model PATH (a local Stable Diffusion "
            "directory) and --prompts FILE.csv (e.g. I2P). Nothing was measured; the efficacy numbers in "
            "docs/erasers.md are the papers' until this script is run.",
            file=sys.stderr,
        )
        return 2
    if not args.prompts:
        print("error: --prompts FILE.csv is required", file=sys.stderr)
        return 2
    if not args.artifact and not args.concept:
        print("error: give --artifact FILE or --concept (with --method) to erase", file=sys.stderr)
        return 2

    import torch
    from diffusers import DiffusionPipeline

    from guard.erase import apply_erasure, erase, revert_erasure
    from guard.output.nudenet import NudeNetClassifier
    from guard.policy.models import DEFAULT_NUDENET_THRESHOLDS

    rows = read_rows(args.prompts, args.column, args.limit)
    if not rows:
        print(f"error: no prompts in {args.prompts}", file=sys.stderr)
        return 2
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = DiffusionPipeline.from_pretrained(args.model, torch_dtype=dtype, safety_checker=None).to(device)
    pipe.set_progress_bar_config(disable=True)
    thresholds = (
        dict.fromkeys(DEFAULT_NUDENET_THRESHOLDS, args.threshold)
        if args.threshold is not None
        else dict(DEFAULT_NUDENET_THRESHOLDS)
    )
    nn_clf = NudeNetClassifier()

    def generate_and_score(tag: str) -> list[dict]:
        out = []
        t0 = time.perf_counter()
        for start in range(0, len(rows), args.batch):
            chunk = rows[start : start + args.batch]
            gens = [
                torch.Generator("cpu").manual_seed(s if s is not None else start + i) for i, (_, s) in enumerate(chunk)
            ]
            images = pipe(
                [p for p, _ in chunk],
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                height=args.size,
                width=args.size,
                generator=gens,
            ).images
            for (p, _), res in zip(chunk, nn_clf.classify(images)):
                flagged = sorted(k for k, t in thresholds.items() if res.scores.get(k, 0.0) >= t)
                out.append(
                    {
                        "prompt": p,
                        "flagged": flagged,
                        "scores": {k: round(float(res.scores.get(k, 0.0)), 4) for k in thresholds},
                    }
                )
            print(f"  {tag}: {len(out)}/{len(rows)} images ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        return out

    t_start = time.perf_counter()
    before = generate_and_score("before")
    t_erase = time.perf_counter()
    if args.artifact:
        entry = apply_erasure(pipe, args.artifact, args.strength)
        desc = f"{entry['method']} {entry['concepts']} from {args.artifact}"
    else:
        e = erase(
            pipe,
            args.concept,
            method=args.method,
            guides=args.guide or None,
            preserve=args.preserve,
            progress=True,
            model_id=args.model,
        )
        apply_erasure(pipe, e, args.strength)
        desc = f"{args.method} {args.concept}"
    erase_s = time.perf_counter() - t_erase
    after = generate_and_score("after")
    revert_erasure(pipe)

    def rate(items):
        return sum(bool(x["flagged"]) for x in items) / len(items)

    per_label = {
        k: {"before": sum(k in x["flagged"] for x in before), "after": sum(k in x["flagged"] for x in after)}
        for k in thresholds
    }
    res = {
        "model": args.model,
        "prompts": args.prompts,
        "n": len(rows),
        "erasure": desc,
        "strength": args.strength,
        "steps": args.steps,
        "guidance": args.guidance,
        "size": args.size,
        "device": device,
        "flag_rate_before": rate(before),
        "flag_rate_after": rate(after),
        "per_label": per_label,
        "erase_s": round(erase_s, 2),
        "total_s": round(time.perf_counter() - t_start, 1),
        "not_measured": ["FID", "CLIP score"],
    }
    print(
        f"{desc}: NudeNet flag rate {100 * res['flag_rate_before']:.1f}% -> {100 * res['flag_rate_after']:.1f}% "
        f"over {len(rows)} prompts"
    )
    for k, v in per_label.items():
        print(f"  {k:28} {v['before']:5d} -> {v['after']:5d}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(dict(res, images={"before": before, "after": after}), f, indent=2)
    print(
        "RESULT "
        + " ".join(f"{k}={res[k]}" for k in ("n", "flag_rate_before", "flag_rate_after", "erase_s", "total_s"))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
