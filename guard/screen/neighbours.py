"""Label-aware neighbour features for the learned screen: how the training prompts nearest a prompt
were labelled.

The heads are linear in the sentence embedding, so a family of prompts that sits in a small
pocket of embedding space (a run of adversarial word soups, one way of hinting at nudity, one
template of cruelty to animals) moves them only as far as its average direction does. The labels
of the nearest training prompts carry that local picture. Per head, three features:

- ``nb:frac:<head>``: the similarity-weighted share of that head's positives among the ``k``
  nearest training prompts whose label for the head is known (weights ``exp((s - s_max) / tau)``);
- ``nb:pos:<head>``: the cosine of the nearest positive among the ``K`` nearest (0 if none);
- ``nb:neg:<head>``: the cosine of the nearest known negative among them (0 if none).

The index is part of the learned artifact (``nb_*`` arrays): the MiniLM embeddings of every training
prompt (not the obfuscated copies, which embed as their originals), centred and projected on their
first ``dim`` principal axes, unit length, stored as int8 with a scale per axis (cosines within
0.006 of float32, mean 0.001; 98 % of the ten nearest the same), and an int8 label per prompt and head
(1 positive, 0 negative, -1 unknown). In training the features of a prompt come from the prompts of
the other folds only (``fold_features``), as at run time a new prompt's come from prompts that are
not it; evaluation prompts are never in the index.

Measured out of fold on the training rows before it was adopted (5 grouped folds; each head blocking
at the larger of its 99.95th percentile on COCO and its 99.7th on hard negatives), per set blocked %
without / with: explicit English 91.2 / 93.1, euphemistic 59.6 /
65.1, implicit 66.9 / 71.0, paraphrased 73.8 / 84.4, slang 84.8 / 88.2, misspelt 86.7 / 89.5,
Ring-A-Bell nudity 83.0 / 86.8; COCO 0.1 / 0.1 and hard negatives 1.8 / 1.8 blocked (K=32, k=10,
tau=0.1, 64 axes; 128 axes or the full 384 dimensions were no better).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from guard.errors import GuardError


def _torch_module():
    """torch when the process has already imported it (a guarded pipeline has), else None: the screen
    alone never imports torch (its cold start stays without it; ``tests/test_cli.py``)."""
    return sys.modules.get("torch")


def _top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest of each row of ``sims``, largest first and equal values by column: (values,
    column indexes). The index holds identical vectors (the same prompt under other labels), so ties
    are common and their order is part of the features: it is fixed here, not left to a sort. torch's
    ``topk`` finds the k-th value when the process has torch loaded (0.3 ms a row against numpy's
    argpartition 1.2 ms, 7 ms for 64 rows against 40 ms, over the 26,583 indexed prompts on one core,
    under load); numpy's otherwise. Either way the same prompts in the same order."""
    sims = np.ascontiguousarray(sims, dtype=np.float32)
    torch = _torch_module()
    if torch is not None:
        t = torch.from_numpy(sims)
        v, i = torch.topk(t, k, dim=1, largest=True, sorted=False)
        vals, idx = v.numpy(), i.numpy()
        counts = (sims >= vals.min(1, keepdims=True)).sum(1)
    else:
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(sims, idx, 1)
        counts = (sims >= vals.min(1, keepdims=True)).sum(1)
    for r in np.flatnonzero(counts > k):  # the k-th value is tied beyond the k found: the first by column
        cols = np.flatnonzero(sims[r] >= vals[r].min())
        idx[r] = cols[np.lexsort((cols, -sims[r, cols]))[:k]]
        vals[r] = sims[r, idx[r]]
    order = np.lexsort((idx, -vals), axis=1)  # largest first, equal values by column
    return np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)


#: a stored prompt's cosine to itself is at least this (the int8 steps move a cosine by at most 0.006)
SELF_COSINE = 0.99

#: the index's arrays in the artifact
ARRAYS = ("nb_mean", "nb_proj", "nb_vecs", "nb_scale", "nb_labels")
#: defaults, as measured (see the module docstring)
DIM = 64
CANDIDATES = 32  # K: nearest prompts considered
NEAREST = 10  # k: nearest prompts with a known label that vote
TAU = 0.1
#: the three features per head, in layout order
KINDS = ("frac", "pos", "neg")


