r"""Coarse 1-D viscous Burgers solver, its fine reference and a torch twin.

The PDE, on the periodic domain :math:`x \in [0, 2\pi)`:

.. math::  u_t + (u^2/2)_x = \nu\, u_{xx}.

This is the scientific solver of the *solver-in-the-loop* example (Um et al.,
"Solver-in-the-Loop", NeurIPS 2020; used as a ZO application in DeepZero,
Chen et al., ICLR 2024, arXiv:2310.02025, section 3 of METHODS.md): a coarse
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

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

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
]

DOMAIN_LENGTH = 2.0 * math.pi
DEFAULT_N = 32
DEFAULT_NU = 0.01
DEFAULT_DT = 0.1
DEFAULT_STEPS = 20
DEFAULT_REFINE = 8
DEFAULT_AMPLITUDE = 1.5
DEFAULT_U_MAX = DEFAULT_AMPLITUDE
DEFAULT_RECONSTRUCTION = "constant"
DEFAULT_REFERENCE_RECONSTRUCTION = "vanleer"
DEFAULT_CFL = 0.9
DEFAULT_REFERENCE_CFL = 0.5

RECONSTRUCTIONS = ("constant", "minmod", "vanleer")
INTEGRATORS = ("ssprk2", "ssprk3")


# --------------------------------------------------------------------------
# Array namespaces: the scheme below is written once and run on numpy arrays
# (BurgersSolver) or torch tensors (TorchBurgers) with the same operations in
# the same order, which is why the two agree to rounding.
# --------------------------------------------------------------------------
class _NumpyOps:
    @staticmethod
    def pad_periodic(u, g):
        return np.concatenate((u[..., -g:], u, u[..., :g]), axis=-1)

    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    ceil = staticmethod(np.ceil)

    @staticmethod
    def where(cond, a, b):
        return np.where(cond, a, b)

    @staticmethod
    def row_absmax(u):
        return np.max(np.abs(u), axis=-1, keepdims=True)

    @staticmethod
    def absmax(u) -> float:
        return float(np.max(np.abs(u)))

    @staticmethod
    def clamp_min(u, lo):
        return np.maximum(u, lo)

    @staticmethod
    def to_float(x) -> float:
        return float(x)


class _TorchOps:
    @staticmethod
    def pad_periodic(u, g):
        return torch.cat((u[..., -g:], u, u[..., :g]), dim=-1)

    abs = staticmethod(torch.abs)
    sign = staticmethod(torch.sign)
    maximum = staticmethod(torch.maximum)
    minimum = staticmethod(torch.minimum)
    ceil = staticmethod(torch.ceil)

    @staticmethod
    def where(cond, a, b):
        return torch.where(cond, a, b)

    @staticmethod
    def row_absmax(u):
        return u.detach().abs().amax(dim=-1, keepdim=True)

    @staticmethod
    def absmax(u) -> float:
        return float(u.detach().abs().max().item())

    @staticmethod
    def clamp_min(u, lo):
        return torch.clamp(u, min=lo)

    @staticmethod
    def to_float(x) -> float:
        return float(x.item())


# --------------------------------------------------------------------------
# The scheme (parameters, stability rule, right-hand side, time stepping)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class BurgersScheme:
    """Parameters and the stability rule shared by :class:`BurgersSolver` and
    :class:`TorchBurgers` (see the module docstring for the formulas)."""

    n: int = DEFAULT_N
    nu: float = DEFAULT_NU
    dt: float = DEFAULT_DT
    substeps: int | None = 1
    cfl: float = DEFAULT_CFL
    reconstruction: str = DEFAULT_RECONSTRUCTION
    integrator: str = "ssprk3"
    u_max: float | None = DEFAULT_U_MAX
    dx: float = field(init=False)
    kappa: float = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.n, (int, np.integer)) or isinstance(self.n, bool) or self.n < 4:
            raise ValueError(f"n must be an integer >= 4, got {self.n!r}")
        if not (self.nu >= 0.0 and math.isfinite(self.nu)):
            raise ValueError(f"nu must be a finite number >= 0, got {self.nu!r}")
        if not (self.dt > 0.0 and math.isfinite(self.dt)):
            raise ValueError(f"dt must be a finite number > 0, got {self.dt!r}")
        if not (0.0 < self.cfl <= 1.0):
            raise ValueError(f"cfl must lie in (0, 1] (SSP coefficient 1), got {self.cfl!r}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {self.reconstruction!r}")
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {INTEGRATORS}, got {self.integrator!r}")
        if self.substeps is not None and (
            not isinstance(self.substeps, (int, np.integer)) or isinstance(self.substeps, bool) or self.substeps < 1
        ):
            raise ValueError(f"substeps must be a positive integer or None (adaptive), got {self.substeps!r}")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "dx", DOMAIN_LENGTH / self.n)
        object.__setattr__(self, "kappa", 1.0 if self.reconstruction == "constant" else 2.0)
        if self.substeps is not None:
            h = self.dt / self.substeps
            if self.stability_number(h, 0.0) > self.cfl * (1.0 + 1e-12):
                raise ValueError(
                    f"unstable time step: dt={self.dt:g} with substeps={self.substeps} violates the diffusion "
                    f"limit h*2*nu/dx^2 <= cfl={self.cfl:g} (n={self.n}, nu={self.nu:g}); use "
                    f"dt <= {self.max_stable_dt(0.0):.6g}, substeps >= {self.min_substeps(0.0)} "
                    f"or substeps=None (adaptive)"
                )
            if self.u_max is not None and self.stability_number(h, self.u_max) > self.cfl * (1.0 + 1e-12):
                raise ValueError(
                    f"unstable time step: dt={self.dt:g} with substeps={self.substeps} gives stability number "
                    f"{self.stability_number(h, self.u_max):.4g} > cfl={self.cfl:g} for max|u|={self.u_max:g} "
                    f"(n={self.n}, nu={self.nu:g}, rule h*(kappa*max|u|/dx + 2*nu/dx^2) <= cfl, "
                    f"kappa={self.kappa:g}); use dt <= {self.max_stable_dt(self.u_max):.6g}, "
                    f"substeps >= {self.min_substeps(self.u_max)} or substeps=None (adaptive)"
                )

    # -- stability rule ----------------------------------------------------
    @property
    def _adv(self) -> float:
        return self.kappa / self.dx

    @property
    def _diff(self) -> float:
        return 2.0 * self.nu / (self.dx * self.dx)

    def stability_number(self, h: float, a: float) -> float:
        """``h * (kappa * a / dx + 2 nu / dx^2)``; a substep of length h is stable when this is <= cfl."""
        return h * (self._adv * a + self._diff)

    def max_stable_dt(self, a: float) -> float:
        """Largest coarse ``dt`` that the fixed ``substeps`` keep stable for ``max|u| = a``."""
        return (self.substeps or 1) * self.cfl / (self._adv * a + self._diff)

    def min_substeps(self, a: float) -> int:
        """Fewest substeps that make ``dt`` stable for ``max|u| = a``."""
        return max(1, math.ceil(self.dt * (self._adv * a + self._diff) / self.cfl))

    # -- the semi-discrete right-hand side ----------------------------------
    def _rhs(self, u, ops):
        """du/dt for u of shape (B, n): conservative flux difference plus central diffusion."""
        n = self.n
        g = 1 if self.reconstruction == "constant" else 2
        e = ops.pad_periodic(u, g)  # e[..., i] = u[..., (i - g) mod n]
        # states left/right of the n + 1 interfaces -1/2, 1/2, ..., n - 1/2
        if self.reconstruction == "constant":
            ul = e[..., 0 : n + 1]
            ur = e[..., 1 : n + 2]
        else:
            d = e[..., 1:] - e[..., :-1]  # d[i] = e[i + 1] - e[i]
            a = d[..., :-1]  # backward differences of cells -1..n
            b = d[..., 1:]  # forward differences of cells -1..n
            if self.reconstruction == "minmod":
                s = 0.5 * (ops.sign(a) + ops.sign(b)) * ops.minimum(ops.abs(a), ops.abs(b))
            else:  # van Leer; the numerator is 0 wherever the denominator is
                aa = ops.abs(a)
                ab = ops.abs(b)
                den = aa + ab
                s = (a * ab + aa * b) / ops.where(den > 0.0, den, 1.0)
            uc = e[..., 1 : n + 3]  # cells -1..n
            ul = (uc + 0.5 * s)[..., :-1]  # u^L_{j+1/2}, j = -1..n-1
            ur = (uc - 0.5 * s)[..., 1:]  # u^R_{j+1/2}, j = -1..n-1
        alpha = ops.maximum(ops.abs(ul), ops.abs(ur))
        flux = 0.25 * (ul * ul + ur * ur) - 0.5 * alpha * (ur - ul)  # Rusanov flux F_{j+1/2}
        conv = (flux[..., 1:] - flux[..., :-1]) / self.dx
        diff = self.nu * (e[..., g + 1 : g + 1 + n] - 2.0 * u + e[..., g - 1 : g - 1 + n]) / (self.dx * self.dx)
        return diff - conv

    def _substep(self, u, h, ops):
        """One SSP Runge–Kutta step of length h (a float or a (B, 1) array)."""
        u1 = u + h * self._rhs(u, ops)
        if self.integrator == "ssprk2":
            return 0.5 * u + 0.5 * (u1 + h * self._rhs(u1, ops))
        u2 = 0.75 * u + 0.25 * (u1 + h * self._rhs(u1, ops))
        return (1.0 / 3.0) * u + (2.0 / 3.0) * (u2 + h * self._rhs(u2, ops))

    def _substeps_rows(self, a, ops):
        """Adaptive rule: per-row substep count m (same array type as a)."""
        r = self.dt * (self._adv * a + self._diff) / self.cfl
        return ops.clamp_min(ops.ceil(r), 1.0)

    def _advance(self, u, ops):
        """One coarse step of length dt for u of shape (B, n)."""
        amax = ops.absmax(u)
        if not math.isfinite(amax):
            raise ValueError("Burgers state is not finite (NaN or inf); the rollout blew up")
        if self.substeps is None:
            a = ops.row_absmax(u)
            m = self._substeps_rows(a, ops)
            m_max = int(ops.to_float(m.max()))
            m_min = int(ops.to_float(m.min()))
            h = self.dt / m
            for k in range(m_max):
                new = self._substep(u, h, ops)
                u = new if k < m_min else ops.where(m > k, new, u)
            return u
        h = self.dt / self.substeps
        sigma = self.stability_number(h, amax)
        if sigma > self.cfl * (1.0 + 1e-12):
            raise ValueError(
                f"unstable time step for this state: max|u|={amax:.4g} gives stability number {sigma:.4g} > "
                f"cfl={self.cfl:g} (dt={self.dt:g}, substeps={self.substeps}, n={self.n}, nu={self.nu:g}); "
                f"use dt <= {self.max_stable_dt(amax):.6g}, substeps >= {self.min_substeps(amax)} "
                f"or substeps=None (adaptive)"
            )
        for _ in range(self.substeps):
            u = self._substep(u, h, ops)
        return u


def _scheme_repr(name: str, s: BurgersScheme) -> str:
    defaults = BurgersScheme()
    parts = [f"n={s.n}"]
    for key in ("nu", "dt", "substeps", "cfl", "reconstruction", "integrator", "u_max"):
        if getattr(s, key) != getattr(defaults, key):
            parts.append(f"{key}={getattr(s, key)!r}")
    return f"{name}({', '.join(parts)})"


# --------------------------------------------------------------------------
# numpy solver
# --------------------------------------------------------------------------
class BurgersSolver:
    """Coarse explicit finite-volume solver for 1-D viscous Burgers (numpy only).

    Accepts and returns numpy ``float64`` arrays of shape ``(n,)`` or
    ``(B, n)``; anything else (a torch tensor, a list, a float32 array) raises
    ``TypeError``. The scheme and the CFL rule are described in the module
    docstring.

    Args:
        n: number of cells on [0, 2π).
        nu: viscosity ν.
        dt: length of one coarse step.
        substeps: fixed number of equal substeps per step (default 1), or
            ``None`` for the adaptive per-row rule.
        cfl: the stability number allowed per substep (≤ 1).
        reconstruction: ``"constant"`` (first order, the coarse default),
            ``"minmod"`` or ``"vanleer"`` (MUSCL, second order).
        integrator: ``"ssprk3"`` (default) or ``"ssprk2"``.
        u_max: bound on ``max|u|`` checked against the CFL rule at
            construction when ``substeps`` is fixed (``None``: only the
            diffusion limit is checked then; the state is checked every step).
    """

    def __init__(
        self,
        n: int = DEFAULT_N,
        nu: float = DEFAULT_NU,
        dt: float = DEFAULT_DT,
        *,
        substeps: int | None = 1,
        cfl: float = DEFAULT_CFL,
        reconstruction: str = DEFAULT_RECONSTRUCTION,
        integrator: str = "ssprk3",
        u_max: float | None = DEFAULT_U_MAX,
    ) -> None:
        self.scheme = BurgersScheme(
            n=n,
            nu=float(nu),
            dt=float(dt),
            substeps=substeps,
            cfl=float(cfl),
            reconstruction=reconstruction,
            integrator=integrator,
            u_max=None if u_max is None else float(u_max),
        )

    # convenient read-only views of the scheme
    n = property(lambda self: self.scheme.n)
    nu = property(lambda self: self.scheme.nu)
    dt = property(lambda self: self.scheme.dt)
    dx = property(lambda self: self.scheme.dx)
    substeps = property(lambda self: self.scheme.substeps)

    def __repr__(self) -> str:
        return _scheme_repr("BurgersSolver", self.scheme)

    @property
    def x(self) -> np.ndarray:
        """Cell centres (n,)."""
        return cell_centers(self.n)

    def _check(self, u, what: str = "u") -> np.ndarray:
        if not isinstance(u, np.ndarray):
            raise TypeError(
                f"BurgersSolver works on numpy float64 arrays only; {what} is {type(u).__module__}."
                f"{type(u).__qualname__}. Convert explicitly (e.g. t.detach().cpu().double().numpy()) "
                f"or use TorchBurgers for tensors."
            )
        if u.dtype != np.float64:
            raise TypeError(f"BurgersSolver needs dtype float64; {what} has dtype {u.dtype}")
        if u.ndim not in (1, 2) or u.shape[-1] != self.n:
            raise ValueError(f"{what} must have shape (n,) or (B, n) with n={self.n}, got {u.shape}")
        return u

    def substeps_for(self, u: np.ndarray) -> np.ndarray:
        """Substeps per row that one ``step`` of ``u`` takes (int array of shape (B,) or ())."""
        u = self._check(u)
        u2 = u.reshape(-1, self.n)
        if self.substeps is None:
            m = self.scheme._substeps_rows(_NumpyOps.row_absmax(u2), _NumpyOps)[:, 0].astype(np.int64)
        else:
            m = np.full(u2.shape[0], self.substeps, dtype=np.int64)
        return m.reshape(u.shape[:-1])

    def step(self, u: np.ndarray) -> np.ndarray:
        """Advance ``u`` ((n,) or (B, n)) by one coarse step of length dt; returns a new array."""
        u = self._check(u)
        out = self.scheme._advance(u.reshape(-1, self.n), _NumpyOps)
        return out.reshape(u.shape)

    def rollout(
        self,
        u0: np.ndarray,
        steps: int,
        *,
        correction: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Trajectory of ``steps`` coarse steps: shape ``(steps + 1, *u0.shape)``, row 0 is ``u0``.

        ``correction`` (optional) maps the solver output to the next state,
        ``u_{t+1} = correction(step(u_t))`` (solver-in-the-loop); it must return
        a numpy float64 array of the same shape.
        """
        u = self._check(u0, "u0")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        traj = np.empty((steps + 1,) + u.shape, dtype=np.float64)
        traj[0] = u
        for t in range(steps):
            u = self.step(u)
            if correction is not None:
                u = self._check(correction(u), "correction(u)")
                if u.shape != u0.shape:
                    raise ValueError(f"correction changed the shape {u0.shape} -> {u.shape}")
            traj[t + 1] = u
        return traj


