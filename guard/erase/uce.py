"""UCE: Unified Concept Editing (Gandikota et al., 2023), closed form on cross-attention K/V.

For every cross-attention key and value projection ``W`` (``attn2.to_k`` / ``attn2.to_v`` in diffusers
UNets) the edited weight is

    W' = (λ·W + s_e·Σ_i (W·g_i)·c_iᵀ + s_p·Σ_j (W·p_j)·p_jᵀ) · (λ·I + s_e·Σ_i c_i·c_iᵀ + s_p·Σ_j p_j·p_jᵀ)⁻¹

with ``c_i`` the text-encoder embeddings (token rows) of the concepts to erase, ``g_i`` those of their guides
and ``p_j`` those of the concepts to preserve. Because ``W`` factors out on the left,

    W' = W·K,   K = N·M⁻¹,   N = λI + s_e·Σ g_i c_iᵀ + s_p·Σ p_j p_jᵀ,   M = λI + s_e·Σ c_i c_iᵀ + s_p·Σ p_j p_jᵀ

so one d×d linear solve (``torch.linalg.solve`` on the transposed system, float64, no explicit inverse)
serves every layer (it is the issue's per-layer formula with ``W`` factored out; the tests check the two
agree), and the change is exactly low rank:

    W' − W = (W·L)·R,   L = s_e·[g − c]ᵀ (d×r),   R = C·M⁻¹ (r×d),   r = number of erased token rows

(the preservation terms cancel in ``N − M``). The solve is float64; the final per-layer products are taken
on the delta (``W + W·D``) in the weights' precision, so rounding is relative to the change. Token
selection follows the paper's code: the rows from the last subject token through the end of the padded
sequence (the end and padding tokens carry the concept), aligned with the guide's rows from its own last
token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from guard.erase.methods import EraseJob, EraserMethod, MethodResult
from guard.erase.params import Param
from guard.errors import GuardError
from guard.textenc import encode_hidden

#: module-name endings of the layers UCE/RECE edit
CROSS_ATTN_KV = (".attn2.to_k", ".attn2.to_v")

__all__ = [
    "UCE",
    "LowRank",
    "aligned_rows",
    "concept_rows",
    "cross_attention_projections",
    "uce_edit",
    "uce_factors",
]


# ------------------------------------------------------------------------------------ model access


def cross_attention_projections(unet: nn.Module, *, with_to_k: bool = True) -> dict[str, nn.Linear]:
    """``{module name: Linear}`` for every cross-attention key/value projection of ``unet``."""
    suffixes = CROSS_ATTN_KV if with_to_k else (".attn2.to_v",)
    found = {n: m for n, m in unet.named_modules() if n.endswith(suffixes) and isinstance(m, nn.Linear)}
    if not found:
        raise GuardError(
            f"{type(unet).__name__} has no cross-attention projections (modules ending in "
            f"{' or '.join(suffixes)}); UCE/RECE need a diffusers text-conditioned UNet"
        )
    return found


def aligned_rows(emb_a: torch.Tensor, len_a: int, emb_b: torch.Tensor, len_b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's token selection for a (concept, guide) pair: from each prompt's last subject token
    (``len - 2``) to the end of the sequence, trimmed so both have the same number of rows and row k
    of one lines up with row k of the other (last token with last token, end with end, ...)."""
    L = emb_a.shape[0]
    fa, fb = max(len_a - 2, 0), max(len_b - 2, 0)
    far = max(fa, fb)
    return emb_a[fa : L - (far - fa)], emb_b[fb : L - (far - fb)]


