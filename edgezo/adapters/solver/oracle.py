r"""SolverOracle: the Oracle contract over a solver-in-the-loop rollout.

A batch is ``(u0, reference)``: initial states ``(B, n)`` and the reference
trajectories ``(B, T+1, n)`` on the coarse grid. The loss at parameters θ is
the rollout error :math:`\ell(\theta)` of
:class:`~edgezo.adapters.solver.loop.SolverInTheLoop`. Any engine estimator
(RGE, CGE, ...) trains the corrector through :meth:`SolverOracle.evaluate`;
the perturbed points ``θ + s·z(seed)`` / ``θ + δ e_j`` are built exactly as by
:class:`~edgezo.oracles.torch_oracle.TorchOracle` (never written into the
module), and the q rollouts of a query set advance together — one solver call
per time step on ``(q·B, n)`` stacked states (``path="stacked"``), or one
rollout per point (``path="loop"``, the reference path).

One loss evaluation (a rollout of B initial conditions) counts as one forward
pass, ``samples_forwarded`` counts B per evaluation. :meth:`autograd` — the
first-order baseline — needs the loop's differentiable torch twin of the
solver; the black box itself is never differentiated.
"""

from __future__ import annotations

from typing import Any

import torch

from ...models.protocols import StackedForward
from ...oracle import Batch, OracleError, batch_size_of
from ...oracles.torch_oracle import TorchOracle
from ...params import GroupSpec
from .loop import SolverInTheLoop

PATHS = ("loop", "stacked")


class SolverOracle(TorchOracle):
    """Oracle whose loss is the error of a corrected black-box solver rollout.

    Args:
        loop: the :class:`SolverInTheLoop` (solver, corrector, steps, loss).
        groups: parameter grouping of the corrector (see :class:`~edgezo.params.ParamSpace`).
        path: ``"stacked"`` (default when the corrector has ``forward_stacked``),
            ``"loop"`` or ``"auto"`` (time both on the first call of each query shape).
        max_rows: most states ``q_chunk · B`` advanced in one solver call; larger
            query sets are evaluated in chunks.
    """

    backend = "solver"

    def __init__(self, loop: SolverInTheLoop, *, groups: GroupSpec = None, path: str | None = None,
                 max_rows: int = 2**16):
        stacked = isinstance(loop.corrector, StackedForward)
        path = path if path is not None else ("stacked" if stacked else "loop")
        if path != "auto" and path not in PATHS:
            raise ValueError(f"unknown evaluation path {path!r}; use 'auto' or one of {PATHS}")
        if int(max_rows) < 1:
            raise ValueError(f"max_rows must be positive, got {max_rows}")
        super().__init__(loop.corrector, None, groups=groups, path=path)
        self.loop = loop
        self.max_rows = int(max_rows)

    def _available_paths(self) -> list[str]:
        return ["loop", "stacked"] if isinstance(self.model, StackedForward) else ["loop"]

    def _run(self, path: str, block: torch.Tensor, x, y) -> torch.Tensor:
        params = self.layout.split(block)
        if path == "stacked":
            return self.loop.losses_stacked(params, x, y)
        out = []
        for i in range(block.shape[0]):
            traj = self.loop.rollout(x, {k: v[i] for k, v in params.items()})
            out.append(self.loop.error(traj, y))
        return torch.stack(out)

    def _chunk(self, q: int, batch_size: int) -> int:
        """Queries per block: at most ``max_rows`` states ``q_chunk · B`` per solver call."""
        return max(1, min(q, self.max_rows // max(1, batch_size)))

    def loss(self, batch: Batch) -> float:
        x, y = self._batch_to_device(batch)[:2]
        value = self.loop.error(self.loop.rollout(x), y)
        self.counters.add(1, batch_size_of(batch))
        return float(value)

    def autograd(self, batch: Batch) -> tuple[float, torch.Tensor]:
        if self.loop.torch_solver is None:
            raise OracleError("the solver is a black box without gradients; the first-order baseline needs a "
                              "differentiable torch twin (SolverInTheLoop(..., torch_solver=...))")
        x, y = self._batch_to_device(batch)[:2]
        params = self.space.parameters()
        for p in params:
            p.grad = None
        value = self.loop.error(self.loop.rollout_differentiable(x), y)
        grads = torch.autograd.grad(value, params)
        self.counters.add(1, batch_size_of(batch))
        return float(value.detach()), torch.cat([g.reshape(-1) for g in grads])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The corrected trajectories ``(B, T+1, n)`` from initial states ``x`` (not counted)."""
        return self.loop.rollout(x.to(self.device))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "solver_calls": self.loop.solver_calls,
                "solver_states": self.loop.solver_states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.loop.solver_calls = int(state.get("solver_calls", self.loop.solver_calls))
        self.loop.solver_states = int(state.get("solver_states", self.loop.solver_states))