# --------------------------------------------------------------------------
# torch twin
# --------------------------------------------------------------------------
class TorchBurgers:
    """The scheme of :class:`BurgersSolver` written with torch ops (differentiable).

    Works on tensors of shape ``(n,)`` or ``(B, n)`` of any floating dtype and
    device; gradients flow through every operation except the (piecewise
    constant) substep count. Used for the first-order baseline of the
    solver-in-the-loop example. In float64 it agrees with
    :class:`BurgersSolver` to rounding (tested to 1e-12).

    Takes the same arguments as :class:`BurgersSolver`; build the twin of an
    existing solver with :meth:`from_solver`.
    """

    def __init__(
        self,
        n: int = DEFAULT_N,
        nu: float = DEFAULT_NU,
        dt: float = DEFAULT_DT,
        *,
        substeps: int | None = 1,
        cfl: float = DEFAULT_CFL,
        reconstruction: str = DEFAULT_RECONSTRUCTION,
        integrator: str = "ssprk3",
        u_max: float | None = DEFAULT_U_MAX,
    ) -> None:
        self.scheme = BurgersScheme(
            n=n,
            nu=float(nu),
            dt=float(dt),
            substeps=substeps,
            cfl=float(cfl),
            reconstruction=reconstruction,
            integrator=integrator,
            u_max=None if u_max is None else float(u_max),
        )

    @classmethod
    def from_solver(cls, solver: BurgersSolver) -> "TorchBurgers":
        twin = cls.__new__(cls)
        twin.scheme = solver.scheme
        return twin

    n = property(lambda self: self.scheme.n)
    nu = property(lambda self: self.scheme.nu)
    dt = property(lambda self: self.scheme.dt)
    dx = property(lambda self: self.scheme.dx)
    substeps = property(lambda self: self.scheme.substeps)

    def __repr__(self) -> str:
        return _scheme_repr("TorchBurgers", self.scheme)

    def _check(self, u, what: str = "u") -> torch.Tensor:
        if not isinstance(u, torch.Tensor):
            raise TypeError(f"TorchBurgers works on torch tensors; {what} is {type(u).__qualname__}")
        if not u.is_floating_point():
            raise TypeError(f"TorchBurgers needs a floating dtype; {what} has dtype {u.dtype}")
        if u.ndim not in (1, 2) or u.shape[-1] != self.n:
            raise ValueError(f"{what} must have shape (n,) or (B, n) with n={self.n}, got {tuple(u.shape)}")
        return u

    def step(self, u: torch.Tensor) -> torch.Tensor:
        """Advance ``u`` ((n,) or (B, n)) by one coarse step of length dt."""
        u = self._check(u)
        out = self.scheme._advance(u.reshape(-1, self.n), _TorchOps)
        return out.reshape(u.shape)

    __call__ = step

    def rollout(
        self,
        u0: torch.Tensor,
        steps: int,
        *,
        correction: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Trajectory ``(steps + 1, *u0.shape)``; ``u_{t+1} = correction(step(u_t))`` when given."""
        u = self._check(u0, "u0")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        traj = [u]
        for _ in range(steps):
            u = self.step(u)
            if correction is not None:
                u = self._check(correction(u), "correction(u)")
            traj.append(u)
        return torch.stack(traj)


# --------------------------------------------------------------------------
# Initial conditions: analytic random Fourier series
# --------------------------------------------------------------------------
def cell_centers(n: int) -> np.ndarray:
    """Cell centres ``(j + 1/2) * 2π/n`` of the n-cell grid."""
    return (np.arange(n) + 0.5) * (DOMAIN_LENGTH / n)


@dataclass(frozen=True)
class FourierInitialCondition:
    r"""``u0(x) = mean + Σ_{k=1..K} (a_k cos kx + b_k sin kx)``.

    The same analytic function is sampled at any resolution:
    :meth:`cell_averages` integrates each mode exactly over a cell
    (cell average of :math:`e^{ikx}` = :math:`e^{ikx_j}\,\mathrm{sinc}(k\Delta x/2)`),
    so the average of 8 fine cells equals the coarse cell average to rounding.
    """

    mean: float
    cos: tuple[float, ...]
    sin: tuple[float, ...]

    @property
    def modes(self) -> int:
        return len(self.cos)

    @property
    def bound(self) -> float:
        """An upper bound on ``max_x |u0(x)|``."""
        return abs(self.mean) + float(np.sum(np.hypot(self.cos, self.sin)))

    def _series(self, x: np.ndarray, factor: np.ndarray) -> np.ndarray:
        k = np.arange(1, self.modes + 1, dtype=np.float64)
        kx = np.multiply.outer(np.asarray(x, dtype=np.float64), k)
        return self.mean + (np.cos(kx) * (factor * np.asarray(self.cos)) + np.sin(kx) * (factor * np.asarray(self.sin))).sum(-1)

    def __call__(self, x) -> np.ndarray:
        """Point values at ``x``."""
        return self._series(np.asarray(x, dtype=np.float64), np.ones(self.modes))

    def cell_averages(self, n: int) -> np.ndarray:
        """Exact cell averages on the n-cell grid, shape (n,)."""
        k = np.arange(1, self.modes + 1, dtype=np.float64)
        half = 0.5 * k * DOMAIN_LENGTH / n
        return self._series(cell_centers(n), np.sin(half) / half)


def initial_condition_fn(
    seed,
    *,
    modes: int = 4,
    decay: float = 1.0,
    amplitude: float = DEFAULT_AMPLITUDE,
    mean_range: float = 0.0,
) -> FourierInitialCondition:
    r"""A smooth random periodic initial condition, deterministic given ``seed``.

    Modes k = 1..``modes`` get Gaussian coefficients scaled by :math:`k^{-\mathrm{decay}}`,
    then the whole series is scaled so that :math:`\sum_k \sqrt{a_k^2 + b_k^2}`
    = ``amplitude`` (hence :math:`\max|u_0 - \mathrm{mean}| \le` ``amplitude``).
    The mean is drawn uniformly from ``[-mean_range, mean_range]`` (always drawn,
    so ``mean_range`` does not change the modes). ``seed`` is anything
    :func:`numpy.random.default_rng` accepts (an int or a sequence of ints).
    """
    if modes < 1:
        raise ValueError(f"modes must be >= 1, got {modes}")
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((2, modes))
    k = np.arange(1, modes + 1, dtype=np.float64)
    g = g / k**decay
    scale = amplitude / float(np.sum(np.hypot(g[0], g[1])))
    mean = float(rng.uniform(-1.0, 1.0)) * mean_range
    return FourierInitialCondition(
        mean=mean,
        cos=tuple(float(v) for v in g[0] * scale),
        sin=tuple(float(v) for v in g[1] * scale),
    )


def initial_condition_fns(batch: int, seed: int, **kwargs) -> list[FourierInitialCondition]:
    """``batch`` initial conditions; element i is ``initial_condition_fn((seed, i), **kwargs)``."""
    return [initial_condition_fn((int(seed), i), **kwargs) for i in range(batch)]


def random_initial_conditions(batch: int, n: int, seed: int, **kwargs) -> np.ndarray:
    """Cell averages ``(batch, n)`` of :func:`initial_condition_fns` ``(batch, seed)`` on the n-cell grid."""
    return np.stack([ic.cell_averages(n) for ic in initial_condition_fns(batch, seed, **kwargs)])


# --------------------------------------------------------------------------
# Fine reference: grid transfer and the reference trajectory
# --------------------------------------------------------------------------
def restrict_cell_averages(u_fine: np.ndarray, n: int) -> np.ndarray:
    """Average blocks of ``n_fine // n`` fine cells onto the n-cell grid (exactly conservative)."""
    n_fine = u_fine.shape[-1]
    if n_fine % n:
        raise ValueError(f"fine grid size {n_fine} is not a multiple of {n}")
    return u_fine.reshape(u_fine.shape[:-1] + (n, n_fine // n)).mean(axis=-1)


def lift_cell_averages(u: np.ndarray, n_fine: int) -> np.ndarray:
    """Spectral interpolation of n-cell averages to ``n_fine``-cell averages.

    Reads the coarse cell averages as the trigonometric polynomial of degree
    ≤ n/2 (Nyquist mode split in half) that has them as exact cell averages,
    then takes that function's exact fine cell averages. For an initial
    condition with fewer than n/2 modes this reproduces
    :meth:`FourierInitialCondition.cell_averages` ``(n_fine)`` to rounding,
    and :func:`restrict_cell_averages` undoes it.
    """
    n = u.shape[-1]
    if n_fine < n or n_fine % n:
        raise ValueError(f"n_fine={n_fine} must be a multiple of n={n}")
    dx, dxf = DOMAIN_LENGTH / n, DOMAIN_LENGTH / n_fine
    uh = np.fft.rfft(u, axis=-1)  # n//2 + 1 bins
    k = np.arange(uh.shape[-1], dtype=np.float64)
    sinc_c = np.ones_like(k)
    sinc_f = np.ones_like(k)
    sinc_c[1:] = np.sin(0.5 * k[1:] * dx) / (0.5 * k[1:] * dx)
    sinc_f[1:] = np.sin(0.5 * k[1:] * dxf) / (0.5 * k[1:] * dxf)
    # coarse rfft bin k -> coefficient of e^{ikx} (grid starts at dx/2), point value, fine cell average, fine bin
    coef = uh * (sinc_f / sinc_c) * np.exp(-0.5j * k * (dx - dxf)) * (n_fine / n)
    if n % 2 == 0:
        coef[..., -1] *= 0.5
    fine = np.zeros(u.shape[:-1] + (n_fine // 2 + 1,), dtype=np.complex128)
    fine[..., : coef.shape[-1]] = coef
    return np.fft.irfft(fine, n=n_fine, axis=-1)


def reference_trajectory(
    u0_coarse: np.ndarray,
    steps: int,
    *,
    refine: int = DEFAULT_REFINE,
    solver: BurgersSolver | None = None,
    nu: float | None = None,
    dt: float | None = None,
    initial: Sequence[FourierInitialCondition] | FourierInitialCondition | None = None,
    reconstruction: str | None = DEFAULT_REFERENCE_RECONSTRUCTION,
    cfl: float = DEFAULT_REFERENCE_CFL,
    return_fine: bool = False,
):
    """The fine-resolution solution at the coarse times, averaged onto the coarse grid.

    Runs :class:`BurgersSolver` on ``refine * n`` cells with the ν, ``dt``
    and integrator of ``solver`` (default: a default :class:`BurgersSolver`
    with ``n = u0_coarse.shape[-1]``; ``nu``/``dt`` override) and the
    second-order ``reconstruction="vanleer"`` (``None``: the solver's own), one
    fine step per coarse step of length ``dt``, each made of adaptive
    substeps (rule in the module docstring, ``cfl = 0.5``; about 20 fine
    substeps per coarse step for the default problem).

    The fine initial condition is the same function as the coarse one:
    ``initial`` (the :class:`FourierInitialCondition` objects, one per row)
    sampled at the fine resolution, checked against ``u0_coarse``; without
    ``initial`` the coarse cell averages are lifted spectrally
    (:func:`lift_cell_averages`, exact for band-limited initial conditions).

    Returns ``(steps + 1, *u0_coarse.shape)`` (and the fine trajectory
    ``(steps + 1, ..., refine * n)`` too when ``return_fine``).
    """
    if not isinstance(u0_coarse, np.ndarray) or u0_coarse.dtype != np.float64:
        raise TypeError("reference_trajectory needs u0_coarse as a numpy float64 array")
    if u0_coarse.ndim not in (1, 2):
        raise ValueError(f"u0_coarse must have shape (n,) or (B, n), got {u0_coarse.shape}")
    if not isinstance(refine, (int, np.integer)) or refine < 1:
        raise ValueError(f"refine must be a positive integer, got {refine!r}")
    n = u0_coarse.shape[-1]
    base = solver.scheme if solver is not None else BurgersScheme(n=n, u_max=None)
    if base.n != n:
        raise ValueError(f"solver has n={base.n} but u0_coarse has {n} cells")
    n_fine = n * int(refine)
    fine_solver = BurgersSolver(
        n_fine,
        base.nu if nu is None else nu,
        base.dt if dt is None else dt,
        substeps=None,
        cfl=cfl,
        reconstruction=base.reconstruction if reconstruction is None else reconstruction,
        integrator=base.integrator,
        u_max=None,
    )
    if initial is not None:
        ics = [initial] if isinstance(initial, FourierInitialCondition) else list(initial)
        rows = u0_coarse.reshape(-1, n)
        if len(ics) != rows.shape[0]:
            raise ValueError(f"{len(ics)} initial conditions for {rows.shape[0]} rows of u0_coarse")
        coarse = np.stack([ic.cell_averages(n) for ic in ics])
        if not np.allclose(coarse, rows, rtol=0.0, atol=1e-10):
            raise ValueError("initial does not match u0_coarse (its coarse cell averages differ)")
        u0_fine = np.stack([ic.cell_averages(n_fine) for ic in ics]).reshape(u0_coarse.shape[:-1] + (n_fine,))
    else:
        u0_fine = lift_cell_averages(u0_coarse, n_fine)
    fine = fine_solver.rollout(u0_fine, steps)
    coarse_traj = restrict_cell_averages(fine, n)
    return (coarse_traj, fine) if return_fine else coarse_traj
