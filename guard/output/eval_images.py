"""``guard eval-images``: how well a policy's output check separates a user's own labelled images.

Given a folder of images that must be caught (``--unsafe``) and one of images that must pass
(``--benign``), it reports true- and false-positive rates

* per **category** as the policy decides it (cascades included: a ``require: all`` category counts
  only when every signal confirms);
* per **signal** (a category's classifier and labels) standing alone: each classifier of the
  policy runs on every image, so a cascade's later stages are measured too;
* for the **policy** as a whole (any category flags the image);
* a **calibration** per signal label: the highest benign score, and the threshold that keeps the
  false-positive rate at or under ``target_fpr`` (default 1 %) on these benign images with the
  true-positive rate it would give; put it in the policy
  (``output.categories.<category>.signals.<classifier>.<label>: <threshold>``) and evaluate again.

Our own evaluation images are not distributable; this is for a deployment's. Images are read
recursively (PNG, JPEG, WebP, BMP, GIF first frame, TIFF); an unreadable file is listed, not fatal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard.errors import GuardInputError, PolicyError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
BATCH = 16


def list_images(folder: str | os.PathLike[str], what: str) -> list[Path]:
    p = Path(folder).expanduser()
    if not p.is_dir():
        raise GuardInputError(f"{what} folder {str(p)!r} does not exist or is not a directory")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GuardInputError(f"{what} folder {str(p)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _read(path: Path) -> Any:
    from PIL import Image

    from guard.output.base import to_rgb_uint8

    with Image.open(path) as im:
        im.seek(0)
        im.load()
        return to_rgb_uint8(im, where=str(path))


def _rates(tp: int, fn: int, fp: int, tn: int) -> dict[str, Any]:
    return {
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "tpr": round(tp / (tp + fn), 4) if tp + fn else None,
        "fpr": round(fp / (fp + tn), 4) if fp + tn else None,
    }


def calibrate(
    unsafe: Sequence[float],
    benign: Sequence[float],
    target_fpr: float,
    strictly_above: bool = False,
    threshold_range: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """The lowest threshold (4 decimals, within ``threshold_range``) at which at most
    ``floor(target_fpr * len(benign))`` benign scores hit (``score >= threshold``, or ``>`` for
    ``strictly_above`` classifiers), with the rates it gives on these scores; ``threshold`` is None
    without benign scores."""
    import math

    b = sorted((float(x) for x in benign), reverse=True)
    u = [float(x) for x in unsafe]
    out: dict[str, Any] = {
        "benign_max": round(b[0], 4) if b else None,
        "unsafe_min": round(min(u), 4) if u else None,
        "target_fpr": target_fpr,
    }
    if not b:
        return {**out, "threshold": None, "tpr": None, "fpr": None}
    allowed = math.floor(target_fpr * len(b) + 1e-9)
    if allowed >= len(b):
        thr = 0.0
    else:
        # the first point of a 4-decimal grid that the (allowed + 1)-th highest benign score misses
        thr = round(math.floor(b[allowed] * 1e4) / 1e4, 4)
        while (b[allowed] > thr) if strictly_above else (b[allowed] >= thr):
            thr = round(thr + 1e-4, 4)
    thr = min(max(thr, threshold_range[0]), threshold_range[1])

    def hit(x: float) -> bool:
        return x > thr if strictly_above else x >= thr

    return {
        **out,
        "threshold": thr,
        "tpr": round(sum(map(hit, u)) / len(u), 4) if u else None,
        "fpr": round(sum(map(hit, b)) / len(b), 4),
    }


def eval_images(
    unsafe_dir: str | os.PathLike[str],
    benign_dir: str | os.PathLike[str],
    policy: Any = "default",
    json_out: str | os.PathLike[str] | None = None,
    target_fpr: float = 0.01,
) -> dict[str, Any]:
    """Run the policy's output check on both folders; returns (and writes to ``json_out`` as JSON)
    ``{"policy", "counts", "policy_level", "categories", "signals", "calibration", "unreadable",
    "images"}``. ``target_fpr`` (in [0, 1)) is the false-positive rate the calibration aims at."""
    if isinstance(target_fpr, bool) or not isinstance(target_fpr, (int, float)) or not 0.0 <= target_fpr < 1.0:
        raise GuardInputError(f"target_fpr must be a number in [0, 1), got {target_fpr!r}")
    from guard.output.check import OutputChecker
    from guard.policy import load_policy

    pol = load_policy(policy)
    if not pol.output.enabled:
        raise GuardInputError(f"policy {pol.name!r} has the output check disabled: nothing to evaluate")
    checker = OutputChecker(pol.output)
    if not checker.active:
        raise GuardInputError(
            f"policy {pol.name!r}: no output category has an installed classifier"
            + (f" (left out: {', '.join(checker.missing)})" if checker.missing else "")
        )
    files = [(f, True) for f in list_images(unsafe_dir, "unsafe")] + [
        (f, False) for f in list_images(benign_dir, "benign")
    ]
    rules = [r for r in checker.rules if r.outputs]
    clf_of = {name: clf for name, _, clf in checker.classifiers}
    cfg_of = {name: cfg for name, cfg, _ in checker.classifiers}
    signal_keys = [(r.name, s.classifier) for r in rules for s in r.signals]
    counts = {"policy": [0, 0, 0, 0]}  # tp fn fp tn
    counts.update({f"category:{r.name}": [0, 0, 0, 0] for r in rules})
    counts.update({f"signal:{c}/{k}": [0, 0, 0, 0] for c, k in signal_keys})
    per_image: list[dict[str, Any]] = []
    unreadable: list[str] = []
    #: (category, classifier, label) -> (unsafe scores, benign scores)
    label_scores: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {
        (r.name, s.classifier, lab): ([], []) for r in rules for s in r.signals for lab in s.thresholds
    }

    def tally(key: str, unsafe: bool, hit: bool) -> None:
        c = counts[key]
        c[(0 if hit else 1) if unsafe else (2 if hit else 3)] += 1

    for start in range(0, len(files), BATCH):
        chunk, imgs = [], []
        for f, unsafe in files[start : start + BATCH]:
            try:
                imgs.append(_read(f))
                chunk.append((f, unsafe))
            except Exception as exc:  # listed in the result, not fatal
                unreadable.append(f"{f}: {type(exc).__name__}: {exc}")
        if not imgs:
            continue
        verdicts = checker.check(imgs)
        alone = {name: clf.classify(imgs) for name, clf in clf_of.items() if any(k == name for _, k in signal_keys)}
        for j, ((f, unsafe), v) in enumerate(zip(chunk, verdicts)):
            tally("policy", unsafe, v.is_flagged)
            for r in rules:
                tally(f"category:{r.name}", unsafe, r.name in v.categories)
                for s in r.signals:
                    scores = alone[s.classifier][j].scores
                    for lab in s.thresholds:
                        label_scores[(r.name, s.classifier, lab)][0 if unsafe else 1].append(scores.get(lab, 0.0))
                    hit = any(
                        cfg_of[s.classifier].hit(scores.get(lab, float("-inf")), t) for lab, t in s.thresholds.items()
                    )
                    tally(f"signal:{r.name}/{s.classifier}", unsafe, hit)
            per_image.append(
                {
                    "file": str(f),
                    "unsafe": unsafe,
                    "flagged": v.is_flagged,
                    "action": v.action,
                    "categories": sorted(v.categories),
                    "scores": {
                        n: {
                            k: round(x, 4)
                            for k, x in alone[n][j].scores.items()
                            if k in {lab for r in rules for s in r.signals if s.classifier == n for lab in s.thresholds}
                        }
                        for n in alone
                    },
                }
            )
    result = {
        "policy": {"name": pol.name, "sha256": pol.sha256},
        "counts": {
            "unsafe": sum(1 for im in per_image if im["unsafe"]),
            "benign": sum(1 for im in per_image if not im["unsafe"]),
            "unreadable": len(unreadable),
        },
        "policy_level": _rates(*counts["policy"]),
        "categories": {r.name: _rates(*counts[f"category:{r.name}"]) for r in rules},
        "signals": {
            f"{c}/{k}": {
                **_rates(*counts[f"signal:{c}/{k}"]),
                "thresholds": next(s.thresholds for r in rules if r.name == c for s in r.signals if s.classifier == k),
            }
            for c, k in signal_keys
        },
        "calibration": {
            f"{c}/{k}:{lab}": {
                "current": next(
                    s.thresholds[lab] for r in rules if r.name == c for s in r.signals if s.classifier == k
                ),
                **calibrate(u, b, float(target_fpr), cfg_of[k].strictly_above, cfg_of[k].threshold_range),
            }
            for (c, k, lab), (u, b) in label_scores.items()
        },
        "left_out": dict(checker.missing),
        "unreadable": unreadable,
        "images": per_image,
    }
    if json_out is not None:
        from guard.fileio import write_atomic

        write_atomic(json_out, json.dumps(result, indent=2, ensure_ascii=False))
    return result


def format_table(result: dict[str, Any]) -> str:
    """The rates as a small text table (what the CLI prints)."""
    c = result["counts"]
    lines = [
        f"policy {result['policy']['name']}: {c['unsafe']} unsafe, {c['benign']} benign images"
        + (f", {c['unreadable']} unreadable" if c["unreadable"] else ""),
        f"{'':34s} {'TPR':>7s} {'FPR':>7s}   tp  fn  fp  tn",
    ]

    def row(name: str, r: dict[str, Any]) -> str:
        f = lambda x: "    -  " if x is None else f"{x:7.3f}"  # noqa: E731
        return f"{name:34s} {f(r['tpr'])} {f(r['fpr'])} {r['tp']:4d}{r['fn']:4d}{r['fp']:4d}{r['tn']:4d}"

    lines.append(row("policy (any category)", result["policy_level"]))
    lines += [row(f"category {k}", v) for k, v in result["categories"].items()]
    lines += [row(f"  signal {k}", v) for k, v in result["signals"].items()]
    cal = result.get("calibration", {})
    if cal:
        fpr = next(iter(cal.values()))["target_fpr"]
        lines.append(f"calibration (threshold for FPR <= {fpr:g} on these benign images):")
        lines.append(f"  {'signal:label':40s} {'now':>6s} {'benign max':>10s} {'suggest':>8s} {'TPR':>6s} {'FPR':>6s}")
        f = lambda x: "     -" if x is None else f"{x:6.3f}"  # noqa: E731
        for name, c in cal.items():
            lines.append(
                f"  {name:40s} {c['current']:6.3f} {f(c['benign_max']):>10s} {f(c['threshold']):>8s} "
                f"{f(c['tpr'])} {f(c['fpr'])}"
            )
    for name, why in result.get("left_out", {}).items():
        lines.append(f"left out: {name} ({why})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``guard eval-images --unsafe DIR --benign DIR [--policy P] [--json OUT]``; exit 0, or 2 on bad input."""
    import argparse

    ap = argparse.ArgumentParser(prog="guard eval-images", description=__doc__.splitlines()[0])
    ap.add_argument("--unsafe", required=True, help="folder of images the policy must catch")
    ap.add_argument("--benign", required=True, help="folder of images the policy must let through")
    ap.add_argument("--policy", default="default", help="policy file or built-in name (default: default)")
    ap.add_argument("--json", dest="json_out", default=None, help="write the full result (per image too) here")
    ap.add_argument("--target-fpr", type=float, default=0.01, help="false-positive rate the calibration aims at")
    args = ap.parse_args(argv)
    try:
        result = eval_images(args.unsafe, args.benign, args.policy, args.json_out, args.target_fpr)
    except (GuardInputError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
