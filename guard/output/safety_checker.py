"""diffusers' ``StableDiffusionSafetyChecker`` behind the :class:`ImageClassifier` interface.

The checker embeds an image with CLIP's vision tower and compares it (cosine) with 17 concept
embeddings and 3 "special care" embeddings, each with its own threshold (``concept_embeds_weights``,
``special_care_embeds_weights``). Per image, exactly as ``StableDiffusionSafetyChecker.forward``:

* ``special_<i> = round(cos - (threshold + sensitivity) + adj, 3)``, ``adj`` starting at 0 and
  becoming 0.01 once a special-care score is above 0;
* ``nsfw_concept_<i> = round(cos - (threshold + sensitivity) + adj, 3)``;
* the checker's own rule flags an image when any ``nsfw_concept_<i>`` is above 0.

``sensitivity`` is the policy's offset on every threshold: negative is stricter (0 gives exactly
diffusers' result). Preprocessing is CLIP's (see :mod:`guard.output.clip_preprocess`), done here in
PIL + numpy, so neither torchvision nor a ``feature_extractor`` object is needed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from guard.errors import GuardInputError
from guard.output.base import (
    ClassifierOutput,
    ImageClassifier,
    ModelLoadError,
    as_image_list,
    resolve_device,
    to_rgb_uint8,
)
from guard.output.clip_preprocess import ClipPreprocess
from guard.output.config import ClassifierConfig, OutputAction, check_label_thresholds
from guard.output.labels import SAFETY_CHECKER_CONCEPT_LABELS, SAFETY_CHECKER_LABELS, SAFETY_CHECKER_SPECIAL_LABELS

logger = logging.getLogger(__name__)


class SafetyCheckerConfig(ClassifierConfig):
    """diffusers' ``StableDiffusionSafetyChecker`` (CLIP ViT-L/14 + 17 concept and 3 special-care
    embeddings). A label's score is the checker's margin ``cosine - (threshold + sensitivity)``;
    a concept flags when its margin is above the policy threshold (default 0, the checker's rule)."""

    type: Literal["safety_checker"] = Field(default="safety_checker", description="classifier kind")
    model_path: str = Field(
        default="CompVis/stable-diffusion-safety-checker",
        description="local directory or hub id (the hub is used only when reachable)",
    )
    subfolder: str | None = Field(default=None, description="e.g. 'safety_checker' inside a pipeline folder")
    sensitivity: float = Field(
        default=0.0,
        ge=-1.0,
        le=1.0,
        description="offset added to every concept threshold of the checker: negative = stricter",
    )
    flag_only: bool = Field(default=False, description="report, never alter the image (same as action: flag)")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="per-label margin thresholds (nsfw_concept_<i>, special_<i>); concepts not named use 0, "
        "special-care labels flag only when named",
    )
    action: OutputAction = Field(default="blank", description="old list syntax only: what a flag does")
    device: str = Field(default="auto", description="torch device; auto = cuda when available, else cpu")

    threshold_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    strictly_above: ClassVar[bool] = True  # margins, strictly above, as the checker itself decides
    label_set: ClassVar[tuple[str, ...]] = SAFETY_CHECKER_LABELS

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        check_label_thresholds(v, SAFETY_CHECKER_LABELS, "safety-checker", -1.0, 1.0)
        return v

    @model_validator(mode="after")
    def _flag_only(self) -> SafetyCheckerConfig:
        if self.flag_only:
            if "action" in self.model_fields_set and self.action != "flag":
                raise ValueError(f"flag_only: true contradicts action: {self.action}")
            self.action = "flag"
        return self

    def legacy_thresholds(self) -> dict[str, float]:
        wanted = dict.fromkeys(SAFETY_CHECKER_CONCEPT_LABELS, 0.0)
        wanted.update(self.thresholds)
        return wanted


_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def load_safety_checker(model_path: str, subfolder: str | None = None, device: str = "cpu") -> Any:
    """``StableDiffusionSafetyChecker.from_pretrained`` (local directory, or a hub id when the hub is
    reachable), shared per (path, subfolder, device). Failures raise :class:`ModelLoadError`."""
    key = (str(model_path), subfolder, device)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        try:
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        except ImportError as exc:  # pragma: no cover - diffusers is a dependency
            raise ModelLoadError(f"safety_checker: diffusers is not importable: {exc}") from exc
        local = Path(model_path).expanduser()
        kwargs = {"subfolder": subfolder} if subfolder else {}
        try:
            model = StableDiffusionSafetyChecker.from_pretrained(
                str(local) if local.exists() else str(model_path), **kwargs
            )
        except Exception as exc:
            where = "local directory" if local.exists() else "hub id (no such local directory)"
            raise ModelLoadError(
                f"safety_checker: cannot load {model_path!r}"
                + (f" (subfolder {subfolder!r})" if subfolder else "")
                + f" as a {where}: {type(exc).__name__}: {exc}"
            ) from exc
        model = model.to(device).eval()
        _MODELS[key] = model
        return model


