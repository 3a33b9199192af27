"""Negative guidance (ACE / SLD) in the denoising loop of every guarded pipeline.

``prepare(pipe, policy, ...)`` builds the per-call :class:`GuidanceState` (concept embeddings from the
pipeline's own text encoder(s), which images get guidance); ``guidance_active(state)`` makes it live
for the UNet hooks installed by :func:`install`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from guard.guidance.hooks import GuidanceState, active_state, guidance_active, install, installed, uninstall
from guard.policy.models import Policy

EDITING_KINDS = ("img2img", "inpaint", "pix2pix", "sdxl-img2img")

__all__ = [
    "GuidanceState",
    "active_state",
    "concept_texts",
    "guidance_active",
    "install",
    "installed",
    "prepare",
    "rows_to_guide",
    "uninstall",
]


def concept_texts(policy: Policy) -> list[str]:
    """The texts to steer away from: concept ids of the policy become their first phrases (up to
    three, comma-joined), anything else is taken as a phrase."""
    by_id = {c.id: c for c in policy.concepts}
    out = []
    for ref in policy.guidance.concepts:
        c = by_id.get(ref)
        out.append(", ".join(c.phrases[:3]) if c is not None else ref)
    return out


def rows_to_guide(policy: Policy, kind: str, prompt_escalated: Sequence[bool], nipp: int) -> list[bool]:
    """Per generated image (prompt-major): whether guidance applies, by ``guidance.apply``."""
    g = policy.guidance
    editing = kind in EDITING_KINDS
    rows = []
    for esc in prompt_escalated:
        if g.apply == "always":
            on = True
        elif g.apply == "editing":
            on = editing
        elif g.apply == "escalated":
            on = esc
        else:  # auto
            on = editing or esc
        rows.extend([on] * nipp)
    return rows


def _encode(pipe, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(embeds (k, L, D), pooled (k, P) or None) of ``texts`` with the pipeline's text encoder(s)."""
    cache = pipe.__dict__.setdefault("_guard_concept_cache", {})
    key = (tuple(texts), id(getattr(pipe, "text_encoder", None)), id(getattr(pipe, "text_encoder_2", None)))
    if key in cache:
        return cache[key]
    from guard.textenc import encode_conditioning  # the pipeline's own encode_prompt (TI, SDXL layout)

    result = encode_conditioning(pipe, list(texts))
    cache.clear() if len(cache) > 16 else None
    cache[key] = result
    return result


def prepare(pipe: Any, policy: Policy, kind: str, rows: list[bool], params: dict) -> GuidanceState | None:
    """The guidance state for one call, or None when nothing is to be guided."""
    g = policy.guidance
    texts = concept_texts(policy)
    if not g.enabled or not texts or not any(rows):
        return None
    if g.branch_per_concept:
        embeds, pooled = _encode(pipe, texts)
    else:
        embeds, pooled = _encode(pipe, [", ".join(texts)])
    gs = params.get("guidance_scale")
    if kind == "pix2pix":
        igs = params.get("image_guidance_scale")
        cfg = (gs if gs is not None else 7.5) > 1.0 and (igs if igs is not None else 1.5) >= 1.0
        layout = "pix2pix" if cfg else "single"
    else:
        cfg = (gs if gs is not None else (5.0 if kind.startswith("sdxl") else 7.5)) > 1.0 and getattr(
            pipe.unet.config, "time_cond_proj_dim", None
        ) is None
        layout = "cfg" if cfg else "single"
    uncond, uncond_pooled = (None, None)
    if layout == "single":
        uncond, uncond_pooled = _encode(pipe, [""])
    install(pipe.unet)
    return GuidanceState(
        unet=pipe.unet,
        mode=g.mode,
        layout=layout,
        concept_embeds=embeds,
        row_mask=torch.tensor(rows, dtype=torch.float32),
        eta_uncond=g.eta_uncond,
        eta_cond=g.eta_cond,
        warmup_steps=g.warmup_steps,
        uncond_embeds=uncond,
        concept_pooled=pooled,
        uncond_pooled=uncond_pooled,
        sld=g.sld.model_dump(),
        scheduler=pipe.scheduler,
    )