def names(heads: Sequence[str]) -> list[str]:
    """The layout's neighbour columns: every kind for every head."""
    return [f"nb:{kind}:{h}" for kind in KINDS for h in heads]


def _quantised(v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.round(v / scale), -127, 127).astype(np.int8)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)


@dataclass(frozen=True)
class NeighbourIndex:
    """The training prompts' projected embeddings and labels; immutable, safe across threads."""

    mean: np.ndarray  # (d,) float32: centre of the training embeddings
    proj: np.ndarray  # (d, dim) float32: their first principal axes
    vecs: np.ndarray  # (n, dim) float32: unit projected embeddings, as stored (int8 times ``scale``)
    scale: np.ndarray  # (dim,) float32: the int8 step of each axis
    labels: np.ndarray  # (n, n_heads) int8: 1 positive, 0 negative, -1 unknown
    candidates: int = CANDIDATES
    nearest: int = NEAREST
    tau: float = TAU
    #: candidates at or over this cosine are taken for the query itself and skipped (None: none is):
    #: :meth:`leaving_self_out`, for decisions on the training prompts as if they were new
    skip_at: float | None = None

    @property
    def n_heads(self) -> int:
        return int(self.labels.shape[1])

    # ------------------------------------------------------------ building and storing

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: np.ndarray, dim: int = DIM, **params: float) -> NeighbourIndex:
        """The index of ``embeddings`` (n, d) with ``labels`` (n, n_heads; 1 / 0 / -1): principal
        axes by SVD of the centred rows (deterministic), vectors rounded to int8 steps as stored."""
        e = np.asarray(embeddings, np.float32)
        lab = np.asarray(labels, np.int8)
        if e.ndim != 2 or lab.ndim != 2 or len(e) != len(lab):
            raise ValueError(f"neighbour index: embeddings {e.shape} and labels {lab.shape} do not match")
        if len(e) <= dim:
            raise ValueError(f"neighbour index: {len(e)} prompts are too few for {dim} axes")
        if not np.isin(lab, (-1, 0, 1)).all():
            raise ValueError("neighbour index: labels must be 1 (positive), 0 (negative) or -1 (unknown)")
        e = _unit(e)
        mean = e.mean(0)
        _, _, vt = np.linalg.svd((e - mean).astype(np.float64), full_matrices=False)
        proj = np.ascontiguousarray(vt[:dim].T, np.float32)
        unit = _unit((e - mean) @ proj)
        scale = (np.abs(unit).max(0) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0
        vecs = _quantised(unit, scale).astype(np.float32) * scale
        return cls(mean.astype(np.float32), proj, vecs, scale, lab, **params)

    def arrays(self) -> dict[str, np.ndarray]:
        """The artifact arrays (vectors as int8 steps of ``nb_scale``)."""
        return {
            "nb_mean": self.mean,
            "nb_proj": self.proj,
            "nb_vecs": _quantised(self.vecs, self.scale),
            "nb_scale": self.scale,
            "nb_labels": self.labels,
        }

    def params(self) -> dict:
        return {"candidates": self.candidates, "nearest": self.nearest, "tau": self.tau, "dim": int(self.proj.shape[1])}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], params: Mapping, source: str = "<arrays>") -> NeighbourIndex:
        missing = [k for k in ARRAYS if k not in arrays]
        if missing:
            raise GuardError(f"{source}: learned screen artifact lacks the neighbour arrays {', '.join(missing)}")
        mean = np.asarray(arrays["nb_mean"], np.float32)
        proj = np.asarray(arrays["nb_proj"], np.float32)
        steps = np.asarray(arrays["nb_vecs"])
        scale = np.asarray(arrays["nb_scale"], np.float32)
        labels = np.asarray(arrays["nb_labels"], np.int8)
        if (
            mean.ndim != 1
            or proj.ndim != 2
            or proj.shape[0] != len(mean)
            or steps.dtype != np.int8
            or steps.ndim != 2
            or steps.shape[1] != proj.shape[1]
            or scale.shape != (proj.shape[1],)
            or labels.ndim != 2
            or len(labels) != len(steps)
        ):
            raise GuardError(
                f"{source}: neighbour arrays are inconsistent: mean {mean.shape}, proj {proj.shape}, "
                f"vecs {steps.shape} {steps.dtype} (int8 expected), scale {scale.shape}, labels {labels.shape}"
            )
        vecs = steps.astype(np.float32) * scale
        try:
            cand, near, tau = int(params["candidates"]), int(params["nearest"]), float(params["tau"])
        except (KeyError, TypeError, ValueError) as e:
            raise GuardError(f"{source}: neighbour parameters are missing or invalid: {params!r}") from e
        if not (1 <= near <= cand <= len(vecs)) or not tau > 0:
            raise GuardError(f"{source}: neighbour parameters out of range: {params!r} for {len(vecs)} prompts")
        return cls(mean, proj, vecs, scale, labels, cand, near, tau)

    # ------------------------------------------------------------ features

    def leaving_self_out(self, at: float = SELF_COSINE) -> NeighbourIndex:
        """The same index, skipping every indexed prompt at cosine ``at`` or more from the query: a
        training prompt's own entry (and its exact copies) then do not vote for it. The fast path's
        gate is fitted on the full screen's decisions of training prompts; read in place, the row found
        itself and its own label ("nerds the daily comic by erland kelley", an I2P row labelled for
        violence, was escalated and set the gate's threshold). Not for run time."""
        return replace(self, skip_at=float(at))

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, dim) unit projections of sentence embeddings."""
        e = _unit(np.atleast_2d(np.asarray(embeddings, np.float32)))
        return _unit((e - self.mean) @ self.proj)

    def features(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, 3 * n_heads) float32 features of ``embeddings`` against every indexed prompt."""
        return self._from_projected(self.project(embeddings), None)

    def fold_features(self, projected: np.ndarray, fold: np.ndarray, index_fold: np.ndarray) -> np.ndarray:
        """Training features: row ``i`` of ``projected`` (its fold ``fold[i]``) against the indexed
        prompts of the other folds only (``index_fold`` is each indexed prompt's fold)."""
        q = np.asarray(projected, np.float32)
        out = np.zeros((len(q), 3 * self.n_heads), np.float32)
        for f in np.unique(fold):
            rows = np.flatnonzero(fold == f)
            out[rows] = self._from_projected(q[rows], np.flatnonzero(index_fold != f))
        return out

    def _from_projected(self, q: np.ndarray, allowed: np.ndarray | None, chunk: int = 1024) -> np.ndarray:
        """Features of projected rows against the indexed prompts at ``allowed`` (None: every one, read
        in place: the run-time path copies nothing of the index)."""
        nh = self.n_heads
        out = np.zeros((len(q), 3 * nh), np.float32)
        if not len(q):
            return out
        cand_vecs = self.vecs if allowed is None else self.vecs[allowed]
        cand_labels = self.labels if allowed is None else self.labels[allowed]
        kk = min(self.candidates, len(cand_vecs))
        for s in range(0, len(q), chunk):
            sims = q[s : s + chunk] @ cand_vecs.T
            if self.skip_at is not None:
                sims[sims >= self.skip_at] = -np.inf
            ts, top = _top_k(sims, kk)
            lab = cand_labels[top]  # (b, K, n_heads)
            known = lab >= 0
            pos = lab == 1
            use = known & (np.cumsum(known, axis=1) <= self.nearest)
            wt = np.exp((ts - ts[:, :1]) / self.tau)[:, :, None] * use
            tot = wt.sum(1)
            block = out[s : s + chunk]
            block[:, :nh] = np.where(tot > 0, (wt * pos).sum(1) / np.maximum(tot, 1e-12), 0.0)
            block[:, nh : 2 * nh] = np.where(pos, ts[:, :, None], 0.0).max(1).clip(0.0)
            block[:, 2 * nh :] = np.where(known & ~pos, ts[:, :, None], 0.0).max(1).clip(0.0)
        return out
