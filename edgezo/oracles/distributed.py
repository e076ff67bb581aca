"""DistributedOracle: the queries of one ZO step shared by the ranks of a process group.

A zeroth-order step needs only one scalar per query, so N processes (or GPUs)
can share a step while exchanging almost nothing (the observation behind MeZO's
seed trick, Malladi et al. 2023, and DeepZero's data-parallel ZO, Chen et al.
ICLR 2024). Every rank holds the same θ and runs the same training loop
(SPMD); only :meth:`DistributedOracle.evaluate` talks to the other ranks:

1. the q queries are split into contiguous shards, rank r taking
   ``[⌊r q / N⌋, ⌊(r+1) q / N⌋)``, and each rank evaluates its shard with the
   wrapped oracle;
2. one ``all_gather`` of float64 losses (plus one float64 query fingerprint)
   gives every rank all q losses;
3. every rank forms the same estimate and applies the same update — seed-SGD
   regenerates ``Σ c_i z(seed_i)`` from the seeds, and a host optimizer is fed
   the dense ĝ rebuilt from the same seeds and gathered scalars.

After the initial broadcast of θ from rank 0 (at construction) no parameter or
gradient vector crosses the wire.

Communication, per rank and per :meth:`evaluate` of q queries, for a ring
all-gather (gloo, NCCL) of chunks of ``c = ⌈q/N⌉ + 1`` float64::

    sent = (N − 1) · 8 · c bytes            (N = 2: 4q + 8 per rank, 8q + 16 in all)

against a DDP-style ring all-reduce of a float32 gradient of d entries::

    sent = 2 (N − 1) / N · 4 d bytes        (N = 2: 4d per rank)

so the ratio is ≈ d / q at N = 2. :func:`allgather_bytes` and
:func:`ring_allreduce_bytes` state the two formulas; the oracle counts what it
sends in :attr:`DistributedOracle.bytes_sent`.

Consistency. The ranks stay identical only if they apply bit-identical updates
(same code, seeds, dtype, device kind, thread-independent kernels). Every
``checksum_every`` evaluations the ranks all-gather ``(crc32 of θ's bytes,
float64 Σθ)`` (16 bytes each); any difference raises
:class:`ParameterMismatch` on every rank, naming the ranks that differ from
rank 0. The query fingerprint sent with every step catches ranks that are not
on the same step (different seeds, q or batch size): :class:`QueryMismatch`.

Equality with a single-process run. The gathered losses equal those of one
process evaluating all q queries when the wrapped oracle's per-query loss does
not depend on how many queries are evaluated together; on CPU this holds for the
TorchOracle ``loop``, ``stacked`` and ``vmap`` paths (tested), but ``path="auto"``
may pick a different path for a shard of q/N queries than for q, so fix the path
(``--set oracle.path="stacked"``) to reproduce a single-process run bit for bit.

Counters. :attr:`DistributedOracle.counters` counts the step's logical
evaluations (all ranks together, exactly what one process would count), so
``metrics.json`` written by rank 0 matches a single-process run; the work this
rank did itself is in ``inner.counters``.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import torch
import torch.distributed as dist

from ..oracle import Batch, CoordQueries, Counters, Oracle, OracleError, Queries, SeedQueries, SeedUpdate, batch_size_of

LOSS_BYTES = 8  # float64 per query
CHECKSUM_BYTES = 16  # (crc32, Σθ) as two float64


class ParameterMismatch(OracleError):
    """The ranks of a distributed run hold different parameters."""


class QueryMismatch(OracleError):
    """The ranks of a distributed run asked different queries in the same step."""


def shard_bounds(q: int, world: int, rank: int) -> tuple[int, int]:
    """Contiguous shard ``[⌊r q / N⌋, ⌊(r+1) q / N⌋)`` of rank ``r`` among ``N``."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside [0, {world})")
    return rank * q // world, (rank + 1) * q // world


def sub_queries(queries: Queries, lo: int, hi: int) -> Queries:
    """Queries ``lo:hi`` as a query object of the same kind."""
    if isinstance(queries, SeedQueries):
        return SeedQueries(queries.seeds[lo:hi], queries.scales[lo:hi], queries.group, queries.kind)
    if isinstance(queries, CoordQueries):
        return CoordQueries(queries.coords[lo:hi], queries.deltas[lo:hi])
    raise TypeError(f"cannot shard queries of type {type(queries).__name__}")


