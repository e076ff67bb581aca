"""The coarse Burgers solver (NumPy) and its torch twin, both over :class:`~.scheme.BurgersScheme`.

:class:`BurgersSolver` advances NumPy cell averages; :class:`TorchBurgers` is the
same scheme on torch tensors (a leading batch axis, autograd through it), so
the solver-in-the-loop oracle can roll out many corrected trajectories at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .scheme import (
    DEFAULT_CFL,
    DEFAULT_DT,
    DEFAULT_N,
    DEFAULT_NU,
    DEFAULT_RECONSTRUCTION,
    DEFAULT_U_MAX,
    BurgersScheme,
    _NumpyOps,
    _scheme_repr,
    _TorchOps,
    cell_centers,
)


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
    def from_solver(cls, solver: BurgersSolver) -> TorchBurgers:
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
