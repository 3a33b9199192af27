"""Evaluate a policy's prompt screen on labelled prompt sets: TPR, FPR, AUROC, per category and per
transform, latency. Used by ``guard eval``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guard.screen.screen import PromptScreen, ScreenResult

_RANK = {"allow": 0, "escalate": 1, "block": 2}


def risk_score(r: ScreenResult) -> float:
    """A continuous risk for ranking: the decision first, then how far the top match is over (or
    under) its threshold. A prompt the screen's fast path allowed early ranks below every verdict of
    the full path (its gate found it clearly benign), by its gate score."""
    if getattr(r, "stage", "full") == "fast" and r.threshold:
        return -0.5 + 0.45 * (float(np.clip(r.score / r.threshold, 0.0, 1.0)) - 1.0)
    margin = 0.0 if r.threshold is None else float(np.clip(r.score - r.threshold, -1.0, 1.0))
    return _RANK[r.decision] + 0.45 * margin


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); None without both classes."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        return None
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def _rates(results: list[ScreenResult]) -> dict[str, Any]:
    n = len(results)
    blk = sum(r.decision == "block" for r in results)
    esc = sum(r.decision == "escalate" for r in results)
    return {
        "n": n,
        "block": blk,
        "escalate": esc,
        "block_rate": blk / n if n else None,
        "flag_rate": (blk + esc) / n if n else None,
    }


@dataclass
class EvalReport:
    policy: str
    policy_sha256: str
    unsafe: dict[str, Any]
    benign: dict[str, Any]
    auroc: float | None
    per_category: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_label: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_transform: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": {"name": self.policy, "sha256": self.policy_sha256},
            "unsafe": self.unsafe,
            "benign": self.benign,
            "auroc": self.auroc,
            "tpr_block": self.unsafe["block_rate"],
            "tpr_block_or_escalate": self.unsafe["flag_rate"],
            "fpr_block": self.benign["block_rate"],
            "fpr_block_or_escalate": self.benign["flag_rate"],
            "per_category": self.per_category,
            "per_label": self.per_label,
            "per_transform": self.per_transform,
            "latency_ms": self.latency_ms,
        }


def evaluate(
    screen: PromptScreen,
    unsafe: list[str],
    benign: list[str],
    *,
    unsafe_labels: list[str] | None = None,
    batch_size: int = 256,
    progress=None,
    single_sample: int = 50,
) -> EvalReport:
    """Screen both sets (batched) and compute the metrics. ``unsafe_labels`` (e.g. I2P's
    comma-separated categories) gives a TPR per label."""

    def run(prompts: list[str]) -> tuple[list[ScreenResult], float]:
        out: list[ScreenResult] = []
        t0 = time.perf_counter()
        for s in range(0, len(prompts), batch_size):
            out.extend(screen.screen_batch(prompts[s : s + batch_size]))
            if progress is not None:
                progress(min(batch_size, len(prompts) - s))
        return out, (time.perf_counter() - t0) * 1000

    u_res, u_ms = run(unsafe)
    b_res, b_ms = run(benign)
    rep = EvalReport(
        policy=screen.policy.name,
        policy_sha256=screen.policy.sha256,
        unsafe=_rates(u_res),
        benign=_rates(b_res),
        auroc=auroc([risk_score(r) for r in u_res], [risk_score(r) for r in b_res]),
    )
    # which category caught the unsafe prompts (and falsely flagged the benign ones)
    for name, res in (("unsafe", u_res), ("benign", b_res)):
        for r in res:
            if r.decision != "allow" and r.category:
                d = rep.per_category.setdefault(
                    r.category, {"unsafe_block": 0, "unsafe_escalate": 0, "benign_block": 0, "benign_escalate": 0}
                )
                d[f"{name}_{r.decision}"] += 1
    if unsafe_labels is not None:
        by: dict[str, list[ScreenResult]] = {}
        for r, lab in zip(u_res, unsafe_labels):
            for part in (lab or "").split(","):
                part = part.strip()
                if part:
                    by.setdefault(part, []).append(r)
        rep.per_label = {k: _rates(v) for k, v in sorted(by.items())}
    tr_u: dict[str, list[ScreenResult]] = {}
    tr_b: dict[str, list[ScreenResult]] = {}
    for res, into in ((u_res, tr_u), (b_res, tr_b)):
        for r in res:
            for t in set(r.transforms):
                into.setdefault(t, []).append(r)
    for t in sorted(set(tr_u) | set(tr_b)):
        rep.per_transform[t] = {"unsafe": _rates(tr_u.get(t, [])), "benign": _rates(tr_b.get(t, []))}
    # latency: batched throughput, and one-prompt-at-a-time calls on a sample
    n_all = len(unsafe) + len(benign)
    sample = unsafe[: single_sample // 2] + benign[: single_sample // 2]
    singles = []
    for p in sample:
        t0 = time.perf_counter()
        screen.screen(p)
        singles.append((time.perf_counter() - t0) * 1000)
    rep.latency_ms = {
        "batched_mean": (u_ms + b_ms) / max(1, n_all),
        "single_mean": float(np.mean(singles)) if singles else 0.0,
        "single_p50": float(np.percentile(singles, 50)) if singles else 0.0,
        "single_p95": float(np.percentile(singles, 95)) if singles else 0.0,
    }
    return rep
