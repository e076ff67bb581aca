"""A gradient estimate assembled from estimators on disjoint parameter groups.

    ĝ = Σ_k ĝ_k,   ĝ_k = estimator k restricted to its groups S_k (S_k disjoint)

The "hybrid" reading of METHODS.md §2 (different estimators for different
parameter groups; Zhao et al. 2023, arXiv:2308.09858) and the CGE-where-
affordable advice of DeepZero (Chen et al., ICLR 2024): a small group whose
exact coordinate-wise estimate is cheap (e.g. the output layer, whose
perturbations reuse the hidden features when the oracle shares unperturbed
prefixes, see :class:`~edgezo.adapters.pinn.model.SteinPINN`) gets CGE, the
large rest gets RGE. Central-difference CGE is exact for a loss that is
quadratic in the group (up to rounding), which the PDE residual of a
hard-constrained network is in its last layer for linear and
quadratic-gradient PDEs.

Recipe form::

    [estimator]
    kind = "combined"
    parts = [
      { kind = "cge", groups = ["last"], mu = 1e-3, difference = "central" },
      { kind = "rge", groups = ["hidden"], q = 10, mu = 1e-2 },
    ]

Every part must name its ``groups`` (no part may cover all parameters), the
groups must not overlap, and first-order (``fo``) parts are refused. The loss
reported is the first part's. Cost: the sum of the parts' forward passes.
"""

from __future__ import annotations

from typing import Any, Sequence

from ...estimators.base import Estimate, Estimator
from ...oracle import Batch, Oracle

__all__ = ["Combined"]


class Combined(Estimator):
    """Sum of estimators on disjoint parameter groups (see the module docstring)."""

    name = "combined"

    def __init__(self, *, parts: Sequence[dict[str, Any] | Estimator]):
        from ...estimators import build_estimator

        if not parts:
            raise ValueError("combined needs at least one part, e.g. parts = [{kind = 'cge', groups = ['last']}, ...]")
        self.parts = [p if isinstance(p, Estimator) else build_estimator(p) for p in parts]
        seen: dict[str, int] = {}
        for i, est in enumerate(self.parts):
            if est.name == "fo":
                raise ValueError("combined: a first-order (fo) part cannot be mixed with zeroth-order parts")
            groups = getattr(est, "groups", None)
            if not groups:
                raise ValueError(f"combined: part {i} ({est!r}) must name its parameter groups (groups = [...])")
            for g in groups:
                if g in seen:
                    raise ValueError(f"combined: group {g!r} appears in parts {seen[g]} and {i}; "
                                     "groups must be disjoint")
                seen[g] = i

    def options(self) -> dict:
        return {"parts": [repr(p) for p in self.parts]}

    def forward_passes_per_step(self, dim: int) -> int:
        return sum(p.forward_passes_per_step(dim) for p in self.parts)

    def estimate(self, oracle: Oracle, batch: Batch, *, step: int, seed: int) -> Estimate:
        out = Estimate(loss=float("nan"), info={"parts": []})
        for i, part in enumerate(self.parts):
            est = part.estimate(oracle, batch, step=step, seed=seed)
            if est.dense is not None:
                raise ValueError(f"combined: part {i} returned a dense estimate")
            if i == 0:
                out.loss = est.loss
            out.seed_terms.extend(est.seed_terms)
            out.coord_terms.extend(est.coord_terms)
            out.forward_passes += est.forward_passes
            out.info["parts"].append({"estimator": part.name, "forward_passes": est.forward_passes})
        return out
