"""TorchOracle: losses of a ``torch.nn.Module`` at many perturbed points.

Perturbed points are never written into the module: each evaluation builds
``P = θ + s·Z`` (or ``θ + δ e_j``) as new tensors and runs the model
functionally, so θ is restored exactly (bit for bit, in any dtype) — the MeZO
in-place ``+μ, −2μ, +μ`` drift cannot happen.

Three evaluation paths:

* ``"loop"`` — one ``torch.func.functional_call`` per point;
* ``"stacked"`` — the model's own ``forward_stacked(params, x)`` evaluates all
  q points in one call along a leading perturbation axis (e.g. ``baddbmm`` for
  an MLP);
* ``"vmap"`` — ``torch.func.vmap`` over ``functional_call``;
* ``"lean"`` — no copy of θ: each module's perturbed parameters are generated
  in a forward pre-hook and dropped after it (:mod:`edgezo.oracles.lean`,
  docs/memory.md); peak memory ≈ inference + one layer.

``max_memory`` (bytes, a size such as ``"8GB"``, or ``"auto"`` for the free
device memory) picks ``"lean"`` for every query set whose stacked evaluation
would need more than that: θ's copy, one chunk block and the q directions.

``coord_path="delta"`` evaluates coordinate queries (CGE) with the model's
``forward_coordinates(name, index, delta, x)`` (:class:`CoordinateForward`, e.g.
the TT-MLP): one parameter tensor at a time, the perturbed layer's output
changed by the exact single-entry term instead of q full forwards
(docs/methods/tensor-train-zo.md). Each query still counts as one forward pass.

``path="auto"`` times the available paths on the first call for each query
shape (query kind, number of points, batch size) and keeps the fastest; the
choice is part of :meth:`state_dict` so a resumed run takes the same path.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.func import functional_call

from ..direction_cache import cached_directions
from ..models.protocols import CoordinateForward, StackedForward
from ..oracle import Batch, CoordQueries, Counters, Oracle, Queries, SeedQueries, SeedUpdate, batch_size_of
from ..params import GroupSpec, ParamSpace
from .lean import LeanEvaluator, available_memory, parse_memory, stacked_extra_bytes

PATHS = ("loop", "stacked", "vmap", "lean")
COORD_PATHS = ("block", "delta")


def best_time_us(run, *, reps: int, cuda: bool = False) -> float:
    """Fastest of ``reps`` timed calls of ``run()`` in microseconds (after one warm-up call the caller makes)."""
    best = float("inf")
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


class TorchOracle(Oracle):
    """Oracle over a torch module.

    Args:
        model: the network; parameters stay where they are (CPU or CUDA).
        loss_fn: ``loss_fn(outputs (*lead, B, ...), targets (B, ...)) -> (*lead)``
            (see :mod:`edgezo.losses`).
        groups: parameter grouping for :class:`~edgezo.params.ParamSpace`.
        path: ``"auto"`` or one of ``"loop"``, ``"stacked"``, ``"vmap"``, ``"lean"``.
        max_stack_elems: bound on ``q_chunk × dim`` entries of a stacked
            parameter block; larger query sets are evaluated in chunks.
        max_memory: memory budget in bytes (or ``"8GB"``, ``"auto"``): with
            ``path="auto"``, query sets whose stacked evaluation needs more
            extra memory than this take the lean path. None: no budget.

    Protected API for subclasses (:data:`SUBCLASS_HOOKS`; a subclass overrides
    these and the public :class:`~edgezo.oracles.base.Oracle` methods, nothing
    else — ``tests/edgezo/oracles/test_oracle_contract.py`` checks it):

    * ``_available_paths() -> list[str]`` — the evaluation paths ``"auto"`` times;
    * ``_run(path, block, x, y) -> (n,)`` — losses of the ``n`` parameter rows of
      ``block`` on the batch ``(x, y)`` along ``path``;
    * ``_chunk(q, batch_size) -> int`` — how many rows one ``_run`` call takes.

    :class:`~edgezo.adapters.solver.oracle.SolverOracle` (a solver rollout per
    row) and :class:`~edgezo.oracles.simulated.SimulatedOracle` (a target's
    datapath) are the subclasses in this package.
    """

    backend = "torch"
    SUBCLASS_HOOKS = ("_available_paths", "_run", "_chunk")

    def __init__(self, model: torch.nn.Module, loss_fn, *, groups: GroupSpec = None, path: str = "auto",
                 max_stack_elems: int = 2**24, max_memory=None, coord_path: str = "block"):
        if path != "auto" and path not in PATHS:
            raise ValueError(f"unknown evaluation path {path!r}; use 'auto' or one of {PATHS}")
        if coord_path not in COORD_PATHS:
            raise ValueError(f"unknown coord_path {coord_path!r}; use one of {COORD_PATHS}")
        if coord_path == "delta" and not isinstance(model, CoordinateForward):
            raise ValueError(f"coord_path='delta' needs a model with forward_coordinates() (e.g. tt-mlp); "
                             f"{type(model).__name__} has none: use coord_path='block'")
        if path == "stacked" and not isinstance(model, StackedForward):
            raise ValueError(f"{type(model).__name__} has no forward_stacked(); use path='loop' or 'vmap'")
        self.model = model
        self.loss_fn = loss_fn
        self.space = ParamSpace(model, groups)
        self.layout = self.space.layout
        self.path = path
        self.coord_path = coord_path
        self.max_stack_elems = int(max_stack_elems)
        budget = parse_memory(max_memory)
        self.max_memory = available_memory(self.space.device) if budget == "auto" else budget
        self.lean = LeanEvaluator(model, self.space)
        self.counters = Counters()
        self.choices: dict[str, str] = {}
        self.timings: dict[str, dict[str, float]] = {}

    # --- parameters ---------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.space.device

    def get_flat(self) -> torch.Tensor:
        return self.space.get_flat()

    def set_flat(self, values: torch.Tensor) -> None:
        self.space.set_flat(values.to(device=self.device, dtype=self.space.dtype))

    def optimizer_parameters(self) -> list[torch.Tensor]:
        return self.space.parameters()

    def set_grad(self, grad: torch.Tensor) -> None:
        self.space.set_grad_flat(grad)

    def apply_seed_update(self, update: SeedUpdate, lr: float) -> None:
        if self._lean_for(len(update.seeds)):
            self.lean.apply_seed_update(update, lr)
            return
        g = self.layout.group(update.group)
        z = cached_directions(update.seeds, g.offset, g.numel, update.kind, self.device, self.space.dtype)
        coeffs = torch.tensor(update.coeffs, dtype=z.dtype, device=z.device)
        step = (coeffs @ z) * lr
        with torch.no_grad():
            for name, p in self.space.named_parameters():
                e = self.layout.entry(name)
                lo, hi = max(e.offset, g.offset), min(e.offset + e.numel, g.stop)
                if lo < hi:
                    p.view(-1)[lo - e.offset : hi - e.offset] -= step[lo - g.offset : hi - g.offset]

    # --- evaluation -----------------------------------------------------------
    def _batch_to_device(self, batch: Batch):
        return [t.to(self.device) if isinstance(t, torch.Tensor) else t for t in batch]

    def _perturbed(self, theta: torch.Tensor, queries: Queries, lo: int, hi: int) -> torch.Tensor:
        """Rows ``lo:hi`` of the perturbed parameter block, shape (hi-lo, dim)."""
        n = hi - lo
        block = theta.unsqueeze(0).expand(n, -1).clone()
        if isinstance(queries, SeedQueries):
            g = self.layout.group(queries.group)
            z = cached_directions(queries.seeds, g.offset, g.numel, queries.kind, theta.device, theta.dtype)[lo:hi]
            scales = torch.tensor(queries.scales[lo:hi], dtype=theta.dtype, device=theta.device)
            block[:, g.offset : g.stop] += scales.unsqueeze(1) * z
        else:
            coords = torch.tensor(queries.coords[lo:hi], dtype=torch.long, device=theta.device)
            if n and (int(coords.min()) < 0 or int(coords.max()) >= self.dim):
                raise IndexError(f"coordinate out of range [0, {self.dim})")
            deltas = torch.tensor(queries.deltas[lo:hi], dtype=theta.dtype, device=theta.device)
            rows = torch.arange(n, device=theta.device)
            block[rows, coords] += deltas
        return block

    def _run(self, path: str, block: torch.Tensor, x, y) -> torch.Tensor:
        params = self.layout.split(block)
        buffers = dict(self.model.named_buffers())
        if path == "stacked":
            return self.loss_fn(self.model.forward_stacked(params, x), y)
        if path == "vmap":
            def one(p):
                return self.loss_fn(functional_call(self.model, (p, buffers), (x,)), y)
            return torch.func.vmap(one)(params)
        out = []
        for i in range(block.shape[0]):
            row = {k: v[i] for k, v in params.items()}
            out.append(self.loss_fn(functional_call(self.model, (row, buffers), (x,)), y))
        return torch.stack(out)

    def _lean_for(self, q: int) -> bool:
        """Whether q queries take the lean path: asked for, or the stacked path's extra memory is over budget."""
        if self.path == "lean":
            return True
        if self.path != "auto" or self.max_memory is None:
            return False
        itemsize = torch.empty((), dtype=self.space.dtype).element_size()
        return stacked_extra_bytes(self.dim, q, self._chunk(q, 0), itemsize) > self.max_memory

    def _available_paths(self) -> list[str]:
        paths = ["loop", "vmap"]
        if isinstance(self.model, StackedForward):
            paths.insert(1, "stacked")
        return paths

    def _choose(self, key: str, block: torch.Tensor, x, y) -> str:
        if self.path != "auto":
            return self.path
        if key in self.choices:
            return self.choices[key]
        timings = {}
        for path in self._available_paths():
            try:
                self._run(path, block, x, y)  # warm-up
            except Exception:  # a path the model does not support (e.g. vmap over data-dependent code)
                continue
            timings[path] = best_time_us(lambda: self._run(path, block, x, y), reps=3, cuda=block.is_cuda)
        choice = min(timings, key=timings.get)
        self.choices[key] = choice
        self.timings[key] = timings
        return choice

    def _chunk(self, q: int, batch_size: int) -> int:
        """Queries per perturbed block: at most ``max_stack_elems`` stacked parameter values."""
        return max(1, min(q, self.max_stack_elems // max(1, self.dim)))

    def _evaluate_coord_deltas(self, queries: CoordQueries, x, y) -> torch.Tensor:
        """Coordinate queries through ``model.forward_coordinates``, one parameter tensor at a time."""
        coords = torch.tensor(queries.coords, dtype=torch.long)
        if len(coords) and (int(coords.min()) < 0 or int(coords.max()) >= self.dim):
            raise IndexError(f"coordinate out of range [0, {self.dim})")
        out = torch.empty(len(coords), dtype=torch.float64)
        theta = self.space.get_flat()
        deltas = torch.tensor(queries.deltas, dtype=theta.dtype, device=theta.device)
        # the perturbation actually stored: fl(θ_j + δ) − θ_j, as in the block path
        moved = (theta[coords.to(theta.device)] + deltas) - theta[coords.to(theta.device)]
        with torch.no_grad():
            for e in self.layout.entries:
                sel = torch.nonzero((coords >= e.offset) & (coords < e.offset + e.numel)).flatten()
                if sel.numel():
                    local = (coords[sel] - e.offset).to(theta.device)
                    outputs = self.model.forward_coordinates(e.name, local, moved[sel.to(theta.device)], x)
                    out[sel] = self.loss_fn(outputs, y).reshape(-1).double().cpu()
        return out

    def evaluate(self, queries: Queries, batch: Batch) -> torch.Tensor:
        x, y = self._batch_to_device(batch)[:2]
        q = len(queries)
        kind = "seed" if isinstance(queries, SeedQueries) else "coord"
        if kind == "coord" and self.coord_path == "delta":
            losses = self._evaluate_coord_deltas(queries, x, y)
            self.counters.add(q, batch_size_of(batch))
            return losses
        if self._lean_for(q):
            self.choices[f"{kind}:q={q}:b={batch_size_of(batch)}"] = "lean"
            losses = self.lean.evaluate(queries, x, y, self.loss_fn)
            self.counters.add(q, batch_size_of(batch))
            return losses
        theta = self.space.get_flat()
        chunk = self._chunk(q, batch_size_of(batch))
        losses = []
        with torch.no_grad():
            for lo in range(0, q, chunk):
                hi = min(q, lo + chunk)
                block = self._perturbed(theta, queries, lo, hi)
                path = self._choose(f"{kind}:q={hi - lo}:b={batch_size_of(batch)}", block, x, y)
                losses.append(self._run(path, block, x, y).reshape(-1))
        self.counters.add(q, batch_size_of(batch))
        return torch.cat(losses).to(torch.float64)

    def loss(self, batch: Batch) -> float:
        x, y = self._batch_to_device(batch)[:2]
        with torch.no_grad():
            value = self.loss_fn(self.model(x), y)
        self.counters.add(1, batch_size_of(batch))
        return float(value)

    def autograd(self, batch: Batch) -> tuple[float, torch.Tensor]:
        x, y = self._batch_to_device(batch)[:2]
        params = self.space.parameters()
        for p in params:
            p.grad = None
        value = self.loss_fn(self.model(x), y)
        grads = torch.autograd.grad(value, params)
        self.counters.add(1, batch_size_of(batch))
        return float(value.detach()), torch.cat([g.reshape(-1) for g in grads])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.model(x.to(self.device))
        finally:
            self.model.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {"choices": dict(self.choices)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.choices.update(state.get("choices", {}))
