"""BP-free PINN training: sparse-grid quadrature, Stein derivatives, PDE residuals, the recipe task.

``smolyak_gauss_hermite`` builds the Smolyak Gauss–Hermite rule for N(0, I);
``SteinDerivatives`` turns forward evaluations of a network into the value,
gradient and diagonal second derivatives of its Gaussian-smoothed version
(float64 required, see :mod:`edgezo.adapters.pinn.stein`).

:mod:`~edgezo.adapters.pinn.pde` declares PDEs as residuals of (x, u, ∇u, ∂²u)
with hard constraints and closed-form solutions (``hjb``: HJB-20; ``heat``;
``hjb-sines``; ``poisson-ball``; docs/pinn.md);
:class:`~edgezo.adapters.pinn.model.SteinPINN` is the residual of a
hard-constrained network as a module whose ``forward_stacked`` evaluates q
perturbed parameter sets × collocation points × quadrature nodes in bounded
chunks, so the engine's TorchOracle and estimators train it with forward passes
only; the engine's per-group combinator (``kind = "combined"``,
:func:`edgezo.estimators.hybrid.combined`) sums estimators over disjoint
parameter groups; :mod:`~edgezo.adapters.pinn.task`
is the recipe task ``"pinn"`` (recipes ``hjb20`` — the whole tensor-train
network trained by ZO — its output-layer-only baseline ``hjb20-rf``, ``poisson10``
and ``poisson10-rf``, ``heat10`` and ``heat10-rf``, ``heat3``; ``edgezo bench pinn`` measures them).
"""

from .model import SteinPINN
from .pde import HJB, PDE, Heat, HJBSines, PoissonBall, build_pde, relative_l2
from .sparse_grid import gauss_hermite_1d, monte_carlo_normal, smolyak_gauss_hermite, smolyak_num_nodes
from .stein import SteinDerivatives, SteinResult, symmetrize_rule

__all__ = [
    "gauss_hermite_1d",
    "monte_carlo_normal",
    "smolyak_gauss_hermite",
    "smolyak_num_nodes",
    "SteinDerivatives",
    "SteinResult",
    "symmetrize_rule",
    "PDE",
    "HJB",
    "Heat",
    "HJBSines",
    "PoissonBall",
    "build_pde",
    "relative_l2",
    "SteinPINN",
]
