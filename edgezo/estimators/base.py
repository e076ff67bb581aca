"""What every gradient estimator returns, and how step seeds are drawn."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
import torch

from ..direction_cache import cached_directions
from ..oracle import Batch, Oracle, SeedUpdate
from ..params import ParamLayout


def step_seeds(run_seed: int, step: int, count: int, salt: int = 0) -> tuple[int, ...]:
    """``count`` uint32 direction seeds that depend only on (run seed, step, salt).

    Drawn with numpy's SeedSequence/PCG64, so a resumed run (or another process)
    reproduces them from the step number alone.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(run_seed), int(step), int(salt)])))
    return tuple(int(s) for s in rng.integers(0, 2**32, size=count, dtype=np.uint64))


@dataclass
class Estimate:
    """A gradient estimate ĝ in compact form.

    ``ĝ = Σ_u Σ_i u.coeffs[i] · z(u.seeds[i])`` over ``seed_terms`` (each on its
    group) ``+ Σ_j values[j] e_{coords[j]}`` over ``coord_terms``, or ``dense``
    when the estimator produced a full vector (first-order baseline).
    """

    loss: float
    seed_terms: list[SeedUpdate] = field(default_factory=list)
    coord_terms: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    dense: torch.Tensor | None = None
    forward_passes: int = 0
    info: dict = field(default_factory=dict)

    def to_dense(self, layout: ParamLayout, *, device=None, dtype=torch.float32) -> torch.Tensor:
        """The estimate as a dense vector of ``layout.dim`` entries."""
        if self.dense is not None:
            return self.dense.to(device=device, dtype=dtype)
        g = torch.zeros(layout.dim, device=device, dtype=dtype)
        for term in self.seed_terms:
            grp = layout.group(term.group)
            z = cached_directions(term.seeds, grp.offset, grp.numel, term.kind, device, dtype)
            g[grp.offset : grp.stop] += torch.tensor(term.coeffs, dtype=dtype, device=device) @ z
        for coords, values in self.coord_terms:
            g.index_add_(0, coords.to(device), values.to(device=device, dtype=dtype))
        return g

    def is_finite(self) -> bool:
        if not np.isfinite(self.loss):
            return False
        if self.dense is not None and not torch.isfinite(self.dense).all():
            return False
        if any(not np.all(np.isfinite(t.coeffs)) for t in self.seed_terms):
            return False
        return all(bool(torch.isfinite(v).all()) for _, v in self.coord_terms)


class Estimator(abc.ABC):
    """Turns loss queries into a gradient estimate. Knows the Oracle contract only."""

    name: str = "estimator"

    @abc.abstractmethod
    def estimate(self, oracle: Oracle, batch: Batch, *, step: int, seed: int) -> Estimate:
        """Estimate ∇ℓ(θ) on ``batch`` at the oracle's current θ."""

    def forward_passes_per_step(self, dim: int) -> int:
        """Loss evaluations one call of :meth:`estimate` costs on a space of ``dim``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def options(self) -> dict:
        """Options that differ from the defaults (shown by repr)."""
        return {}
