"""The finite-volume scheme of the Burgers problem (see :mod:`edgezo.adapters.solver.burgers`).

Constants, the NumPy/torch array operations and :class:`BurgersScheme`, which
both solvers advance with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

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
# Initial conditions: analytic random Fourier series
# --------------------------------------------------------------------------
def cell_centers(n: int) -> np.ndarray:
    """Cell centres ``(j + 1/2) * 2π/n`` of the n-cell grid."""
    return (np.arange(n) + 0.5) * (DOMAIN_LENGTH / n)
