r"""Solver-in-the-loop: a correction network inside the time loop of a black-box solver.

Given a solver step :math:`S` (any Python callable on numpy arrays: numpy
code, a wrapper around a subprocess or compiled code) and a corrector
:math:`C_\theta`, the corrected rollout from :math:`u_0` is

.. math::  u_{t+1} = C_\theta\big(S(u_t)\big), \qquad t = 0, \dots, T-1,

and the training loss against a fine-resolution reference :math:`r_t` (on the
coarse grid) over a batch of B initial conditions is

.. math::  \ell(\theta) = \frac{1}{T B n} \sum_{t=1}^{T} \sum_{b, j} \rho\big(u_{t,b,j} - r_{t,b,j}\big),
           \qquad \rho(e) = |e| \ (\text{"mae"}) \text{ or } e^2 \ (\text{"mse"}).

(Um et al., "Solver-in-the-Loop", NeurIPS 2020; the PDE error-correction
application of DeepZero, Chen et al., ICLR 2024, arXiv:2310.02025.)

The solver has no gradients, so :math:`\theta` is trained with zeroth-order
estimates: the loss is evaluated at q perturbed parameter sets. All q
rollouts advance together: at every time step the q·B states are stacked into
**one** solver call ``S(U)`` with ``U`` of shape ``(q·B, n)`` and the q
correctors run as one stacked forward
(``corrector.forward_stacked(params, U) -> (q, B, n)``). The solver only ever
receives numpy ``float64`` arrays; torch tensors never reach it.

For the first-order baseline, :meth:`SolverInTheLoop.rollout_differentiable`
runs the same loop through a differentiable torch twin of the solver (for
Burgers: :class:`~edgezo.adapters.solver.burgers.TorchBurgers`), so autograd
can backpropagate through the whole rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from edgezo.errors import EdgezoError

from ...models.protocols import StackedForward

LOSSES = ("mae", "mse")

SolverStep = Callable[[np.ndarray], np.ndarray]


class SolverError(EdgezoError, RuntimeError):
    """The black-box solver returned something that is not a valid next state."""


def rollout_error(traj: torch.Tensor, reference: torch.Tensor, loss: str = "mae") -> torch.Tensor:
    r"""Per-leading-index error of trajectories ``(*lead, B, T+1, n)`` against ``(B, T+1, n)``.

    Mean of :math:`|e|` (``"mae"``) or :math:`e^2` (``"mse"``) over B, the
    steps t = 1..T (the initial state is given, not predicted) and the n cells.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    err = traj[..., 1:, :] - reference[..., 1:, :]
    err = err.abs() if loss == "mae" else err * err
    return err.mean(dim=(-1, -2, -3))


