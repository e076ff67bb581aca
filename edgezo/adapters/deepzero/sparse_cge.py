"""``sparse-cge``: coordinate-wise estimation over a random sparse mask (DeepZero).

DeepZero (Chen et al., ICLR 2024, arXiv:2310.02025, §4) trains with *gradient*
sparsity: the weights stay dense, but at each step CGE estimates only the
coordinates of a mask S,

    ĝ_j = (ℓ(θ + μ e_j) − ℓ(θ)) / μ   for j ∈ S,    ĝ_j = 0 otherwise,

(central difference optional). S holds every bias and normalization parameter
(1-D tensors) and, in each weight tensor l, ``k_l = round(r_l · n_l)``
coordinates drawn uniformly at random. The keep ratios ``r_l`` come from
ZO-GraSP scores at initialization (:mod:`.grasp`) for a target overall
sparsity; the mask is redrawn every ``reshuffle_every`` epochs from
(run seed, period), so a resumed run draws the same masks. Cost per step:
``|S| + 1`` forward passes (forward difference) or ``2|S|``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ...estimators.base import Estimate
from ...estimators.cge import CGE
from ...oracle import Batch, Oracle
from ...params import ParamLayout
from .grasp import keep_counts, layer_keep_ratios, prunable_entries, uniform_keep_ratios, zo_grasp_scores

RATIO_SOURCES = ("zo-grasp", "uniform")
_MASK_SALT = 0x5EC6E


def random_mask(layout: ParamLayout, counts: Mapping[str, int], *, seed: int, period: int, salt: int = 0,
                include_small: bool = True) -> torch.Tensor:
    """Sorted flat indices: ``counts[name]`` random coordinates of each weight tensor, plus
    every coordinate of the 1-D tensors (biases, normalization) when ``include_small``.

    Depends only on (seed, period, salt) and the layout.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(period), int(salt),
                                                                       _MASK_SALT])))
    parts = []
    for e in layout.entries:
        if len(e.shape) >= 2:
            k = int(counts.get(e.name, e.numel))
            if not 0 <= k <= e.numel:
                raise ValueError(f"cannot keep {k} of the {e.numel} coordinates of {e.name}")
            if k == e.numel:
                parts.append(np.arange(e.numel) + e.offset)
            elif k:
                parts.append(np.sort(rng.choice(e.numel, size=k, replace=False)) + e.offset)
        elif include_small:
            parts.append(np.arange(e.numel) + e.offset)
    idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(np.sort(idx).astype(np.int64))


