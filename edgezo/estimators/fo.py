"""First-order baseline: the exact gradient by backpropagation.

Not a zeroth-order method; it runs the same recipe through autograd so that
every ZO result has a first-order reference beside it.
"""

from __future__ import annotations

from ..oracle import Batch, Oracle
from .base import Estimate, Estimator


class FirstOrder(Estimator):
    name = "fo"

    def forward_passes_per_step(self, dim: int) -> int:
        return 1

    def estimate(self, oracle: Oracle, batch: Batch, *, step: int, seed: int) -> Estimate:
        loss, grad = oracle.autograd(batch)
        return Estimate(loss=loss, dense=grad, forward_passes=1, info={"backward_passes": 1})
