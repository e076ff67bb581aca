r"""Coarse 1-D viscous Burgers solver, its fine reference and a torch twin.

The PDE, on the periodic domain :math:`x \in [0, 2\pi)`:

.. math::  u_t + (u^2/2)_x = \nu\, u_{xx}.

This is the scientific solver of the *solver-in-the-loop* example (Um et al.,
"Solver-in-the-Loop", NeurIPS 2020; used as a ZO application in DeepZero,
Chen et al., ICLR 2024, arXiv:2310.02025, docs/methods/solver-in-the-loop.md): a coarse
solver whose error against a fine reference a learned correction reduces.

Scheme (finite volume, one scheme for every class in this module)
------------------------------------------------------------------
The grid has ``n`` cells :math:`[j\,\Delta x, (j+1)\Delta x)`,
:math:`\Delta x = 2\pi/n`; ``u[j]`` is the cell average, the cell centre is
:math:`x_j = (j + 1/2)\Delta x`.

* Reconstruction (``reconstruction=``): ``"constant"`` (first order,
  :math:`u^L_{j+1/2} = u_j`) or MUSCL with a limited slope
  :math:`s_j = \phi(u_j - u_{j-1}, u_{j+1} - u_j)`, :math:`u^L_{j+1/2} = u_j + s_j/2`,
  :math:`u^R_{j+1/2} = u_{j+1} - s_{j+1}/2`, limiter ``"minmod"``
  (:math:`\tfrac12(\operatorname{sign}a + \operatorname{sign}b)\min(|a|,|b|)`) or
  ``"vanleer"`` (:math:`(a|b| + |a|b)/(|a| + |b|)`). The coarse default is
  ``"constant"``; the fine reference uses ``"vanleer"``.
* Convective flux: Rusanov / local Lax–Friedrichs,
  :math:`F = \tfrac12(f(u^L) + f(u^R)) - \tfrac12\alpha(u^R - u^L)`,
  :math:`f(u) = u^2/2`, :math:`\alpha = \max(|u^L|, |u^R|)`.
* Diffusion: central, :math:`\nu(u_{j+1} - 2u_j + u_{j-1})/\Delta x^2`.
* Semi-discrete form :math:`\dot u_j = -(F_{j+1/2} - F_{j-1/2})/\Delta x + \text{diffusion}`:
  conservative, so :math:`\sum_j u_j` (the mean of ``u``) is conserved up to
  rounding.
* Time stepping (``integrator=``): SSP-RK3 of Shu & Osher (default) or SSP-RK2
  (Heun). Both have SSP coefficient 1.

Stability (CFL) rule
--------------------
One coarse step of length ``dt`` is ``m`` equal substeps of length
``h = dt / m``. A substep is stable (the forward-Euler stage is a convex
combination, hence total-variation diminishing and bounded by the local
maximum principle) when the stability number

.. math::  \sigma(h, a) = h\,(\kappa\, a/\Delta x + 2\nu/\Delta x^2) \le \mathrm{cfl},

where :math:`a = \max_j |u_j|`, :math:`\kappa = 1` for ``"constant"`` and
:math:`\kappa = 2` for the MUSCL limiters, and ``cfl <= 1`` (default 0.9).

* ``substeps=<int>`` (the coarse default is 1): ``m`` is fixed. The
  constructor raises ``ValueError`` when ``dt`` is unstable even for
  :math:`a = 0` (pure diffusion) or, when ``u_max`` is given, for states with
  :math:`a \le` ``u_max``; every ``step`` raises ``ValueError`` when the
  actual state violates the rule.
* ``substeps=None`` (adaptive, used by the fine reference): for every row of
  a batch separately, :math:`m = \max(1, \lceil \mathrm{dt}\,(\kappa a/\Delta x
  + 2\nu/\Delta x^2)/\mathrm{cfl} \rceil)`, so a row's result does not depend
  on the other rows of its batch.

Because the scheme obeys the maximum principle, :math:`\max|u|` does not grow
during a rollout; the initial conditions below satisfy
:math:`\max|u| \le` ``amplitude`` + ``|mean|``, so ``u_max`` bounds a whole
rollout.

Default problem (measured; see ``tests/edgezo/adapters/solver/test_burgers.py``)
------------------------------------------------------------------------------
Coarse: ``n = 32`` cells, ``nu = 0.01``, ``dt = 0.1`` with one substep
(stability number 0.816 <= 0.9 at ``u_max = 1.5``), ``steps = 20`` (final
time 2.0, after the shocks have formed), first-order Rusanov + central
diffusion + SSP-RK3. Initial conditions: 4 Fourier modes, coefficients
∝ 1/k, scaled to ``amplitude = 1.5`` (so ``max|u0| <= 1.5``), zero mean.
Reference: the same class on ``8 * 32 = 256`` cells, van Leer MUSCL, adaptive
substeps at ``cfl = 0.5`` (18–31 substeps per coarse step), block-averaged
back onto the 32 cells; its own error against a 1024-cell run is ~3e-4.

On 16 held-out initial conditions (``initial_condition_fns(16, 2024)``) the
coarse rollout is off the reference by a mean absolute error of 0.053 at
t = 2 (0.054 averaged over the 20 steps; mean |u| of the reference is 0.40).
Most of it is the numerical diffusion of the first-order flux at the shocks:
a 20-coefficient least-squares stencil correction fitted on other initial
conditions already brings it to 0.039. A batch-16 coarse rollout takes ~2 ms
on one CPU core (numpy), the torch twin 5–9 ms, the reference 0.25–0.35 s.
"""

from .reference import (
                        FourierInitialCondition,
                        initial_condition_fn,
                        initial_condition_fns,
                        lift_cell_averages,
                        random_initial_conditions,
                        reference_trajectory,
                        restrict_cell_averages,
)
from .scheme import (
                        DEFAULT_AMPLITUDE,
                        DEFAULT_CFL,
                        DEFAULT_DT,
                        DEFAULT_N,
                        DEFAULT_NU,
                        DEFAULT_RECONSTRUCTION,
                        DEFAULT_REFERENCE_CFL,
                        DEFAULT_REFERENCE_RECONSTRUCTION,
                        DEFAULT_REFINE,
                        DEFAULT_STEPS,
                        DEFAULT_U_MAX,
                        DOMAIN_LENGTH,
                        INTEGRATORS,
                        RECONSTRUCTIONS,
                        BurgersScheme,
                        cell_centers,
)
from .solvers import BurgersSolver, TorchBurgers

__all__ = [
    "DOMAIN_LENGTH",
    "DEFAULT_N",
    "DEFAULT_NU",
    "DEFAULT_DT",
    "DEFAULT_STEPS",
    "DEFAULT_REFINE",
    "DEFAULT_AMPLITUDE",
    "DEFAULT_U_MAX",
    "BurgersScheme",
    "BurgersSolver",
    "TorchBurgers",
    "FourierInitialCondition",
    "initial_condition_fn",
    "initial_condition_fns",
    "random_initial_conditions",
    "cell_centers",
    "lift_cell_averages",
    "restrict_cell_averages",
    "reference_trajectory",
    "DEFAULT_CFL",
    "DEFAULT_RECONSTRUCTION",
    "DEFAULT_REFERENCE_CFL",
    "DEFAULT_REFERENCE_RECONSTRUCTION",
    "INTEGRATORS",
    "RECONSTRUCTIONS",
]