def concept_rows(
    encoders, concepts: Sequence[str], guides: Sequence[str], preserve: Sequence[str], hidden_state: str = "last"
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    """``([(C_i, G_i)], [P_j])``: aligned token rows (float64, n×d) of each concept and its guide,
    and the rows of each preserved concept (mapped to themselves)."""
    texts = list(concepts) + list(guides) + list(preserve)
    emb, lens = encode_hidden(encoders, texts, hidden_state)
    n, m = len(concepts), len(guides)
    pairs = [aligned_rows(emb[i], lens[i], emb[n + i], lens[n + i]) for i in range(n)]
    pres = [
        aligned_rows(emb[n + m + j], lens[n + m + j], emb[n + m + j], lens[n + m + j])[0] for j in range(len(preserve))
    ]
    return pairs, pres


# ------------------------------------------------------------------------------------ the solve


@dataclass
class LowRank:
    """The shared edit ``D = K − I`` (float64, d×d) of every layer: ``W' = W·K = W + W·D``.

    Kept as exact factors ``D = L @ R`` (L d×r, R r×d) while that is smaller than d×d (UCE), else dense
    (RECE's accumulated edits)."""

    L: torch.Tensor | None = None  # d × r
    R: torch.Tensor | None = None  # r × d
    dense: torch.Tensor | None = None  # d × d

    @property
    def d(self) -> int:
        return int(self.dense.shape[0] if self.dense is not None else self.R.shape[1])

    @property
    def rank(self) -> int:
        return self.d if self.dense is not None else int(self.R.shape[0])

    @property
    def factored(self) -> bool:
        return self.dense is None

    _product: torch.Tensor | None = field(default=None, repr=False)

    def D(self) -> torch.Tensor:
        if self.dense is not None:
            return self.dense
        if self._product is None:
            self._product = self.L @ self.R
        return self._product

    def K(self) -> torch.Tensor:
        return torch.eye(self.d, dtype=torch.float64) + self.D()


def gram_of(rows: Sequence[torch.Tensor], d: int) -> torch.Tensor:
    """``Σ_j P_jᵀ P_j`` (float64, d×d)."""
    if not rows:
        return torch.zeros(d, d, dtype=torch.float64)
    P = torch.cat([r.to(torch.float64) for r in rows])
    return P.T @ P


def uce_factors(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    preserve: Sequence[torch.Tensor],
    *,
    lamb: float,
    erase_scale: float,
    preserve_scale: float,
    base: LowRank | None = None,
    preserve_gram: torch.Tensor | None = None,
) -> LowRank:
    """Solve the UCE system once for all layers sharing the input dimension (float64,
    ``torch.linalg.solve`` on the transposed system; ``M`` is symmetric).

    Without ``base``: ``D = s_e·(G−C)ᵀ · (C·M⁻¹)``, kept as the exact factors ``L = s_e(G−C)ᵀ``,
    ``R = C·M⁻¹``. With ``base`` (RECE) the anchor is the current edit ``λ·W·K_k`` while the targets stay
    the original ``W·g`` and ``W·p``: ``D_{k+1} = [λ·D_k + s_e·(G−C)ᵀC]·M⁻¹`` (dense d×d).
    ``preserve_gram`` (``Σ PᵀP``) may be passed to avoid recomputing it.
    """
    C = torch.cat([c for c, _ in pairs]).to(torch.float64)
    G = torch.cat([g for _, g in pairs]).to(torch.float64)
    d = C.shape[1]
    S = preserve_gram if preserve_gram is not None else gram_of(preserve, d)
    M = lamb * torch.eye(d, dtype=torch.float64) + erase_scale * (C.T @ C) + preserve_scale * S
    if base is None:
        R = torch.linalg.solve(M, C.T).T  # R = C·M⁻¹
        return LowRank(L=(erase_scale * (G - C).T).contiguous(), R=R.contiguous())
    rhs = lamb * base.D() + erase_scale * ((G - C).T @ C)
    return LowRank(dense=torch.linalg.solve(M, rhs.T).T.contiguous())  # rhs·M⁻¹


@dataclass
class FactorEdit:
    """An edit of several weights sharing one right factor: ``W_l' = W_l + W_l·D``.

    ``weights`` are the original weights (float32 views, or float64 for float64 models). The products
    are taken on the DELTA in float32 (``W + W·D``, with ``D`` solved in float64), so rounding is
    relative to the change, not to the weight."""

    lr: LowRank
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    _cast: dict = field(default_factory=dict, repr=False)

    def _dt(self, name: str) -> torch.dtype:
        return torch.float64 if self.weights[name].dtype == torch.float64 else torch.float32

    @property
    def down(self) -> torch.Tensor:
        return self.lr.R

    def up(self, name: str) -> torch.Tensor:
        dt = self._dt(name)
        return self.weights[name].to(dt) @ self.lr.L.to(dt)

    def new(self, name: str) -> torch.Tensor:
        dt = self._dt(name)
        if dt not in self._cast:
            self._cast[dt] = self.lr.D().to(dt)
        W = self.weights[name].to(dt)
        return W + W @ self._cast[dt]

    def new_all(self, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """:meth:`new` for many weights with ONE matrix product per dtype (stacked rows), which is much
        faster than one product per layer for SD-sized models."""
        names = list(self.weights) if names is None else list(names)
        out: dict[str, torch.Tensor] = {}
        for dt in {self._dt(n) for n in names}:
            group = [n for n in names if self._dt(n) == dt]
            if dt not in self._cast:
                self._cast[dt] = self.lr.D().to(dt)
            W = torch.cat([self.weights[n].to(dt) for n in group])
            new = W + W @ self._cast[dt]
            for n, part in zip(group, torch.split(new, [self.weights[n].shape[0] for n in group])):
                out[n] = part
        return out

    def lowrank_is_smaller(self, name: str) -> bool:
        if not self.lr.factored:
            return False
        out, d = self.weights[name].shape
        return self.lr.rank * (out + d) < out * d


def factor_edit(projections: dict[str, nn.Linear], lr: LowRank) -> FactorEdit:
    return FactorEdit(lr, {f"{name}.weight": mod.weight.detach().cpu() for name, mod in projections.items()})


def uce_edit(
    unet: nn.Module,
    encoders: Sequence[tuple[Any, Any]],
    concepts: Sequence[str],
    guides: Sequence[str],
    preserve: Sequence[str] = (),
    *,
    lamb: float = 0.1,
    erase_scale: float = 1.0,
    preserve_scale: float | None = None,
    with_to_k: bool = True,
    hidden_state: str = "last",
) -> tuple[FactorEdit, dict[str, Any]]:
    """UCE on every cross-attention K/V of ``unet``; the UNet is not modified.

    Returns the edit (``W' = W + up @ down`` per weight) and the resolved hyperparameters.
    ``preserve_scale=None`` uses the paper code's default ``max(0.1, 1/len(preserve))``.
    """
    projections = cross_attention_projections(unet, with_to_k=with_to_k)
    pairs, pres = concept_rows(encoders, concepts, guides, preserve, hidden_state)
    check_dims(projections, pairs[0][0].shape[1])
    s_p = _default_preserve_scale(preserve_scale, len(preserve))
    lr = uce_factors(pairs, pres, lamb=lamb, erase_scale=erase_scale, preserve_scale=s_p)
    hyper = {
        "lamb": lamb,
        "erase_scale": erase_scale,
        "preserve_scale": s_p,
        "with_to_k": with_to_k,
        "hidden_state": hidden_state,
        "token_selection": "last subject token through end/padding",
        "rank": lr.rank,
        "layers": len(projections),
    }
    return factor_edit(projections, lr), hyper


def _default_preserve_scale(preserve_scale: float | None, n_preserve: int) -> float:
    if preserve_scale is not None:
        return float(preserve_scale)
    return max(0.1, 1.0 / n_preserve) if n_preserve else 0.1


def check_dims(projections: dict[str, nn.Linear], d: int) -> None:
    bad = {n: m.in_features for n, m in projections.items() if m.in_features != d}
    if bad:
        name, got = next(iter(bad.items()))
        raise GuardError(
            f"the text embeddings are {d}-dimensional but {name} expects {got} (cross_attention_dim); "
            "the text encoders do not belong to this UNet"
        )


_UCE_PARAMS = {
    "lamb": Param(0.1, "λ: anchor to the original weights", lo=0, lo_open=True),
    "erase_scale": Param(1.0, "s_e: weight of the erased concepts", lo=0, lo_open=True),
    "preserve_scale": Param(
        None, "s_p: weight of the preserved concepts (default max(0.1, 1/#preserve))", lo=0, optional=True
    ),
    "with_to_k": Param(True, "edit the key projections too (not only the values)", kind="bool"),
}


class UceMethod(EraserMethod):
    """UCE, closed form on every cross-attention K/V (seconds)."""

    name = "uce"
    params = _UCE_PARAMS

    def run(self, job: EraseJob) -> MethodResult:
        fe, hyper = uce_edit(
            job.unet, job.encoders, job.concepts, job.guides, job.preserve, hidden_state=job.hidden_state, **job.params
        )
        return MethodResult(hyper, factor=fe)


UCE = UceMethod()