def query_fingerprint(queries: Queries, batch_size: int) -> int:
    """crc32 of everything that defines a query set (exact in a float64)."""
    if isinstance(queries, SeedQueries):
        key = ("seed", queries.seeds, queries.scales, queries.group, queries.kind, batch_size)
    else:
        key = ("coord", queries.coords, queries.deltas, batch_size)
    return zlib.crc32(repr(key).encode())


def parameter_checksum(theta: torch.Tensor) -> tuple[int, float]:
    """(crc32 of the raw bytes, float64 sum) of a parameter vector."""
    flat = theta.detach().reshape(-1).cpu().contiguous()
    crc = zlib.crc32(flat.view(torch.uint8).numpy().tobytes()) if flat.numel() else 0
    return crc, float(flat.double().sum())


def allgather_bytes(q: int, world: int) -> int:
    """Bytes one rank sends in a ring all-gather of q losses (+1 fingerprint slot per rank)."""
    if world <= 1:
        return 0
    return (world - 1) * LOSS_BYTES * (math.ceil(q / world) + 1)


def ring_allreduce_bytes(dim: int, world: int, element_bytes: int = 4) -> float:
    """Bytes one rank sends in a ring all-reduce of a ``dim``-entry gradient: 2(N−1)/N · b · d."""
    return 2 * (world - 1) / world * element_bytes * dim if world > 1 else 0.0