class SparseCGE(CGE):
    """CGE over a random mask with layer-wise keep ratios (see the module docstring).

    Args:
        mu, difference: as for :class:`~edgezo.estimators.cge.CGE` (DeepZero: μ = 5e-3).
        sparsity: target fraction of the prunable weights *not* estimated per step
            (0 = dense CGE).
        ratios: ``"zo-grasp"`` (scores at initialization, see :meth:`prepare`),
            ``"uniform"`` (the same ratio everywhere), or a mapping
            ``{weight name: keep ratio}``.
        reshuffle_every: redraw the mask every this many epochs (DeepZero: 5).
        steps_per_epoch: set by the ``deepzero`` task; with the default 1 the
            period counts steps.
        include_small: always estimate biases and normalization parameters.
        grasp_q, grasp_mu: the ZO-GraSP RGE (q directions, step μ; DeepZero: 192, 5e-3).
        salt: decorrelates masks of two estimators in one run.
    """

    name = "sparse-cge"

    def __init__(self, *, mu: float = 5e-3, difference: str = "forward", sparsity: float = 0.9,
                 ratios: str | Mapping[str, float] = "zo-grasp", reshuffle_every: int = 5,
                 steps_per_epoch: int = 1, include_small: bool = True, grasp_q: int = 192,
                 grasp_mu: float = 5e-3, salt: int = 0):
        super().__init__(mu=mu, difference=difference)
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        if isinstance(ratios, str) and ratios not in RATIO_SOURCES:
            raise ValueError(f"ratios must be one of {RATIO_SOURCES} or a mapping name -> keep ratio, got {ratios!r}")
        if reshuffle_every < 1:
            raise ValueError(f"reshuffle_every must be >= 1 epoch, got {reshuffle_every}")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if grasp_q < 1 or not grasp_mu > 0:
            raise ValueError(f"grasp_q must be >= 1 and grasp_mu > 0, got {grasp_q}, {grasp_mu}")
        self.sparsity = float(sparsity)
        self.ratio_source = ratios if isinstance(ratios, str) else "given"
        self.ratios: dict[str, float] | None = None if isinstance(ratios, str) else dict(ratios)
        self.reshuffle_every, self.steps_per_epoch = int(reshuffle_every), int(steps_per_epoch)
        self.include_small = bool(include_small)
        self.grasp_q, self.grasp_mu, self.salt = int(grasp_q), float(grasp_mu), int(salt)
        self.scores: torch.Tensor | None = None
        self._mask: tuple[tuple, torch.Tensor] | None = None

    def options(self) -> dict:
        out = super().options()
        out.pop("mu", None)
        defaults = dict(mu=5e-3, sparsity=0.9, ratios="zo-grasp", reshuffle_every=5, include_small=True,
                        grasp_q=192, grasp_mu=5e-3, salt=0)
        current = dict(mu=self.mu, sparsity=self.sparsity, ratios=self.ratio_source,
                       reshuffle_every=self.reshuffle_every, include_small=self.include_small,
                       grasp_q=self.grasp_q, grasp_mu=self.grasp_mu, salt=self.salt)
        out.update({k: v for k, v in current.items() if v != defaults[k]})
        return out

    # --- ratios --------------------------------------------------------------------
    @property
    def prepared(self) -> bool:
        return self.ratios is not None or self.sparsity == 0.0

    def prepare(self, oracle: Oracle, batch: Batch | None = None, *, seed: int = 0) -> dict[str, float]:
        """Compute the layer keep ratios (ZO-GraSP on ``batch`` at the current θ, or uniform)."""
        if self.sparsity == 0.0:
            self.ratios = {e.name: 1.0 for e in prunable_entries(oracle.layout)}
        elif self.ratio_source == "zo-grasp":
            if batch is None:
                raise ValueError("ZO-GraSP ratios need a scoring batch (a few hundred samples)")
            self.scores = zo_grasp_scores(oracle, batch, q=self.grasp_q, mu=self.grasp_mu, rge_mu=self.grasp_mu,
                                          seed=seed)
            self.ratios = layer_keep_ratios(oracle.layout, self.scores, self.sparsity)
        elif self.ratio_source == "uniform":
            self.ratios = uniform_keep_ratios(oracle.layout, self.sparsity)
        keep_counts(oracle.layout, self.ratios)  # validates names and ranges
        self._mask = None
        return dict(self.ratios)

    # --- masks ---------------------------------------------------------------------
    def period(self, step: int) -> int:
        return (step // self.steps_per_epoch) // self.reshuffle_every

    def mask(self, layout: ParamLayout, step: int, seed: int) -> torch.Tensor:
        """The active coordinates at ``step`` (sorted flat indices)."""
        if self.ratios is None:
            raise RuntimeError("call prepare(oracle, batch) first (the deepzero task does this at build time)")
        key = (int(seed), self.period(step))
        if self._mask is None or self._mask[0] != key:
            counts = keep_counts(layout, self.ratios)
            self._mask = (key, random_mask(layout, counts, seed=seed, period=key[1], salt=self.salt,
                                           include_small=self.include_small))
        return self._mask[1]

    def active_coords(self, oracle: Oracle, step: int = 0, seed: int = 0) -> torch.Tensor:
        return self.mask(oracle.layout, step, seed)

    def forward_passes_per_step(self, dim: int) -> int:
        if self._mask is None:
            raise NotImplementedError("cost depends on the mask; call mask() first")
        n = self._mask[1].numel()
        return 2 * n if self.difference == "central" else n + 1

    def estimate(self, oracle: Oracle, batch: Batch, *, step: int, seed: int) -> Estimate:
        if not self.prepared:
            self.prepare(oracle, batch, seed=seed)
        elif self.ratios is None:
            self.prepare(oracle)
        est = super().estimate(oracle, batch, step=step, seed=seed)
        est.info.update(period=self.period(step), sparsity=self.sparsity)
        return est


__all__ = ["SparseCGE", "random_mask", "RATIO_SOURCES"]
