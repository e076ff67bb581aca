"""Forward parallelization of CGE across processes (DeepZero §4, "forward parallelization").

Every rank holds the same θ and receives the same batch. The active
coordinates of a step are split into one contiguous run per rank so that the
ranks do equal work: with feature reuse a coordinate of stage ``l`` costs a
forward from stage ``l`` on, i.e. ``c_l = Σ_{k ≥ l} MACs_k`` (multiply-adds
of the conv and linear layers, counted once with forward hooks, identical on
every rank). Each rank evaluates its coordinates (batched, with reuse, in its
own :class:`~edgezo.oracles.staged.StagedOracle`) and the ranks exchange only
(coordinate, difference) rows with one ``all_gather``; every rank then holds
the full estimate and applies the same update, so θ stays in sync without
sending parameters.

A general distributed oracle lives in :mod:`edgezo.oracles.distributed`; this
module is the CGE-specific split used by the DeepZero adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from ...distributed import init_process_group
from ...estimators.base import Estimate, Estimator
from ...estimators.cge import CGE
from ...oracle import Batch, CoordQueries, Oracle
from ...params import ParamLayout


class _MacCounter(TorchFunctionMode):
    """Counts multiply-adds of the conv2d / linear calls made under it."""

    def __init__(self):
        super().__init__()
        self.macs = 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ("conv2d", "linear") and isinstance(out, torch.Tensor):
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            per_output = weight[0].numel() if name == "conv2d" else weight.shape[-1]
            self.macs += float(out.numel()) * per_output
        return out


def stage_costs(model: torch.nn.Module, example_x: torch.Tensor) -> list[float]:
    """Multiply-adds per sample of each stage of a staged model (its conv2d and linear calls)."""
    costs = []
    h = example_x[:1]
    with torch.no_grad():
        for stage in model.stages:
            with _MacCounter() as counter:
                h = stage(h)
            costs.append(counter.macs)
    return costs


def coordinate_costs(layout: ParamLayout, model: torch.nn.Module, example_x: torch.Tensor) -> torch.Tensor:
    """Cost of one coordinate query, per flat index: the MACs of a forward from its stage."""
    per_stage = stage_costs(model, example_x)
    suffix = np.cumsum(per_stage[::-1])[::-1]
    out = torch.empty(layout.dim, dtype=torch.float64)
    for e in layout.entries:
        out[e.offset : e.offset + e.numel] = float(suffix[model.stage_of(e.name)]) + 1.0
    return out


def balanced_split(coords: torch.Tensor, costs: torch.Tensor | None, parts: int) -> list[torch.Tensor]:
    """Split sorted ``coords`` into ``parts`` contiguous runs of near-equal total cost.

    Run ``r`` ends at the cut nearest to ``(r+1)/parts`` of the cumulative
    cost, so a run's cost is off the mean by at most one coordinate's cost.
    Deterministic: every rank computes the same split.
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    coords = torch.as_tensor(coords, dtype=torch.long)
    n = coords.numel()
    w = torch.ones(n, dtype=torch.float64) if costs is None else torch.as_tensor(costs, dtype=torch.float64)
    if w.numel() != n:
        raise ValueError(f"{w.numel()} costs for {n} coordinates")
    cum = torch.cumsum(w, 0)
    total = float(cum[-1]) if n else 0.0
    bounds = [0]
    for r in range(1, parts):
        if not n:
            bounds.append(0)
            continue
        target = total * r / parts
        i = min(int(torch.searchsorted(cum, torch.tensor(target, dtype=torch.float64))), n - 1)
        before = float(cum[i - 1]) if i > 0 else 0.0
        bounds.append(i + 1 if float(cum[i]) - target <= target - before else i)  # the nearer cut
    bounds.append(n)
    bounds = [max(a, b) for a, b in zip(bounds, [0] + bounds[:-1])]  # monotone
    return [coords[bounds[r] : bounds[r + 1]] for r in range(parts)]


