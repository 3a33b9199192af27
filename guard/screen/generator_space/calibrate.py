"""Per-model thresholds for the generator-space screen, from benign prompts (``guard calibrate``).

calib = calibrate(pipeline_encoders(pipe), policy, benign_prompts)
save_calibration(calib, default_calibration_path(policy, calib["model_fingerprint"]))
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from guard.errors import GuardInputError
from guard.policy import PolicySource
from guard.screen.generator_space.calibration_io import CALIBRATION_FORMAT, CALIBRATION_VERSION, calibration_scope
from guard.screen.generator_space.fingerprint import model_fingerprint
from guard.screen.generator_space.screen import GeneratorSpaceScreen
from guard.textenc import Encoder, added_tokens

__all__ = ["calibrate"]


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def calibrate(
    encoders: Sequence[Encoder],
    policy: PolicySource,
    benign_prompts: Sequence[str],
    quantile: float = 0.999,
    margin: float = 0.0,
    *,
    batch_size: int = 32,
) -> dict:
    """Per-concept thresholds from benign prompts: the ``quantile`` of their best cosine to each
    concept, plus ``margin``, at most 1. Returns the calibration dict (see
    :func:`~.calibration_io.save_calibration`); empty prompts are left out of the count."""
    from guard import __version__

    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.0 < quantile <= 1.0:
        raise GuardInputError(f"quantile must be within (0, 1], got {quantile!r}")
    if (
        isinstance(margin, bool)
        or not isinstance(margin, (int, float))
        or not math.isfinite(margin)
        or abs(margin) >= 2.0
    ):
        raise GuardInputError(f"margin must be a small finite number, got {margin!r}")
    screen = GeneratorSpaceScreen(encoders, policy, batch_size=batch_size)
    prompts = [p for p in screen.check_prompts(benign_prompts) if screen.views(p)]
    if not prompts:
        raise GuardInputError("no benign prompts to calibrate on (all were empty)")
    scores = screen.score(prompts)
    thresholds: dict[str, float] = {}
    concepts: dict[str, dict[str, Any]] = {}
    for ci, c in enumerate(screen.concepts):
        col = scores[:, ci].astype(np.float64)
        q = float(np.quantile(col, quantile))
        t = min(1.0, q + float(margin))
        thresholds[c.id] = t
        concepts[c.id] = {
            "category": c.category,
            "phrases_sha256": screen.concept_phrase_sha[c.id],
            "benign_quantile": q,
            "benign_max": float(col.max()),
            "benign_mean": float(col.mean()),
            "n_above": int((col >= t).sum()),
        }
    return {
        "format": CALIBRATION_FORMAT,
        "version": CALIBRATION_VERSION,
        "model_fingerprint": screen.fingerprint,
        "encoders": [
            {
                "class": type(te).__name__,
                "fingerprint": model_fingerprint(te, tok),
                "loaded_tokens": len(added_tokens(tok)),
            }
            for te, tok in screen.encoders
        ],
        "policy": {"name": screen.policy.name},
        "scope": calibration_scope(screen.policy, screen.concept_phrase_sha),
        "n_benign": len(prompts),
        "quantile": float(quantile),
        "margin": float(margin),
        "created": _utc_now(),
        "guard_version": __version__,
        "thresholds": thresholds,
        "concepts": concepts,
    }
