"""Zero-shot CLIP classifier for a policy's own concepts (a character, an artist's style, ...).

The concept phrases and the neutral phrases are embedded once, when the classifier is built. Per
image, the cosine between its CLIP embedding and every phrase is computed; then

* ``mode="softmax"``: a softmax over all phrases (concepts and neutral) at the model's logit scale;
  a label's score is the summed probability of its own phrases;
* ``mode="cosine"``: a label's score is its best phrase's raw cosine.

Any ``transformers`` ``CLIPModel`` directory (with its tokenizer) works; preprocessing is CLIP's,
done in PIL + numpy (:mod:`guard.output.clip_preprocess`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

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
from guard.output.config import ClassifierConfig, OutputAction

_LABEL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

logger = logging.getLogger(__name__)

_MODELS: dict[tuple, tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()


class ClipZeroShotConfig(ClassifierConfig):
    """Zero-shot CLIP classifier for the policy's own concepts (a character, an artist's style...):
    each image against every concept phrase and every neutral phrase."""

    type: Literal["clip_zero_shot"] = Field(default="clip_zero_shot", description="classifier kind")
    model_path: str = Field(description="directory (or hub id) of a transformers CLIPModel with its tokenizer")
    concepts: dict[str, list[str]] = Field(min_length=1, description="label -> phrases describing it")
    neutral: list[str] = Field(
        default_factory=lambda: [
            "a photo",
            "a picture of an everyday scene",
            "a painting",
            "a landscape",
            "a portrait of a person",
            "an object",
        ],
        min_length=1,
        description="phrases for everything else (softmax mode competes against them)",
    )
    mode: Literal["softmax", "cosine"] = Field(
        default="softmax",
        description="softmax: a label's probability over all phrases (its own summed); cosine: its best raw cosine",
    )
    threshold: float | None = Field(
        default=None, description="threshold of labels not in `thresholds`; default 0.5 (softmax) or 0.25 (cosine)"
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="label -> threshold (default `threshold`)")
    logit_scale: float | None = Field(
        default=None, gt=0.0, le=1000.0, description="softmax temperature; default the model's own"
    )
    action: OutputAction = Field(default="blank", description="old list syntax only: what a flag does")
    device: str = Field(default="auto", description="torch device; auto = cuda when available, else cpu")

    @field_validator("concepts")
    @classmethod
    def _check_concepts(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for label, phrases in v.items():
            if not _LABEL_RE.match(label):
                raise ValueError(f"concept label {label!r} must be letters, digits, '_', '.' or '-'")
            clean = [" ".join(str(p).split()) for p in phrases]
            if not clean or not all(clean):
                raise ValueError(f"concept {label!r} needs at least one non-empty phrase")
            out[label] = clean
        return out

    @field_validator("neutral")
    @classmethod
    def _check_neutral(cls, v: list[str]) -> list[str]:
        clean = [" ".join(str(p).split()) for p in v]
        if not all(clean):
            raise ValueError("neutral phrases must not be empty")
        return clean

    @model_validator(mode="after")
    def _check_thresholds(self) -> ClipZeroShotConfig:
        lo = 0.0 if self.mode == "softmax" else -1.0
        if self.threshold is None:
            self.threshold = 0.5 if self.mode == "softmax" else 0.25
        for label, t in [("threshold", self.threshold), *self.thresholds.items()]:
            if label != "threshold" and label not in self.concepts:
                raise ValueError(f"thresholds: {label!r} is not one of the concepts ({', '.join(self.concepts)})")
            if not lo <= float(t) <= 1.0:
                raise ValueError(f"threshold for {label} must be within [{lo:g}, 1] in {self.mode} mode, got {t}")
        return self

    def threshold_for(self, label: str) -> float:
        return float(self.thresholds.get(label, self.threshold))

    def labels(self) -> tuple[str, ...]:
        return tuple(self.concepts)

    def check_thresholds(self, thresholds: dict[str, Any]) -> None:
        from guard.output.config import check_label_thresholds

        lo = 0.0 if self.mode == "softmax" else -1.0
        check_label_thresholds(thresholds, self.labels(), self.type, lo, 1.0)

    def legacy_thresholds(self) -> dict[str, float]:
        return {label: self.threshold_for(label) for label in self.concepts}


def load_clip(model_path: str, device: str = "cpu") -> tuple[Any, Any]:
    """(CLIPModel, tokenizer) from a directory (or hub id when reachable), shared per (path, device)."""
    key = (str(model_path), device)
    with _MODELS_LOCK:
        if key in _MODELS:
            return _MODELS[key]
        from transformers import AutoTokenizer, CLIPModel

        local = Path(model_path).expanduser()
        src = str(local) if local.exists() else str(model_path)
        try:
            model = CLIPModel.from_pretrained(src).to(device).eval()
        except Exception as exc:
            raise ModelLoadError(
                f"clip_zero_shot: cannot load a CLIPModel from {model_path!r}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(src)
        except Exception as exc:
            raise ModelLoadError(
                f"clip_zero_shot: no usable tokenizer beside the model in {model_path!r}: {type(exc).__name__}: {exc}"
            ) from exc
        _MODELS[key] = (model, tokenizer)
        return model, tokenizer


class ClipZeroShotClassifier(ImageClassifier):
    """Scores one label per policy concept (softmax probability or best cosine)."""

    name = "clip_zero_shot"

    @classmethod
    def from_config(cls, cfg: ClipZeroShotConfig) -> ClipZeroShotClassifier:
        return cls(
            cfg.model_path,
            concepts=cfg.concepts,
            neutral=cfg.neutral,
            mode=cfg.mode,
            logit_scale=cfg.logit_scale,
            device=cfg.device,
        )

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        concepts: Mapping[str, Sequence[str]],
        neutral: Sequence[str] = ("a photo",),
        mode: str = "softmax",
        logit_scale: float | None = None,
        device: str = "auto",
        batch_size: int = 16,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if mode not in ("softmax", "cosine"):
            raise GuardInputError(f"clip_zero_shot: mode must be 'softmax' or 'cosine', got {mode!r}")
        if not concepts or any(not list(p) for p in concepts.values()):
            raise GuardInputError("clip_zero_shot: every concept needs at least one phrase")
        if not list(neutral):
            raise GuardInputError("clip_zero_shot: give at least one neutral phrase")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GuardInputError(f"clip_zero_shot: batch_size must be a positive integer, got {batch_size!r}")
        self.device = resolve_device(device)
        model_dir = None
        if model is None:
            if model_path is None:
                raise GuardInputError("clip_zero_shot: give model_path or model and tokenizer")
            model, tokenizer = load_clip(os.fspath(model_path), self.device)
            model_dir = Path(os.fspath(model_path)).expanduser()
            model_dir = model_dir if model_dir.is_dir() else None
        elif tokenizer is None:
            raise GuardInputError("clip_zero_shot: a model given directly needs its tokenizer too")
        self.model, self.tokenizer = model, tokenizer
        self.mode = mode
        self.batch_size = batch_size
        self.labels = tuple(concepts)
        phrases: list[str] = []
        owner: list[int] = []
        for k, label in enumerate(self.labels):
            for p in concepts[label]:
                phrases.append(str(p))
                owner.append(k)
        for p in neutral:
            phrases.append(str(p))
            owner.append(len(self.labels))  # the neutral "label"
        self.phrases = phrases
        self._owner = np.asarray(owner)
        self._text = self._embed_text(phrases)  # (P, D) unit vectors, float32
        if logit_scale is None:
            logit_scale = float(min(100.0, float(model.logit_scale.detach().exp().cpu())))
        self.logit_scale = float(logit_scale)
        self.preprocess = ClipPreprocess.for_model(int(model.config.vision_config.image_size), model_dir)
        logger.info(
            "clip_zero_shot: %d labels, %d phrases, %s mode, on %s", len(self.labels), len(phrases), mode, self.device
        )

    # ---------------------------------------------------------------------------------------

    def _embed_text(self, phrases: list[str]) -> np.ndarray:
        import torch

        m = self.model
        max_len = int(getattr(m.config.text_config, "max_position_embeddings", 77))
        enc = self.tokenizer(phrases, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.inference_mode():
            out = m.text_model(
                input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
            )
            feats = m.text_projection(out[1]).float()
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats.cpu().numpy()

    def embed_images(self, pixel_values: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) normalised pixels -> (N, D) unit vectors, float32."""
        import torch

        m = self.model
        dtype = next(m.parameters()).dtype
        with torch.inference_mode():
            out = m.vision_model(pixel_values=torch.from_numpy(pixel_values).to(self.device, dtype))
            feats = torch.nn.functional.normalize(m.visual_projection(out[1]).float(), dim=-1)
        return feats.cpu().numpy()

    def score_embeddings(self, image_embeds: np.ndarray) -> list[dict[str, float]]:
        cos = image_embeds @ self._text.T  # (N, P)
        n_labels = len(self.labels)
        out = []
        for row in cos:
            if self.mode == "softmax":
                z = self.logit_scale * row.astype(np.float64)
                p = np.exp(z - z.max())
                p /= p.sum()
                per = np.bincount(self._owner, weights=p, minlength=n_labels + 1)[:n_labels]
            else:
                per = np.full(n_labels, -1.0)
                np.maximum.at(per, self._owner[self._owner < n_labels], row[self._owner < n_labels])
            out.append({label: float(v) for label, v in zip(self.labels, per)})
        return out

    def classify(self, images: Sequence[Any]) -> list[ClassifierOutput]:
        items = as_image_list(images, self.name)
        pixels = [self.preprocess(to_rgb_uint8(img, where=f"image {i}")) for i, img in enumerate(items)]
        results: list[ClassifierOutput] = []
        for start in range(0, len(pixels), self.batch_size):
            emb = self.embed_images(np.stack(pixels[start : start + self.batch_size]))
            results.extend(ClassifierOutput(scores=s) for s in self.score_embeddings(emb))
        return results


#: the registry's names for this module (see guard.output.registry)
Config = ClipZeroShotConfig
Classifier = ClipZeroShotClassifier
