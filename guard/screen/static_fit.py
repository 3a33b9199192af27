"""Fits the static view encoder's small artifact (``guard/screen/models/static-v1.*``) on TRAINING
texts only, seeded: per-token SIF weights, a ridge map into the sentence model's space and a cosine
calibration (see :mod:`guard.screen.static_embed`, which runs it and never imports this module).

    python -m guard.screen.static_fit [--data ../shared/data/prompts] [--out guard/screen/models/static-v1]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.screen import static_embed as se
from guard.screen.static_embed import DEFAULT_FIT, PROBE_TOKENS, RIDGE, SIF_A, TABLE_FORMAT, _Tok, token_table

logger = logging.getLogger(__name__)


def _concept_max(sims: np.ndarray, starts: np.ndarray) -> np.ndarray:
    out = np.full((sims.shape[0], len(starts) - 1), -1.0, dtype=np.float64)
    for ci in range(len(starts) - 1):
        if starts[ci + 1] > starts[ci]:
            out[:, ci] = sims[:, starts[ci] : starts[ci + 1]].max(1)
    return out


def fit(
    data: Path | None,
    out: Path = DEFAULT_FIT,
    *,
    seed: int = 0,
    n_texts: int = 8000,
    policy: str = "default",
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the token weights, the map into MiniLM's space and the cosine calibration on training
    prompts (``guard.screen.train.load_examples``: never an evaluation row), and write the artifact.
    Returns its metadata (with held-out agreement figures)."""
    import random

    from guard.fileio import write_atomic
    from guard.policy import load_policy
    from guard.screen.normalize import normalize
    from guard.screen.screen import PromptScreen
    from guard.screen.train import load_examples

    t0 = time.perf_counter()
    screen = PromptScreen(load_policy(policy))
    emb = screen.embedder
    tok = _Tok(emb.path)
    table = token_table(emb, tok).astype(np.float64)
    dim = table.shape[1]
    texts = list(dict.fromkeys(e.text for e in load_examples(data, seed=seed, obfuscate_share=0.0)))
    # SIF weights from the token frequencies of every training prompt (as the screen normalises it)
    counts = np.zeros(tok.size, dtype=np.float64)
    for ids, _ in tok.encode([normalize(t).text for t in texts]):
        np.add.at(counts, ids, 1.0)
    prob = (counts + 1.0) / (counts.sum() + tok.size)
    weights = (SIF_A / (SIF_A + prob)).astype(np.float32)
    # views of a seeded sample of the prompts; a tenth (by hash of the text) is held out for the figures
    rng = random.Random(seed)
    sample = rng.sample(texts, min(n_texts, len(texts)))
    held = {t for t in sample if int(hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest(), 16) % 10 == 0}
    views_fit: list[str] = []
    views_held: list[str] = []
    for t in sample:
        vs = screen._views(t)[0]
        (views_held if t in held else views_fit).extend(vs)
    views_fit = list(dict.fromkeys(views_fit))
    views_held = list(dict.fromkeys(v for v in views_held if v not in set(views_fit)))
    if progress:
        print(f"static fit: {len(texts)} training prompts, {len(views_fit)} + {len(views_held)} views", file=sys.stderr)

    def means(views: list[str]) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((len(views), dim), dtype=np.float64)
        live = np.zeros(len(views), dtype=bool)
        for r, (ids, _) in enumerate(tok.encode(views)):
            ids = np.asarray([i for i in ids.tolist() if not tok.is_special(i)], dtype=np.int64)
            if ids.size:
                w = weights[ids].astype(np.float64)
                x[r] = (w[:, None] * table[ids]).sum(0) / w.sum()
                live[r] = True
        return x, live

    y_fit, y_held = emb.encode(views_fit).astype(np.float64), emb.encode(views_held).astype(np.float64)
    x_fit, live_fit = means(views_fit)
    x_held, live_held = means(views_held)
    keep = live_fit & (np.abs(y_fit).sum(1) > 0)
    xa = np.hstack([x_fit[keep], np.ones((int(keep.sum()), 1))])
    proj = np.linalg.solve(xa.T @ xa + RIDGE * np.eye(dim + 1), xa.T @ y_fit[keep])

    def project(x: np.ndarray, live: np.ndarray) -> np.ndarray:
        z = np.hstack([x, np.ones((len(x), 1))]) @ proj
        z[~live] = 0.0
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    phrase_mat = screen._phrase_mat.astype(np.float64)
    starts = screen._starts
    s_fit = _concept_max(project(x_fit[keep], live_fit[keep]) @ phrase_mat.T, starts).ravel()
    m_fit = _concept_max(y_fit[keep] @ phrase_mat.T, starts).ravel()
    # moment matching (not a regression of one on the other, which would pull a static view's high
    # similarities towards the mean: a segment "a naked woman on the pier" at 0.71 static, 0.74 MiniLM,
    # came out at 0.55)
    a = float(m_fit.std() / max(s_fit.std(), 1e-12))
    b = float(m_fit.mean() - a * s_fit.mean())
    # held-out agreement
    hk = live_held & (np.abs(y_held).sum(1) > 0)
    zh = project(x_held[hk], live_held[hk])
    self_cos = float((zh * y_held[hk]).sum(1).mean()) if hk.any() else float("nan")
    sh = _concept_max(zh @ phrase_mat.T, starts)
    mh = _concept_max(y_held[hk] @ phrase_mat.T, starts)
    sh_cal = a * sh + b
    probe_ids = np.asarray([tok._tok.token_to_id(t) for t in PROBE_TOKENS], dtype=np.int64)
    meta = {
        "format": 1,
        "model": str(getattr(emb, "model_name", "")),
        "model_fingerprint": emb.fingerprint,
        "table_key": emb.cache_key,
        "table_format": TABLE_FORMAT,
        "sif_a": SIF_A,
        "ridge": RIDGE,
        "seed": seed,
        "data": {
            "training_prompts": len(texts),
            "sampled_prompts": len(sample),
            "fit_views": int(keep.sum()),
            "held_out_views": int(hk.sum()),
            "source": "guard.screen.train.load_examples (training rows only: corpus train split, I2P "
            "case_number % 5 != 0, COCO case_number % 5 != 0, Ring-A-Bell row % 3 != 2)",
        },
        "calibration": {"a": float(a), "b": float(b)},
        "held_out": {
            "cosine_to_minilm_mean": round(self_cos, 4),
            "concept_max_r": round(float(np.corrcoef(sh.ravel(), mh.ravel())[0, 1]), 4),
            "concept_max_mae": round(float(np.abs(sh_cal - mh).mean()), 4),
            "top_concept_agreement": round(float((sh.argmax(1) == mh.argmax(1)).mean()), 4),
        },
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        weights=weights,
        proj=proj.astype(np.float32),
        calib=np.asarray([a, b], dtype=np.float64),
        probe_ids=probe_ids,
        probe_rows=table[probe_ids].astype(np.float32),
    )
    write_atomic(Path(str(out) + ".npz"), buf.getvalue())
    write_atomic(Path(str(out) + ".json"), json.dumps(meta, indent=1) + "\n")
    with se._ENCODERS_LOCK:
        se._ENCODERS.clear()
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    from guard.screen.train import DEFAULT_DATA

    ap = argparse.ArgumentParser(
        prog="python -m guard.screen.static_fit", description="fit the screen's static view encoder"
    )
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of the shared prompt sets (optional)")
    ap.add_argument("--out", default=str(DEFAULT_FIT), help="artifact path without suffix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=8000, help="training prompts whose views are fitted on")
    args = ap.parse_args(argv)
    meta = fit(Path(args.data), Path(args.out), seed=args.seed, n_texts=args.n)
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
