"""RECE: Reliable and Efficient Concept Erasure (Gong et al., 2024), closed form on top of UCE.

Start from a UCE edit; then, for each epoch, find in closed form the embedding that still makes the
edited model produce the concept's keys and values,

    c' = (Σ_l W'_lᵀ W'_l + λ_c I)⁻¹ Σ_l W'_lᵀ W_l c        (sums over the edited layers)

and edit again (anchored at the current weights) so that c' — and the original concept rows — map to the
guide, while the preserved concepts keep their original projections (the regulariser ``s_p Σ (W p) pᵀ``).

With ``W'_l = W_l K`` (see :mod:`guard.erase.uce`) every quantity is d×d:
``Σ W'ᵀW' = Kᵀ Q K`` and ``Σ W'ᵀ W = Kᵀ Q`` with ``Q = Σ_l W_lᵀ W_l``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from guard.erase.methods import EraseJob, EraserMethod, MethodResult
from guard.erase.params import Param
from guard.erase.uce import (
    _UCE_PARAMS,
    FactorEdit,
    LowRank,
    _default_preserve_scale,
    check_dims,
    concept_rows,
    cross_attention_projections,
    factor_edit,
    gram_of,
    uce_factors,
)

__all__ = ["RECE", "gram", "rece_edit", "rece_factors", "regenerating_embedding", "regeneration_error"]


def gram(projections: dict[str, nn.Linear]) -> torch.Tensor:
    """``Q = Σ_l W_lᵀ W_l`` over the given layers, returned as float64 (d×d).

    One product over the stacked weights, taken in float32 (float64 for float64 models): ``Q`` only
    weights the regenerating-embedding least squares, whose ridge term ``λ_c I`` keeps it well
    conditioned, and this is by far the largest product RECE needs (Σ out × d × d)."""
    Ws = [m.weight.detach().cpu() for m in projections.values()]
    dt = torch.float64 if any(w.dtype == torch.float64 for w in Ws) else torch.float32
    W = torch.cat([w.to(dt) for w in Ws])
    return (W.T @ W).to(torch.float64)


def regenerating_embedding(K: torch.Tensor, Q: torch.Tensor, C: torch.Tensor, lamb: float) -> torch.Tensor:
    """Rows ``c'`` (n×d) minimising ``Σ_l ‖W_l K c' − W_l c‖² + λ‖c'‖²`` for each row ``c`` of ``C``."""
    d = K.shape[0]
    A = K.T @ Q @ K + lamb * torch.eye(d, dtype=torch.float64)
    B = K.T @ Q @ C.T
    return torch.linalg.solve(A, B).T


def regeneration_error(K: torch.Tensor, Q: torch.Tensor, C_new: torch.Tensor, C: torch.Tensor) -> float:
    """``Σ_l ‖W'_l c' − W_l c‖² / Σ_l ‖W_l c‖²``: how far the best embedding is from reproducing the
    concept's original keys/values in the edited model (0 = reproduces it exactly)."""
    D = K @ C_new.T - C.T
    num = torch.trace(D.T @ Q @ D)
    den = torch.trace(C @ Q @ C.T)
    return float(num / den)


def rece_factors(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    preserve: Sequence[torch.Tensor],
    Q: torch.Tensor,
    *,
    epochs: int,
    lamb: float,
    erase_scale: float,
    preserve_scale: float,
    embedding_lamb: float,
    progress: bool = False,
) -> tuple[LowRank, list[float]]:
    """UCE then ``epochs`` RECE rounds on token rows; returns the edit and each epoch's regeneration error."""
    S = gram_of(preserve, pairs[0][0].shape[1])  # once, not every epoch
    kw = dict(lamb=lamb, erase_scale=erase_scale, preserve_scale=preserve_scale, preserve_gram=S)
    lr: LowRank = uce_factors(pairs, preserve, **kw)
    C_all = torch.cat([c for c, _ in pairs]).to(torch.float64)
    sizes = [int(c.shape[0]) for c, _ in pairs]
    errors: list[float] = []
    from tqdm import tqdm

    for _ in tqdm(range(epochs), desc="RECE", unit="epoch", disable=not progress):
        K = lr.K()
        adv_all = regenerating_embedding(K, Q, C_all, embedding_lamb)  # one solve for every concept
        adv = [(a, g) for a, (_, g) in zip(torch.split(adv_all, sizes), pairs)]
        errors.append(regeneration_error(K, Q, adv_all, C_all))
        lr = uce_factors(list(pairs) + adv, preserve, base=lr, **kw)
    return lr, errors


def rece_edit(
    unet: nn.Module,
    encoders: Sequence[tuple[Any, Any]],
    concepts: Sequence[str],
    guides: Sequence[str],
    preserve: Sequence[str] = (),
    *,
    epochs: int = 3,
    lamb: float = 0.1,
    erase_scale: float = 1.0,
    preserve_scale: float | None = None,
    embedding_lamb: float = 1e-3,
    with_to_k: bool = True,
    hidden_state: str = "last",
    progress: bool = False,
) -> tuple[FactorEdit, dict[str, Any]]:
    """UCE followed by ``epochs`` RECE rounds; the UNet is not modified.

    The returned hyperparameters include ``regeneration_error``: for each epoch, how far that epoch's
    regenerating embedding is from reproducing the concepts (it grows as the erasure hardens).
    """
    projections = cross_attention_projections(unet, with_to_k=with_to_k)
    pairs, pres = concept_rows(encoders, concepts, guides, preserve, hidden_state)
    check_dims(projections, pairs[0][0].shape[1])
    s_p = _default_preserve_scale(preserve_scale, len(preserve))
    lr, errors = rece_factors(
        pairs,
        pres,
        gram(projections),
        epochs=epochs,
        lamb=lamb,
        erase_scale=erase_scale,
        preserve_scale=s_p,
        embedding_lamb=embedding_lamb,
        progress=progress,
    )
    hyper = {
        "lamb": lamb,
        "erase_scale": erase_scale,
        "preserve_scale": s_p,
        "epochs": epochs,
        "embedding_lamb": embedding_lamb,
        "with_to_k": with_to_k,
        "hidden_state": hidden_state,
        "token_selection": "last subject token through end/padding",
        "rank": lr.rank,
        "layers": len(projections),
        "regeneration_error": errors,
    }
    return factor_edit(projections, lr), hyper


class ReceMethod(EraserMethod):
    """RECE: UCE, then ``epochs`` rounds against the embedding that regenerates the concept (seconds)."""

    name = "rece"
    params = {
        **_UCE_PARAMS,
        "epochs": Param(3, "RECE rounds", lo=1, integer=True),
        "embedding_lamb": Param(1e-3, "λ of the regenerating-embedding solve", lo=0, lo_open=True),
    }

    def run(self, job: EraseJob) -> MethodResult:
        fe, hyper = rece_edit(
            job.unet,
            job.encoders,
            job.concepts,
            job.guides,
            job.preserve,
            hidden_state=job.hidden_state,
            progress=job.progress,
            **job.params,
        )
        return MethodResult(hyper, factor=fe)


RECE = ReceMethod()
