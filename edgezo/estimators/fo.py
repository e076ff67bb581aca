"""First-order baseline: the exact gradient by backpropagation.

Not a zeroth-order method; it runs the same recipe through autograd so that
every ZO result has a first-order reference beside it. ``groups`` restricts it
to some parameter groups (the gradient of the others is 0, so they keep their
initial values): e.g. the output layer alone, the random-feature baseline fitted
with exact derivatives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError
from ..oracle import Batch, Oracle
from .base import Estimate, Estimator


class FirstOrder(Estimator):
    name = "fo"

    def __init__(self, groups: Sequence[str] | str | None = None):
        self.groups = None if groups is None else ((groups,) if isinstance(groups, str) else tuple(groups))
        if self.groups is not None and not self.groups:
            raise ConfigError("fo: groups must name at least one parameter group (or be left out for all)")
        self._mask: torch.Tensor | None = None

    def forward_passes_per_step(self, dim: int) -> int:
        return 1

    def _keep(self, oracle: Oracle, like: torch.Tensor) -> torch.Tensor:
        if self._mask is None or self._mask.shape != like.shape:
            layout = oracle.layout
            unknown = [g for g in self.groups if g not in layout.group_names]
            if unknown:
                raise ConfigError(f"fo: unknown parameter group(s) {unknown}; the groups are: "
                                 f"{', '.join(layout.group_names)} (name them in [estimator] groups, or leave "
                                  "groups out to train every parameter)")
            mask = torch.zeros(like.shape, dtype=torch.bool)
            for name in self.groups:
                g = layout.group(name)
                mask[g.offset:g.stop] = True
            self._mask = mask
        return self._mask.to(like.device)

    def estimate(self, oracle: Oracle, batch: Batch, *, step: int, seed: int) -> Estimate:
        loss, grad = oracle.autograd(batch)
        if self.groups is not None:
            grad = torch.where(self._keep(oracle, grad), grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
        return Estimate(loss=loss, dense=grad, forward_passes=1, info={"backward_passes": 1})

    def options(self) -> dict:
        return {} if self.groups is None else {"groups": list(self.groups)}
