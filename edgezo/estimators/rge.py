"""Randomized gradient estimate (RGE) with seeded directions.

Forward difference (Nesterov & Spokoiny 2017; Liu et al. 2020, "A primer on
zeroth-order optimization"):

    ĝ = (c/q) Σ_i [(ℓ(θ + μ u_i) − ℓ(θ)) / μ] · u_i

central (antithetic) difference:

    ĝ = (c/q) Σ_i [(ℓ(θ + μ u_i) − ℓ(θ − μ u_i)) / (2μ)] · u_i

with u_i Rademacher or Gaussian (c = 1, E[u uᵀ] = I) or uniform on the unit
sphere of the perturbed block (c = d, E[u uᵀ] = I/d, as in ZO-AE-DS). E[ĝ] is
the gradient of the μ-smoothed loss; the variance grows like d/q, so
``layerwise`` perturbation (one parameter group per step, as in the
tensor-compressed BP-free training of Zhao et al. 2023) lowers d per step.

The estimate is returned as (seed, coefficient) pairs (MeZO, Malladi et al.
2023): the directions are never stored and a device regenerates them.
Cost: q + 1 forward passes (forward difference) or 2q (central).

``seed_chain=True`` draws the q seeds of a step as a chain: the first from
:func:`step_seeds` as usual, the others ``s_i = W(s_0, i) = H(H(i) ^ s_0)``
with the direction generator's hash ``H`` (docs/directions.md §3 and §11), so
a device regenerates all q seeds from ``s_0`` and the wire carries one seed
per step (docs/protocol.md, evaluate-chain). The default (independent
``step_seeds``) is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..directions import KINDS, chain_seeds
from ..oracle import Batch, Oracle, SeedQueries, SeedUpdate
from .base import Estimate, Estimator, step_seeds

DIFFERENCES = ("forward", "central")
LAYERWISE = (None, "cycle", "random")


class RGE(Estimator):
    name = "rge"

    def __init__(self, *, q: int = 20, mu: float = 1e-2, difference: str = "central",
                 direction: str = "rademacher", groups: Sequence[str] | None = None,
                 layerwise: str | None = None, salt: int = 0, seed_chain: bool = False):
        if q < 1:
            raise ValueError(f"q must be a positive number of directions, got {q}")
        if not mu > 0:
            raise ValueError(f"mu must be > 0, got {mu}")
        if difference not in DIFFERENCES:
            raise ValueError(f"difference must be one of {DIFFERENCES}, got {difference!r}")
        if direction not in KINDS:
            raise ValueError(f"direction must be one of {KINDS}, got {direction!r}")
        if layerwise not in LAYERWISE:
            raise ValueError(f"layerwise must be one of {LAYERWISE}, got {layerwise!r}")
        self.q, self.mu, self.difference, self.direction = int(q), float(mu), difference, direction
        self.groups = None if groups is None else tuple(groups)
        self.layerwise = layerwise
        self.salt = int(salt)
        self.seed_chain = bool(seed_chain)

    def options(self) -> dict:
        defaults = dict(q=20, mu=1e-2, difference="central", direction="rademacher", groups=None,
                        layerwise=None, salt=0, seed_chain=False)
        current = dict(q=self.q, mu=self.mu, difference=self.difference, direction=self.direction,
                       groups=self.groups, layerwise=self.layerwise, salt=self.salt, seed_chain=self.seed_chain)
        return {k: v for k, v in current.items() if v != defaults[k]}

    def forward_passes_per_step(self, dim: int) -> int:
        per_group = 2 * self.q if self.difference == "central" else self.q + 1
        if self.layerwise or self.groups is None:
            return per_group
        return per_group * len(self.groups)

    def _groups_for_step(self, oracle: Oracle, step: int, seed: int) -> list[str | None]:
        names = list(self.groups) if self.groups is not None else None
        if self.layerwise is None:
            return names if names is not None else [None]
        names = names if names is not None else list(oracle.layout.group_names)
        if self.layerwise == "cycle":
            return [names[step % len(names)]]
        pick = step_seeds(seed, step, 1, salt=self.salt + 7919)[0] % len(names)
        return [names[pick]]

    def estimate(self, oracle: Oracle, batch: Batch, *, step: int, seed: int) -> Estimate:
        terms, losses, passes = [], [], 0
        for k, group in enumerate(self._groups_for_step(oracle, step, seed)):
            if self.seed_chain:
                seeds = chain_seeds(step_seeds(seed, step, 1, salt=self.salt * 1000 + k)[0], self.q)
            else:
                seeds = step_seeds(seed, step, self.q, salt=self.salt * 1000 + k)
            g = oracle.layout.group(group)
            scale = float(g.numel) if self.direction == "sphere" else 1.0
            if self.difference == "central":
                values = oracle.evaluate(
                    SeedQueries(seeds + seeds, (self.mu,) * self.q + (-self.mu,) * self.q, group, self.direction),
                    batch).cpu().numpy()
                plus, minus = values[: self.q], values[self.q :]
                diffs = (plus - minus) / (2 * self.mu)
                losses.append(float(np.mean((plus + minus) / 2)))
                passes += 2 * self.q
            else:
                values = oracle.evaluate(
                    SeedQueries((seeds[0],) + seeds, (0.0,) + (self.mu,) * self.q, group, self.direction),
                    batch).cpu().numpy()
                center, plus = values[0], values[1:]
                diffs = (plus - center) / self.mu
                losses.append(float(center))
                passes += self.q + 1
            coeffs = tuple(float(c) for c in diffs * (scale / self.q))
            terms.append(SeedUpdate(seeds, coeffs, group, self.direction))
        return Estimate(loss=float(np.mean(losses)), seed_terms=terms, forward_passes=passes,
                        info={"groups": [t.group for t in terms]})