class DistributedOracle(Oracle):
    """Share the queries of every step among the ranks of a ``torch.distributed`` group.

    Args:
        inner: the oracle each rank evaluates its shard with (same model and θ
            on every rank after construction: θ is broadcast from rank 0).
        group: the process group (None: the default group, which must be
            initialised; ``edgezo.distributed.init_process_group`` and
            ``leaving_process_group`` make and free it safely).
        checksum_every: verify every this many evaluations that all ranks hold
            bit-identical θ (0: never; :meth:`check_parameters` runs it on demand).
    """

    def __init__(self, inner: Oracle, *, group=None, checksum_every: int = 50):
        if not dist.is_available() or not dist.is_initialized():
            raise OracleError("DistributedOracle needs an initialised torch.distributed process group "
                              "(dist.init_process_group, or launch with torchrun / `edgezo train --workers N`)")
        if checksum_every < 0:
            raise ValueError(f"checksum_every must be >= 0, got {checksum_every}")
        self.inner = inner
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.checksum_every = int(checksum_every)
        self.backend = inner.backend
        self.layout = inner.layout
        self.counters = Counters()
        self.evaluations = 0
        self.checksums = 0
        self.bytes_sent = 0
        self.checksum_bytes = 0
        self.broadcast_bytes = 0
        self._comm_device = (torch.device("cuda", torch.cuda.current_device())
                             if dist.get_backend(group) == "nccl" else torch.device("cpu"))
        self._broadcast_parameters()

    # --- plumbing -------------------------------------------------------------
    def _global_rank(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _broadcast_parameters(self) -> None:
        dims = [int(t[0]) for t in self._all_gather(torch.tensor([float(self.layout.dim)], dtype=torch.float64))]
        if len(set(dims)) > 1:
            raise OracleError("the ranks built different models (parameter counts "
                              + ", ".join(f"rank {r}: {d}" for r, d in enumerate(dims)) + "); run the same recipe")
        theta = self.inner.get_flat()
        buf = theta.detach().to(self._comm_device).contiguous()
        dist.broadcast(buf, src=self._global_rank(0), group=self.group)
        if self.rank != 0:
            self.inner.set_flat(buf.to(theta.device))
        else:
            self.broadcast_bytes = buf.numel() * buf.element_size()

    def _all_gather(self, values: torch.Tensor) -> list[torch.Tensor]:
        values = values.to(self._comm_device).contiguous()
        out = [torch.empty_like(values) for _ in range(self.world_size)]
        dist.all_gather(out, values, group=self.group)
        return [t.cpu() for t in out]

    # --- evaluation -------------------------------------------------------------
    def evaluate(self, queries: Queries, batch: Batch) -> torch.Tensor:
        q = len(queries)
        if self.checksum_every and self.evaluations % self.checksum_every == 0:
            self.check_parameters()
        self.evaluations += 1
        n = self.world_size
        width = math.ceil(q / n)
        lo, hi = shard_bounds(q, n, self.rank)
        mine = torch.full((width + 1,), float("nan"), dtype=torch.float64)
        mine[0] = float(query_fingerprint(queries, batch_size_of(batch)))
        if hi > lo:
            mine[1 : 1 + hi - lo] = self.inner.evaluate(sub_queries(queries, lo, hi), batch).detach().cpu()
        chunks = self._all_gather(mine)
        self.bytes_sent += allgather_bytes(q, n)
        prints = [int(c[0]) for c in chunks]
        if len(set(prints)) > 1:
            raise QueryMismatch(
                f"the ranks asked different queries at evaluation {self.evaluations - 1} (query fingerprints "
                + ", ".join(f"rank {r}: {p:#010x}" for r, p in enumerate(prints))
                + "); every rank must run the same step with the same seeds, estimator and batch size")
        losses = torch.cat([chunks[r][1 : 1 + b - a] for r in range(n) for a, b in [shard_bounds(q, n, r)]])
        self.counters.add(q, batch_size_of(batch))
        return losses

    def loss(self, batch: Batch) -> float:
        """Loss at θ, computed by every rank (no communication; counted once)."""
        value = self.inner.loss(batch)
        self.counters.add(1, batch_size_of(batch))
        return value

    def check_parameters(self) -> None:
        """All-gather (crc32, Σθ) from every rank; raise :class:`ParameterMismatch` if any differs."""
        crc, total = parameter_checksum(self.inner.get_flat())
        rows = self._all_gather(torch.tensor([float(crc), total], dtype=torch.float64))
        self.checksums += 1
        if self.world_size > 1:
            self.checksum_bytes += (self.world_size - 1) * CHECKSUM_BYTES
        crcs = [int(r[0]) for r in rows]
        bad = [r for r in range(self.world_size) if crcs[r] != crcs[0]]
        if bad:
            detail = "; ".join(f"rank {r}: crc32 {crcs[r]:#010x}, sum {float(rows[r][1]):.17g}"
                               for r in range(self.world_size))
            raise ParameterMismatch(
                f"parameters differ across ranks before evaluation {self.evaluations} "
                f"(rank{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))} differ from rank 0; {detail}). "
                "Every rank must apply bit-identical updates: run the same code, seeds, dtype and device kind "
                "on every rank and never change θ on one rank only; restart from the last checkpoint.")

    def comm_stats(self) -> dict[str, Any]:
        """What this rank has sent (counted from the formulas in the module docstring)."""
        return {"world_size": self.world_size, "rank": self.rank, "evaluations": self.evaluations,
                "loss_bytes_sent": self.bytes_sent, "checksum_bytes_sent": self.checksum_bytes,
                "checksums": self.checksums, "broadcast_bytes_sent": self.broadcast_bytes,
                "rank_forward_passes": self.inner.counters.forward_passes}

    # --- everything else is the wrapped oracle's (identical on every rank) -----------
    def get_flat(self) -> torch.Tensor:
        return self.inner.get_flat()

    def set_flat(self, values: torch.Tensor) -> None:
        self.inner.set_flat(values)

    def apply_seed_update(self, update: SeedUpdate, lr: float) -> None:
        self.inner.apply_seed_update(update, lr)

    def optimizer_parameters(self) -> list[torch.Tensor]:
        return self.inner.optimizer_parameters()

    def set_grad(self, grad: torch.Tensor) -> None:
        self.inner.set_grad(grad)

    def after_step(self) -> None:
        self.inner.after_step()

    def autograd(self, batch: Batch) -> tuple[float, torch.Tensor]:
        value, grad = self.inner.autograd(batch)
        self.counters.add(1, batch_size_of(batch))
        return value, grad

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.predict(x)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def __repr__(self) -> str:
        return (f"DistributedOracle({type(self.inner).__name__}, rank={self.rank}/{self.world_size}, "
                f"checksum_every={self.checksum_every})")
