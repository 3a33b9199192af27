"""The base of every image classifier's policy settings, and the label-threshold checks they share.

A classifier module (see :mod:`guard.output.registry`) defines a ``Config`` subclass of
:class:`ClassifierConfig`: its ``type`` literal, its model settings, and which labels it scores.
The output check's per-category rules (``output.categories``) name labels of these classifiers with
thresholds; :meth:`ClassifierConfig.check_thresholds` validates them with a did-you-mean.

This module imports only pydantic: policy validation must not load onnxruntime, torch or a model.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

#: what the output check may do to a flagged image (``blank`` is the historical spelling of ``black``)
OutputAction = Literal["blank", "black", "placeholder", "pixelate", "blur", "pixelate_boxes", "blur_boxes", "flag"]

#: the ONNX classifiers' CPU settings (see guard.output.base.OnnxRunner)
THREADS_HELP = "CPU: onnxruntime threads for a call with fewer images than streams (default: one per core)"
STREAMS_HELP = (
    "CPU: images run at once, one single-threaded run each, when a call has at least this many "
    "(default: the usable cores; 1: off)"
)

#: settings that only change how scores are judged (legacy syntax), not the classifier instance
JUDGING_KEYS = frozenset({"thresholds", "threshold", "action", "flag_only", "missing"})


def check_label_thresholds(v: dict, labels, kind: str, lo: float, hi: float) -> None:
    """Every key a known label of the classifier (with a did-you-mean), every value a number within
    [lo, hi] (a boolean is refused: YAML's ``true`` is not a threshold)."""
    for label, t in v.items():
        if label not in labels:
            close = difflib.get_close_matches(str(label), [str(x) for x in labels], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {kind} label {label!r}{hint}; known: {', '.join(labels)}")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(float(t)):
            raise ValueError(f"threshold for {label} must be a number, got {t!r}")
        if not lo <= float(t) <= hi:
            raise ValueError(f"threshold for {label} must be within [{lo:g}, {hi:g}], got {t}")


class ClassifierConfig(BaseModel):
    """Settings shared by every classifier.

    ``missing``: what happens when the classifier's model (or the package that ships it) is not
    installed: ``error`` (default) makes the output check fail, which blocks the request unless the
    policy is ``fail_open``; ``skip`` leaves the classifier out, logs a warning and names it in every
    verdict's ``skipped`` list, so a policy can ask for an optional model without breaking installs
    that lack it.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)

    type: str
    missing: Literal["error", "skip"] = Field(
        default="error",
        description="model not installed: error (the check fails closed) or skip (left out, with a warning)",
    )

    #: range a label threshold may take, and whether a label flags when its score is strictly above
    #: the threshold (``>``) rather than at or above it (``>=``)
    threshold_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    strictly_above: ClassVar[bool] = False
    #: the labels of this classifier, for checking policy thresholds
    label_set: ClassVar[tuple[str, ...]] = ()

    def labels(self) -> tuple[str, ...]:
        """Every label this configuration scores (a zero-shot classifier's depend on its settings)."""
        return self.label_set

    def legacy_thresholds(self) -> dict[str, float]:
        """Label thresholds of the old ``output.classifiers`` list syntax (``thresholds`` on the entry)."""
        return dict(getattr(self, "thresholds", {}) or {})

    def check_thresholds(self, thresholds: dict[str, Any]) -> None:
        lo, hi = self.threshold_range
        check_label_thresholds(thresholds, self.labels(), self.type, lo, hi)

    def hit(self, score: float, threshold: float) -> bool:
        return score > threshold if self.strictly_above else score >= threshold

    def instance_key(self) -> tuple[str, str]:
        """Configurations with equal keys share one loaded model."""
        data = self.model_dump(mode="json", exclude=set(JUDGING_KEYS))
        return (self.type, json.dumps(data, sort_keys=True))
