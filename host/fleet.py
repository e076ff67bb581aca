"""FleetOracle: several oracles (device links, simulators, hosts) share the queries of a step.

A zeroth-order step needs one scalar per query, so a fleet of devices that each
hold the same θ can evaluate disjoint parts of one step in parallel and return
only losses (DeepZero's data-parallel ZO, Chen et al. ICLR 2024; MeZO's seed
updates, Malladi et al. 2023, keep the members' θ equal without sending it).

``evaluate(queries, batch)`` splits the q queries into contiguous shards, one
per live member, and runs the members in parallel threads (a device link
waits on its serial port, a torch member on its kernels; both release the
GIL). A member that raises, or does not answer within ``timeout_s``, is
*dropped*: it is logged (logger ``edgezo.host.fleet``), recorded in
:attr:`FleetOracle.dropped`, never asked again, and its shard is split among
the survivors, so the step still returns all q losses, in query order. When
no member is left, :class:`FleetError` names every member and why it dropped.

Updates go to every live member (``apply_seed_update`` sends seeds and
coefficients; ``set_flat`` sends θ, e.g. at construction and on resume); a
member that fails an update holds a stale θ and is dropped too. Host
optimizers act on a flat host copy of θ that is pushed to the members after
each step (:meth:`after_step`).

Counters count the step's logical evaluations (what one oracle would count);
each member's own counters hold the work it did. The members' losses are
exactly those of one member evaluating all q queries when their per-query loss
does not depend on how many queries are evaluated together (true of the
TorchOracle paths on CPU; tested).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from edgezo.oracle import Batch, Counters, Oracle, OracleError, Queries, SeedUpdate, batch_size_of
from edgezo.oracles.distributed import shard_bounds, sub_queries

log = logging.getLogger("edgezo.host.fleet")


class FleetError(OracleError):
    """No member of the fleet can answer."""


@dataclass(frozen=True)
class DroppedMember:
    """A member that failed: its index, name, the reason and the evaluation count when it happened."""

    index: int
    name: str
    reason: str
    evaluation: int


class FleetOracle(Oracle):
    """Share each step's queries among ``oracles`` (same model and layout), in parallel.

    Args:
        oracles: the members; their θ is set to the first member's at construction
            (``sync=True``), since their queries must be evaluated at one θ.
        timeout_s: a member that takes longer than this for one call is dropped
            (None: wait for ever; the thread of a hung member is left behind as a daemon).
        names: how the members are called in reports (default ``"<index>:<backend>"``).
    """

    backend = "fleet"

    def __init__(self, oracles: Sequence[Oracle], *, timeout_s: float | None = None,
                 names: Sequence[str] | None = None, sync: bool = True):
        members = list(oracles)
        if not members:
            raise ValueError("a fleet needs at least one member oracle")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive or None, got {timeout_s}")
        for i, m in enumerate(members[1:], 1):
            if m.layout != members[0].layout:
                raise ValueError(f"fleet member {i} has another parameter layout ({m.layout.dim} parameters) than "
                                 f"member 0 ({members[0].layout.dim}); every member must run the same model")
        self.names = list(names) if names is not None else [f"{i}:{m.backend}" for i, m in enumerate(members)]
        if len(self.names) != len(members):
            raise ValueError(f"{len(self.names)} names for {len(members)} members")
        self.members = members
        self.alive = [True] * len(members)
        self.dropped: list[DroppedMember] = []
        self.timeout_s = timeout_s
        self.layout = members[0].layout
        self.counters = Counters()
        self.evaluations = 0
        self.reassigned = 0  # queries moved from a dropped member to survivors
        self._host: torch.Tensor | None = None
        if sync and len(members) > 1:
            theta = members[0].get_flat()
            self._broadcast(lambda m: m.set_flat(theta), "set parameters", members=self.live()[1:])

    # --- membership -------------------------------------------------------------------
    def live(self) -> list[int]:
        return [i for i, ok in enumerate(self.alive) if ok]

    def _drop(self, index: int, reason: str) -> None:
        if not self.alive[index]:
            return
        self.alive[index] = False
        record = DroppedMember(index, self.names[index], reason, self.evaluations)
        self.dropped.append(record)
        left = [self.names[i] for i in self.live()]
        log.warning("fleet member %s dropped at evaluation %d (%s); %d left: %s", record.name, record.evaluation,
                    reason, len(left), ", ".join(left) or "none")

    def _require_live(self) -> list[int]:
        live = self.live()
        if not live:
            why = "; ".join(f"{d.name}: {d.reason}" for d in self.dropped)
            raise FleetError(f"all {len(self.members)} fleet members have dropped out ({why})")
        return live

    def _parallel(self, jobs: dict[int, Callable[[], Any]]) -> tuple[dict[int, Any], dict[int, str]]:
        """Run ``jobs[i]()`` for member i in parallel threads; (results, failure reasons)."""
        slots: dict[int, list] = {i: [] for i in jobs}
        done = {i: threading.Event() for i in jobs}

        def work(i: int) -> None:
            try:
                slots[i].append(("ok", jobs[i]()))
            except Exception as err:  # any failure of a member is reported, not raised
                slots[i].append(("error", f"{type(err).__name__}: {err}"))
            finally:
                done[i].set()

        for i in jobs:
            threading.Thread(target=work, args=(i,), daemon=True, name=f"fleet-{self.names[i]}").start()
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        results, errors = {}, {}
        for i in jobs:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not done[i].wait(wait):
                errors[i] = f"no answer within {self.timeout_s:g} s"
                continue
            status, value = slots[i][0]
            (results if status == "ok" else errors)[i] = value
        return results, errors

    def _broadcast(self, fn: Callable[[Oracle], Any], what: str, members: list[int] | None = None) -> dict[int, Any]:
        members = self._require_live() if members is None else members
        results, errors = self._parallel({i: (lambda m=self.members[i]: fn(m)) for i in members})
        for i, reason in errors.items():
            self._drop(i, f"{what} failed: {reason}")
        self._require_live()
        return results

    def _first(self, fn: Callable[[Oracle], Any], what: str) -> Any:
        """``fn`` on the first live member, failing over to the next one."""
        while True:
            i = self._require_live()[0]
            results, errors = self._parallel({i: lambda m=self.members[i]: fn(m)})
            if i in results:
                return results[i]
            self._drop(i, f"{what} failed: {errors[i]}")

    # --- evaluation ----------------------------------------------------------------
    def evaluate(self, queries: Queries, batch: Batch) -> torch.Tensor:
        q = len(queries)
        losses = torch.full((q,), float("nan"), dtype=torch.float64)
        pending = [(0, q)] if q else []
        first_round = True
        while pending:
            live = self._require_live()
            plan: dict[int, list[tuple[int, int]]] = {i: [] for i in live}
            for lo, hi in pending:
                for k, i in enumerate(live):
                    a, b = shard_bounds(hi - lo, len(live), k)
                    if b > a:
                        plan[i].append((lo + a, lo + b))
            plan = {i: ranges for i, ranges in plan.items() if ranges}
            if not first_round:
                self.reassigned += sum(hi - lo for lo, hi in pending)
            first_round = False

            def job(i: int) -> Callable[[], list[torch.Tensor]]:
                member = self.members[i]
                return lambda: [member.evaluate(sub_queries(queries, lo, hi), batch) for lo, hi in plan[i]]

            results, errors = self._parallel({i: job(i) for i in plan})
            pending = []
            for i, ranges in plan.items():
                if i in results and all(v.numel() == hi - lo for v, (lo, hi) in zip(results[i], ranges)):
                    for v, (lo, hi) in zip(results[i], ranges):
                        losses[lo:hi] = v.detach().to("cpu", torch.float64)
                    continue
                reason = errors.get(i, "returned the wrong number of losses")
                self._drop(i, f"evaluate failed: {reason}")
                pending.extend(ranges)
        self.evaluations += 1
        self.counters.add(q, batch_size_of(batch))
        return losses

    def loss(self, batch: Batch) -> float:
        value = self._first(lambda m: m.loss(batch), "loss")
        self.counters.add(1, batch_size_of(batch))
        return float(value)

    # --- parameters ------------------------------------------------------------------
    def get_flat(self) -> torch.Tensor:
        return self._first(lambda m: m.get_flat(), "get parameters")

    def set_flat(self, values: torch.Tensor) -> None:
        self._broadcast(lambda m: m.set_flat(values), "set parameters")
        if self._host is not None:
            with torch.no_grad():
                self._host.copy_(values.reshape(-1).to(self._host))

    def apply_seed_update(self, update: SeedUpdate, lr: float) -> None:
        self._broadcast(lambda m: m.apply_seed_update(update, lr), "seed update")
        if self._host is not None:
            with torch.no_grad():
                self._host.copy_(self.get_flat().to(self._host))

    def optimizer_parameters(self) -> list[torch.Tensor]:
        if self._host is None:
            self._host = torch.nn.Parameter(self.get_flat().detach().cpu().clone())
        return [self._host]

    def set_grad(self, grad: torch.Tensor) -> None:
        host = self.optimizer_parameters()[0]
        host.grad = grad.detach().to(host).reshape(host.shape).clone()

    def after_step(self) -> None:
        if self._host is not None:
            theta = self._host.detach().clone()
            self._broadcast(lambda m: m.set_flat(theta), "set parameters")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._first(lambda m: m.predict(x), "predict")

    def autograd(self, batch: Batch) -> tuple[float, torch.Tensor]:
        value, grad = self._first(lambda m: m.autograd(batch), "autograd")
        self.counters.add(1, batch_size_of(batch))
        return value, grad

    def state_dict(self) -> dict[str, Any]:
        """The members' states and the record of dropped members."""
        return {"members": [m.state_dict() for m in self.members], "dropped": [asdict(d) for d in self.dropped]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the members' states. Members dropped before the checkpoint stay live (they got θ back
        through ``set_flat`` on resume); their record is kept in :attr:`dropped_before_resume`."""
        for m, s in zip(self.members, state.get("members", [])):
            m.load_state_dict(s)
        self.dropped_before_resume = [DroppedMember(**d) for d in state.get("dropped", [])]

    def status(self) -> dict[str, Any]:
        return {"members": len(self.members), "live": [self.names[i] for i in self.live()],
                "dropped": [asdict(d) for d in self.dropped], "reassigned_queries": self.reassigned,
                "member_forward_passes": {self.names[i]: m.counters.forward_passes for i, m in enumerate(self.members)}}