class DistributedCGE(Estimator):
    """Run a CGE (or ``sparse-cge``) estimator with its coordinates split across ranks.

    Args:
        base: the CGE estimator whose active set and μ are used.
        costs: per-flat-index query cost (:func:`coordinate_costs`), or a
            callable ``oracle -> costs``; None = equal costs.
        group: the ``torch.distributed`` process group (None: the default one).

    Returns the same estimate on every rank, equal to ``base`` run in one process.
    """

    name = "distributed-cge"

    def __init__(self, base: CGE, *, costs: torch.Tensor | Callable[[Oracle], torch.Tensor] | None = None,
                 group=None):
        if not isinstance(base, CGE):
            raise TypeError(f"DistributedCGE wraps a CGE estimator, got {type(base).__name__}")
        self.base, self.costs, self.group = base, costs, group
        self._costs_cache: torch.Tensor | None = None

    def options(self) -> dict:
        return {"base": self.base}

    def _coord_costs(self, oracle: Oracle) -> torch.Tensor | None:
        if self.costs is None or isinstance(self.costs, torch.Tensor):
            return self.costs
        if self._costs_cache is None:
            self._costs_cache = torch.as_tensor(self.costs(oracle), dtype=torch.float64)
        return self._costs_cache

    def estimate(self, oracle: Oracle, batch: Batch, *, step: int, seed: int) -> Estimate:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("DistributedCGE needs torch.distributed.init_process_group() first")
        rank, world = dist.get_rank(self.group), dist.get_world_size(self.group)
        base = self.base
        if hasattr(base, "prepared") and not base.prepared:
            base.prepare(oracle, batch, seed=seed)
        idx = base.active_coords(oracle, step, seed)
        costs = self._coord_costs(oracle)
        parts = balanced_split(idx, None if costs is None else costs[idx], world)
        mine = tuple(int(i) for i in parts[rank])
        n, mu = len(mine), base.mu
        if base.difference == "central":
            values = oracle.evaluate(CoordQueries(mine + mine, (mu,) * n + (-mu,) * n), batch)
            diffs = (values[:n] - values[n:]) / (2 * mu)
            loss = float(((values[:n] + values[n:]) / 2).mean()) if n else oracle.loss(batch)
        else:
            loss = oracle.loss(batch)
            diffs = (oracle.evaluate(CoordQueries(mine, (mu,) * n), batch) - loss) / mu
        width = max(p.numel() for p in parts)
        rows = torch.full((width, 2), -1.0, dtype=torch.float64)
        rows[:n, 0] = torch.tensor(mine, dtype=torch.float64)
        rows[:n, 1] = diffs.double().cpu()
        gathered = [torch.empty_like(rows) for _ in range(world)]
        dist.all_gather(gathered, rows, group=self.group)
        table = torch.cat(gathered)
        table = table[table[:, 0] >= 0]
        coords = table[:, 0].long()
        if not torch.equal(coords, idx.long()):
            raise RuntimeError("ranks disagree on the active coordinates (different seeds, masks or layouts)")
        loss_t = torch.tensor([loss], dtype=torch.float64)
        dist.all_reduce(loss_t, group=self.group)
        passes = 2 * idx.numel() if base.difference == "central" else idx.numel() + world
        return Estimate(loss=float(loss_t) / world, coord_terms=[(coords, table[:, 1])], forward_passes=passes,
                        info={"active": idx.numel(), "rank_coords": n, "world": world})


def init_from_env(backend: str = "gloo") -> tuple[int, int]:
    """``init_process_group`` from the usual env variables (RANK, WORLD_SIZE, MASTER_ADDR/PORT)."""
    init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def split_summary(parts: Sequence[torch.Tensor], costs: torch.Tensor | None) -> list[dict]:
    """Coordinates and total cost per rank (for logs and benchmarks)."""
    return [{"coords": int(p.numel()), "cost": float(costs[p].sum()) if costs is not None else float(p.numel())}
            for p in parts]


__all__ = ["DistributedCGE", "balanced_split", "coordinate_costs", "stage_costs", "init_from_env", "split_summary"]
