"""Each default-policy classifier's scores on real benign photographs shipped inside the scikit-image and
scikit-learn wheels (public domain / CC0 / CC BY 2.0, listed in tests/test_output_real_images.py), beside
the thresholds of the categories that use them: how far from a false positive each photo is.

    python benchmarks/classifier_real_images.py [--policy default]

One row per photo: per signal (category/classifier) the highest score of its labels and that label's
threshold; the last line is ``RESULT photos=N flagged=K min_margin=...`` (the smallest threshold - score
over all photos and signals; > 0 means no photo reaches any threshold). Before it, per signal label,
the highest score any photo got and which photo.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="default")
    args = ap.parse_args()

    from guard.output.check import OutputChecker
    from guard.policy import load_policy
    from test_output_real_images import benign_photos

    checker = OutputChecker(load_policy(args.policy).output)
    photos = benign_photos()
    names = list(photos)
    imgs = [photos[n] for n in names]
    outs = {name: clf.classify(imgs) for name, _, clf in checker.classifiers}
    verdicts = checker.check(imgs)
    signals = [(r.name, s) for r in checker.rules for s in r.signals]
    if checker.missing:
        print("left out (not installed): " + ", ".join(checker.missing))
    head = [f"{c}/{s.classifier}" for c, s in signals]
    print(f"{'photo':22s} " + " ".join(f"{h:>30s}" for h in head) + "  verdict")
    min_margin = float("inf")
    for i, n in enumerate(names):
        cells = []
        for _, s in signals:
            scores = outs[s.classifier][i].scores
            label = max(s.thresholds, key=lambda lab: scores.get(lab, 0.0) - s.thresholds[lab])
            sc, thr = scores.get(label, 0.0), s.thresholds[label]
            min_margin = min(min_margin, thr - sc)
            cells.append(f"{label[:14]:>14s} {sc:6.3f}/{thr:<5.2f}")
        v = verdicts[i]
        print(f"{n:22s} " + " ".join(f"{c:>30s}" for c in cells) + f"  {v.action if v.is_flagged else 'pass'}")
    print("\nhighest benign score per signal label (threshold):")
    for c, s in signals:
        for label, thr in s.thresholds.items():
            scores = [outs[s.classifier][i].scores.get(label, 0.0) for i in range(len(names))]
            top = max(range(len(names)), key=scores.__getitem__)
            key = f"{c}/{s.classifier}:{label}"
            print(f"  {key:44s} {scores[top]:6.3f} ({names[top]}), threshold {thr:.2f}")
    flagged = sum(v.is_flagged for v in verdicts)
    print(f"RESULT photos={len(names)} flagged={flagged} min_margin={min_margin:.4f} classifiers={'+'.join(outs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