class SafetyCheckerClassifier(ImageClassifier):
    """Scores: ``nsfw_concept_0..16`` and ``special_0..2`` margins (> 0 = over the threshold)."""

    name = "safety_checker"
    labels: tuple[str, ...] = SAFETY_CHECKER_CONCEPT_LABELS + SAFETY_CHECKER_SPECIAL_LABELS
    concept_labels = SAFETY_CHECKER_CONCEPT_LABELS
    special_labels = SAFETY_CHECKER_SPECIAL_LABELS

    @classmethod
    def from_config(cls, cfg: SafetyCheckerConfig) -> SafetyCheckerClassifier:
        return cls(cfg.model_path, subfolder=cfg.subfolder, sensitivity=cfg.sensitivity, device=cfg.device)

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        subfolder: str | None = None,
        sensitivity: float = 0.0,
        device: str = "auto",
        batch_size: int = 16,
        model: Any = None,
        model_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Give ``model_path`` (directory or hub id) or an already built ``model``."""
        if model is None and model_path is None:
            raise GuardInputError("safety_checker: give model_path or model")
        if not -1.0 <= float(sensitivity) <= 1.0:
            raise GuardInputError(f"safety_checker: sensitivity must be in [-1, 1], got {sensitivity!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GuardInputError(f"safety_checker: batch_size must be a positive integer, got {batch_size!r}")
        self.device = resolve_device(device)
        if model is None:
            model = load_safety_checker(os.fspath(model_path), subfolder, self.device)
            local = Path(os.fspath(model_path)).expanduser()
            if local.is_dir():
                model_dir = local / subfolder if subfolder else local
        self.model = model
        self.sensitivity = float(sensitivity)
        self.batch_size = batch_size
        n_concepts = int(model.concept_embeds.shape[0])
        n_special = int(model.special_care_embeds.shape[0])
        if (n_concepts, n_special) != (len(self.concept_labels), len(self.special_labels)):
            raise ModelLoadError(
                f"safety_checker: expected 17 concept and 3 special-care embeddings, got {n_concepts} and {n_special}"
            )
        image_size = int(model.config.vision_config.image_size)
        self.preprocess = ClipPreprocess.for_model(image_size, model_dir)
        logger.info(
            "safety_checker: %s on %s (sensitivity %+g)",
            model_path if model_path is not None else type(model).__name__,
            self.device,
            self.sensitivity,
        )

    # ---------------------------------------------------------------------------------------

    def embed_cosines(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, S, S) normalised pixels -> (special cosines (N, 3), concept cosines (N, 17)), float32."""
        import torch
        from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

        m = self.model
        dtype = next(m.parameters()).dtype
        with torch.inference_mode():
            x = torch.from_numpy(pixel_values).to(self.device, dtype)
            pooled = m.vision_model(x)[1]
            embeds = m.visual_projection(pooled)
            special = cosine_distance(embeds, m.special_care_embeds).cpu().float().numpy()
            concept = cosine_distance(embeds, m.concept_embeds).cpu().float().numpy()
        return special, concept

    def margins(self, special_cos: np.ndarray, concept_cos: np.ndarray) -> list[dict[str, float]]:
        """The checker's per-concept arithmetic (see the module doc), one dict per image."""
        m = self.model
        special_thr = [float(v) + self.sensitivity for v in m.special_care_embeds_weights.detach().cpu().tolist()]
        concept_thr = [float(v) + self.sensitivity for v in m.concept_embeds_weights.detach().cpu().tolist()]
        out = []
        for i in range(special_cos.shape[0]):
            scores: dict[str, float] = {}
            adjustment = 0.0
            special = {}
            for j, label in enumerate(self.special_labels):
                s = round(special_cos[i][j] - special_thr[j] + adjustment, 3)
                special[label] = float(s)
                if s > 0:
                    adjustment = 0.01
            for j, label in enumerate(self.concept_labels):
                scores[label] = float(round(concept_cos[i][j] - concept_thr[j] + adjustment, 3))
            scores.update(special)
            out.append(scores)
        return out

    def classify(self, images: Sequence[Any]) -> list[ClassifierOutput]:
        items = as_image_list(images, self.name)
        pixels = [self.preprocess(to_rgb_uint8(img, where=f"image {i}")) for i, img in enumerate(items)]
        results: list[ClassifierOutput] = []
        for start in range(0, len(pixels), self.batch_size):
            batch = np.stack(pixels[start : start + self.batch_size])
            special, concept = self.embed_cosines(batch)
            results.extend(ClassifierOutput(scores=s) for s in self.margins(special, concept))
        return results


#: the registry's names for this module (see guard.output.registry)
Config = SafetyCheckerConfig
Classifier = SafetyCheckerClassifier
