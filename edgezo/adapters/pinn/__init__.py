"""BP-free PINN training: sparse-grid quadrature and Stein derivative estimators.

``smolyak_gauss_hermite`` builds the Smolyak Gauss–Hermite rule for N(0, I);
``SteinDerivatives`` turns forward evaluations of a network into the value,
gradient and diagonal second derivatives of its Gaussian-smoothed version
(float64 required, see :mod:`edgezo.adapters.pinn.stein`).
"""

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
]