class SolverInTheLoop:
    """Rollouts ``u_{t+1} = C_θ(S(u_t))`` of a black-box solver step S with a torch corrector C_θ.

    Args:
        solver: one solver step on numpy ``float64`` arrays, ``(N, n) -> (N, n)``
            (or ``(n,) -> (n,)`` with ``batched=False``). Never receives a
            tensor and is never differentiated.
        corrector: ``nn.Module`` mapping states ``(B, n) -> (B, n)``; a
            ``forward_stacked(params, u (q, B, n)) -> (q, B, n)`` method
            enables the batched rollout of q parameter sets.
        steps: number of solver steps T per rollout.
        loss: ``"mae"`` (default) or ``"mse"`` (see :func:`rollout_error`).
        torch_solver: optional differentiable twin of ``solver`` (torch tensors
            in and out), used only by :meth:`rollout_differentiable` for the
            first-order baseline.
        batched: ``True`` when ``solver`` takes a batch ``(N, n)`` in one call;
            ``False`` calls it once per state.
        bounds: optional limits on the corrected state, applied after every
            correction in every rollout path: ``"initial"`` clamps each row to
            ``[min u0, max u0]`` of its own initial state (the maximum
            principle of viscous scalar conservation laws such as Burgers',
            which the exact solution and the reference obey), ``(lo, hi)``
            clamps to fixed numbers, ``None`` (default) leaves the state as the
            corrector made it. Keeps a badly perturbed corrector from driving a
            solver with a stability limit (CFL) out of its range.

    Counters ``solver_calls`` and ``solver_states`` (states advanced) record
    the work the black box did.
    """

    def __init__(self, solver: SolverStep, corrector: nn.Module, *, steps: int, loss: str = "mae",
                 torch_solver: Callable[[torch.Tensor], torch.Tensor] | None = None, batched: bool = True,
                 bounds: str | tuple[float, float] | None = None):
        if not callable(solver):
            raise TypeError(f"solver must be a callable numpy step (N, n) -> (N, n), got {type(solver).__name__}")
        if int(steps) < 1:
            raise ValueError(f"steps must be a positive number of solver steps, got {steps}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.solver = solver
        self.corrector = corrector
        self.steps = int(steps)
        self.loss = loss
        self.torch_solver = torch_solver
        self.batched = bool(batched)
        if not (bounds is None or bounds == "initial" or (isinstance(bounds, (tuple, list)) and len(bounds) == 2
                                                           and float(bounds[0]) < float(bounds[1]))):
            raise ValueError(f"bounds must be None, 'initial' or (lo, hi) with lo < hi, got {bounds!r}")
        self.bounds = tuple(float(b) for b in bounds) if isinstance(bounds, (tuple, list)) else bounds
        self.solver_calls = 0
        self.solver_states = 0

    # --- the black box ----------------------------------------------------------
    @property
    def _param(self) -> torch.Tensor:
        return next(self.corrector.parameters())

    @staticmethod
    def _checked(out, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(out, np.ndarray) or out.shape != shape:
            raise SolverError(f"the solver must return a numpy array of shape {shape}, got "
                              f"{type(out).__name__} of shape {getattr(out, 'shape', None)}")
        return out

    def solve(self, states: np.ndarray) -> np.ndarray:
        """One solver step on ``(N, n)`` numpy float64 states, checked.

        The solver gets its own copy of the states (it may work in place) and
        its result is copied too (it may reuse an output buffer).
        """
        states = np.array(states, dtype=np.float64, order="C", copy=True)
        if self.batched:
            out = self._checked(self.solver(states), states.shape).copy()
            self.solver_calls += 1
        else:
            out = np.empty_like(states)
            for i in range(len(states)):
                out[i] = self._checked(self.solver(states[i].copy()), states.shape[1:])
            self.solver_calls += len(states)
        self.solver_states += len(states)
        if not np.all(np.isfinite(out)):
            raise SolverError("the solver returned non-finite values (NaN or inf); the rollout blew up")
        return out

    def _step_tensor(self, u: torch.Tensor) -> torch.Tensor:
        """S applied to a tensor of states ``(..., n)``: numpy in, numpy out, back to a tensor."""
        shape = u.shape
        out = self.solve(u.detach().reshape(-1, shape[-1]).cpu().numpy())
        return torch.from_numpy(out).to(device=u.device, dtype=u.dtype).reshape(shape)

    # --- rollouts -----------------------------------------------------------------
    def _limits(self, u0: torch.Tensor):
        """A function clamping corrected states to :attr:`bounds` (identity when None)."""
        if self.bounds is None:
            return lambda u: u
        if self.bounds == "initial":
            lo, hi = u0.amin(dim=-1, keepdim=True), u0.amax(dim=-1, keepdim=True)
            return lambda u: torch.maximum(torch.minimum(u, hi), lo)
        lo, hi = self.bounds
        return lambda u: u.clamp(lo, hi)

    def _as_states(self, u0) -> torch.Tensor:
        p = self._param
        u0 = torch.as_tensor(u0)
        if u0.dim() != 2:
            raise ValueError(f"initial states must have shape (B, n), got {tuple(u0.shape)}")
        return u0.to(device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def rollout(self, u0, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Corrected trajectory ``(B, T+1, n)`` at the module's parameters (or ``params``, one set)."""
        u = self._as_states(u0)
        limit = self._limits(u)
        traj = [u]
        for _ in range(self.steps):
            s = self._step_tensor(u)
            u = limit(self.corrector(s) if params is None else functional_call(self.corrector, dict(params), (s,)))
            traj.append(u)
        return torch.stack(traj, dim=1)

    @torch.no_grad()
    def rollout_uncorrected(self, u0) -> torch.Tensor:
        """The solver alone, ``(B, T+1, n)`` (the no-correction baseline)."""
        u = self._as_states(u0)
        traj = [u]
        for _ in range(self.steps):
            u = self._step_tensor(u)
            traj.append(u)
        return torch.stack(traj, dim=1)

    @torch.no_grad()
    def rollout_stacked(self, params: Mapping[str, torch.Tensor], u0) -> torch.Tensor:
        """Trajectories of q parameter sets at once, ``(q, B, T+1, n)``.

        ``params[name]`` carries a leading axis q. Each time step makes one
        solver call on the ``(q·B, n)`` stacked states and one stacked
        corrector forward.
        """
        return torch.stack(list(self._stacked_states(params, u0)), dim=2)

    def _stacked_states(self, params, u0):
        if not isinstance(self.corrector, StackedForward):
            raise TypeError(f"{type(self.corrector).__name__} has no forward_stacked(); "
                            "use rollout() once per parameter set")
        u0 = self._as_states(u0)
        limit = self._limits(u0)
        q = next(iter(params.values())).shape[0]
        u = u0.unsqueeze(0).expand(q, *u0.shape)
        yield u
        for _ in range(self.steps):
            u = limit(self.corrector.forward_stacked(params, self._step_tensor(u)))
            yield u

    @torch.no_grad()
    def losses_stacked(self, params: Mapping[str, torch.Tensor], u0, reference: torch.Tensor) -> torch.Tensor:
        """Loss of each of q parameter sets, ``(q,)``, without storing the trajectories."""
        u0 = self._as_states(u0)
        reference = self._reference(reference, *u0.shape)
        total = None
        for t, u in enumerate(self._stacked_states(params, u0)):
            if t == 0:
                continue
            err = u - reference[:, t]
            err = err.abs() if self.loss == "mae" else err * err
            term = err.mean(dim=(-1, -2))
            total = term if total is None else total + term
        return total / self.steps

    def _reference(self, reference, b: int, n: int) -> torch.Tensor:
        p = self._param
        reference = torch.as_tensor(reference).to(device=p.device, dtype=p.dtype)
        if reference.shape != (b, self.steps + 1, n):
            raise ValueError(f"reference must have shape (B, T+1, n) = {(b, self.steps + 1, n)}, "
                             f"got {tuple(reference.shape)}")
        return reference

    def rollout_differentiable(self, u0) -> torch.Tensor:
        """``(B, T+1, n)`` through the torch twin of the solver, with autograd (first-order baseline)."""
        if self.torch_solver is None:
            raise TypeError("the solver is a black box: a first-order rollout needs a differentiable torch twin "
                            "(SolverInTheLoop(..., torch_solver=...))")
        u = self._as_states(u0)
        limit = self._limits(u)
        traj = [u]
        for _ in range(self.steps):
            u = limit(self.corrector(self.torch_solver(u)))
            traj.append(u)
        return torch.stack(traj, dim=1)

    def error(self, traj: torch.Tensor, reference) -> torch.Tensor:
        """This loop's loss of trajectories ``(*lead, B, T+1, n)``."""
        return rollout_error(traj, self._reference(reference, traj.shape[-3], traj.shape[-1]), self.loss)
