"""``erase(pipe, concepts, method=...)``: run a registered eraser method and package its edit as an artifact."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from guard.erase.artifact import Erasure, build_erasure
from guard.erase.methods import EraseJob, get_method
from guard.erase.params import check_params, str_list
from guard.erase.weights import apply_erasure, unet_of
from guard.errors import GuardInputError
from guard.textenc import pipeline_encoders, resolve_hidden_state

__all__ = ["erase"]


def erase(
    pipe: Any,
    concepts: Sequence[str] | str,
    *,
    method: str = "uce",
    guides: Sequence[str] | str | None = None,
    preserve: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    apply: bool = False,
    hidden_state: str = "auto",
    progress: bool = False,
    model_id: str | None = None,
    **hyperparameters: Any,
) -> Erasure:
    """Erase ``concepts`` from ``pipe``'s UNet and return the :class:`~guard.erase.artifact.Erasure`
    (written to ``out`` when given). The pipeline is NOT changed unless ``apply=True`` (then it is
    applied like :func:`~guard.erase.weights.apply_erasure`, and revertible).

    ``method``: ``uce`` | ``rece`` (closed form, cross-attention K/V, seconds) | ``esd-x`` | ``esd-u``
    (fine-tuning), or any method in :data:`guard.erase.methods.REGISTRY`. ``guides``: one guide for all
    concepts, or one per concept (default the empty prompt). ``preserve``: concepts to keep.
    ``hyperparameters``: the method's own (``params`` of its class), e.g. UCE/RECE ``lamb`` (λ),
    ``erase_scale`` (s_e), ``preserve_scale`` (s_p), RECE ``epochs``, ESD ``iterations``, ``lr``,
    ``eta``, ``seed``, ``checkpoint``. Everything is checked before anything is computed.
    """
    t0 = time.perf_counter()
    m = get_method(method)
    concepts_l = str_list(concepts, "concepts", allow_empty=False)
    for i, c in enumerate(concepts_l):
        if not c:
            raise GuardInputError(f"concepts[{i}] is empty")
    guides_l = str_list(guides, "guides")
    if not guides_l:
        guides_l = [""] * len(concepts_l)
    elif len(guides_l) == 1:
        guides_l = guides_l * len(concepts_l)
    elif len(guides_l) != len(concepts_l):
        raise GuardInputError(
            f"give one guide for all concepts or one per concept: {len(guides_l)} guides for {len(concepts_l)} concepts"
        )
    job = EraseJob(
        pipe=pipe,
        unet=unet_of(pipe),
        encoders=pipeline_encoders(pipe),
        concepts=concepts_l,
        guides=guides_l,
        preserve=str_list(preserve, "preserve"),
        hidden_state=resolve_hidden_state(pipe, hidden_state),
        params=check_params(m.name, m.params, hyperparameters),
        progress=progress,
    )
    m.check(job)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise GuardInputError(f"out must be a path, got {type(out).__name__}")

    originals = _ParamView(job.unet)  # the pipeline is not modified while erasing: these are the originals
    result = m.run(job)
    meta: dict[str, Any] = {
        "concepts": concepts_l,
        "guides": guides_l,
        "preserved": job.preserve,
        "model": model_id or _model_id(pipe),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hyperparameters": result.hyperparameters,
        "elapsed_s": round(time.perf_counter() - t0, 4),
    }
    e = build_erasure(m.name, originals, factor=result.factor, full_new=result.full, meta=meta)
    if out is not None:
        e.save(out)
    if apply:
        apply_erasure(pipe, e)
    return e


class _ParamView(dict):
    """``{name: CPU value}`` of a module's parameters, read on demand (no copy of the whole UNet)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self._params = dict(module.named_parameters())

    def __missing__(self, name: str) -> torch.Tensor:
        v = self._params[name].detach().cpu()
        self[name] = v
        return v


def _model_id(pipe: Any) -> str | None:
    cfg = getattr(pipe, "config", None)
    try:
        v = cfg.get("_name_or_path") if cfg is not None else None
    except Exception:  # noqa: BLE001 - a config without .get: no model id
        v = None
    return str(v) if v else None
