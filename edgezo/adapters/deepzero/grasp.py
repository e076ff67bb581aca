"""ZO-GraSP: pruning-at-initialization scores from forward passes only.

GraSP (Wang, Zhang & Grosse, ICLR 2020) scores a weight by how much removing
it changes the gradient flow, ``S = −θ ⊙ H g`` with ``g`` the gradient and
``H`` the Hessian of the loss. DeepZero (Chen et al., ICLR 2024,
arXiv:2310.02025, §4) replaces both derivatives by finite differences:

    ĝ0 = RGE at θ,   Hg ≈ (ĝ(θ + μ ĝ0) − ĝ0) / μ,   S = −θ ⊙ Hg

with RGE q = 192, μ = 5e-3 on a few hundred samples. Both RGE estimates use the
same directions (same seeds), so ``ĝ(θ + μĝ0) − ĝ0 = (1/q) Σ u_i u_iᵀ (∇ℓ(θ+μĝ0) − ∇ℓ(θ))``
up to O(μ): a random projection of μ·Hĝ0, not the difference of two noisy
estimates.

The scores are only used to *allocate* sparsity across layers: a global
magnitude cut on ``|S|`` over all prunable weights (conv and linear weights;
as DeepZero's code does with ``L1Unstructured`` on the importance scores)
keeps the ``(1 − sparsity)`` fraction with the largest ``|S|``; the fraction a
layer keeps becomes its ratio. Training then draws random masks with those
ratios (:mod:`.sparse_cge`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...estimators.base import Estimator
from ...estimators.rge import RGE
from ...oracle import Batch, Oracle
from ...params import ParamEntry, ParamLayout


def prunable_entries(layout: ParamLayout) -> list[ParamEntry]:
    """Weights that gradient sparsity applies to: tensors of 2+ dimensions (conv, linear).

    Biases and normalization parameters (1-D) are always estimated.
    """
    return [e for e in layout.entries if len(e.shape) >= 2]


def zo_grasp_scores(oracle: Oracle, batch: Batch, *, q: int = 192, mu: float = 5e-3, rge_mu: float = 5e-3,
                    direction: str = "gaussian", difference: str = "forward", seed: int = 0,
                    estimator: Estimator | None = None) -> torch.Tensor:
    """ZO-GraSP scores ``S = −θ ⊙ (ĝ(θ + μ ĝ0) − ĝ0)/μ`` for every coordinate (float64, shape (dim,)).

    Args:
        oracle: where θ lives; θ is restored exactly afterwards.
        batch: the scoring samples (DeepZero: a few hundred).
        q, rge_mu, direction, difference: the RGE used for ĝ (ignored when
            ``estimator`` is given, e.g. a CGE in tests).
        mu: the shift along ĝ0 for the Hessian-gradient finite difference.
        seed: direction seeds (the same ones for both estimates).
    """
    if not mu > 0:
        raise ValueError(f"mu must be > 0, got {mu}")
    est = estimator or RGE(q=q, mu=rge_mu, difference=difference, direction=direction)
    theta = oracle.get_flat()
    g0 = est.estimate(oracle, batch, step=0, seed=seed).to_dense(oracle.layout, dtype=torch.float64)
    try:
        oracle.set_flat((theta.double() + mu * g0.to(theta.device)).to(theta.dtype))
        g1 = est.estimate(oracle, batch, step=0, seed=seed).to_dense(oracle.layout, dtype=torch.float64)
    finally:
        oracle.set_flat(theta)
    hg = (g1 - g0) / mu
    return -theta.double().cpu() * hg.cpu()


def layer_keep_ratios(layout: ParamLayout, scores: torch.Tensor, sparsity: float, *,
                      entries: Sequence[ParamEntry] | None = None, min_keep: int = 1) -> dict[str, float]:
    """Per-tensor keep ratios from a global cut on ``|scores|`` at the target ``sparsity``.

    Exactly ``round((1 − sparsity) · N)`` of the N prunable coordinates are kept
    overall (the largest ``|S|``), so ``Σ_l ratio_l · n_l = kept`` up to the
    rounding of ``ratio_l · n_l`` — :func:`keep_counts` turns the ratios back
    into the exact counts. Every tensor keeps at least ``min_keep``
    coordinates; the ones this adds are taken from the lowest-scored kept
    coordinates elsewhere, so the total stays exact.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    entries = list(entries) if entries is not None else prunable_entries(layout)
    if not entries:
        return {}
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    if scores.numel() != layout.dim:
        raise ValueError(f"scores has {scores.numel()} entries, the parameter space has {layout.dim}")
    if not torch.isfinite(scores).all():
        raise ValueError("ZO-GraSP scores are not finite; lower mu or check the loss")
    values = torch.cat([scores[e.offset : e.offset + e.numel].abs() for e in entries]).numpy()
    owner = np.concatenate([np.full(e.numel, i) for i, e in enumerate(entries)])
    total = values.size
    keep_total = max(len(entries) * min_keep, int(round((1.0 - sparsity) * total)))
    order = np.argsort(-values, kind="stable")  # largest |S| first
    kept = np.zeros(total, dtype=bool)
    kept[order[:keep_total]] = True
    counts = np.bincount(owner[kept], minlength=len(entries))
    for i, e in enumerate(entries):  # guarantee min_keep per tensor, total unchanged
        while counts[i] < min(min_keep, e.numel):
            donors = np.flatnonzero(kept & (owner != i) & (counts[owner] > min_keep))
            if donors.size == 0:
                break
            drop = donors[np.argmin(values[donors])]
            kept[drop] = False
            counts[owner[drop]] -= 1
            mine = np.flatnonzero(~kept & (owner == i))
            take = mine[np.argmax(values[mine])]
            kept[take] = True
            counts[i] += 1
    return {e.name: float(counts[i]) / e.numel for i, e in enumerate(entries)}


def keep_counts(layout: ParamLayout, ratios: dict[str, float]) -> dict[str, int]:
    """Coordinates each tensor keeps: ``round(ratio · numel)``."""
    sizes = {e.name: e.numel for e in layout.entries}
    unknown = [n for n in ratios if n not in sizes]
    if unknown:
        raise KeyError(f"ratios name unknown parameters {unknown}; parameters are {list(sizes)}")
    out = {}
    for name, r in ratios.items():
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"keep ratio of {name} must lie in [0, 1], got {r}")
        out[name] = int(round(r * sizes[name]))
    return out


def uniform_keep_ratios(layout: ParamLayout, sparsity: float) -> dict[str, float]:
    """The same keep ratio ``1 − sparsity`` for every prunable tensor (no scores)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return {e.name: 1.0 - sparsity for e in prunable_entries(layout)}


__all__ = ["zo_grasp_scores", "layer_keep_ratios", "keep_counts", "uniform_keep_ratios", "prunable_entries"]
