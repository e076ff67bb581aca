"""FleetOracle: parallel members, dropped members reported and their queries reassigned.

Members are in-process TorchOracles over copies of one MLP; failures are
injected (an exception, or a call that never returns). The losses of a fleet
must equal, bit for bit, those of one oracle evaluating every query.
"""

import copy
import logging
import threading

import pytest
import torch
from edgezo.host.fleet import FleetError, FleetOracle
from edgezo.models import MLP

from edgezo.estimators import RGE
from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, OracleError, SeedQueries
from edgezo.oracles.torch_oracle import TorchOracle
from edgezo.trainer import DatasetBatches, Phase, TrainConfig, Trainer


class Flaky(TorchOracle):
    """A TorchOracle that fails (raises, or hangs until released) from its ``fail_at``-th call of ``what`` on."""

    def __init__(self, *args, fail_at=0, what="evaluate", hang: threading.Event | None = None, **kw):
        super().__init__(*args, **kw)
        self.fail_at, self.what, self.hang, self.calls = fail_at, what, hang, 0

    def _maybe_fail(self, what):
        if what != self.what:
            return
        self.calls += 1
        if self.calls > self.fail_at:
            if self.hang is not None:
                self.hang.wait(30)
            raise RuntimeError("link lost (injected)")

    def evaluate(self, queries, batch):
        self._maybe_fail("evaluate")
        return super().evaluate(queries, batch)

    def apply_seed_update(self, update, lr):
        self._maybe_fail("apply")
        super().apply_seed_update(update, lr)


@pytest.fixture
def model_and_batch():
    torch.manual_seed(0)
    return MLP([12, 16, 4]), (torch.randn(32, 12), torch.randint(0, 4, (32,)))


def members(model, n, **flaky):
    out = [TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked") for _ in range(n)]
    if flaky:
        out[1] = Flaky(copy.deepcopy(model), cross_entropy, path="stacked", **flaky)
    return out


def seed_queries(q):
    return SeedQueries(tuple(range(100, 100 + q)), tuple((-1) ** i * 0.01 for i in range(q)))


@pytest.mark.parametrize("n,q", [(1, 7), (2, 7), (3, 7), (3, 2), (4, 40)])
def test_fleet_losses_equal_one_oracle(model_and_batch, n, q):
    model, batch = model_and_batch
    ref = TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked")
    fleet = FleetOracle(members(model, n))
    for queries in (seed_queries(q), CoordQueries(tuple(range(q)), (1e-2,) * q)):
        assert torch.equal(fleet.evaluate(queries, batch), ref.evaluate(queries, batch))
    assert fleet.counters.forward_passes == 2 * q and not fleet.dropped
    work = [m.counters.forward_passes for m in fleet.members]
    assert sum(work) == 2 * q and max(work) - min(work) <= 2  # shards are balanced


def test_construction_gives_every_member_the_first_members_parameters(model_and_batch):
    model, _ = model_and_batch
    others = [TorchOracle(MLP([12, 16, 4]), cross_entropy) for _ in range(2)]  # different random init
    fleet = FleetOracle([TorchOracle(model, cross_entropy)] + others)
    for m in fleet.members:
        assert torch.equal(m.get_flat(), fleet.members[0].get_flat())


def test_a_failing_member_is_reported_and_its_queries_reassigned(model_and_batch, caplog):
    model, batch = model_and_batch
    ref = TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked")
    fleet = FleetOracle(members(model, 3, fail_at=1), names=["a", "b", "c"])
    q = seed_queries(9)
    assert torch.equal(fleet.evaluate(q, batch), ref.evaluate(q, batch))  # b answers once
    with caplog.at_level(logging.WARNING, logger="edgezo.host.fleet"):
        got = fleet.evaluate(q, batch)
    assert torch.equal(got, ref.evaluate(q, batch))
    assert [(d.index, d.name, d.evaluation) for d in fleet.dropped] == [(1, "b", 1)]
    assert "link lost (injected)" in fleet.dropped[0].reason
    assert "fleet member b dropped" in caplog.text and "2 left: a, c" in caplog.text
    assert fleet.reassigned == 3 and fleet.live() == [0, 2]
    assert fleet.status()["live"] == ["a", "c"]
    # the dropped member is not asked again
    calls = fleet.members[1].calls
    fleet.evaluate(q, batch)
    assert fleet.members[1].calls == calls


def test_a_member_that_hangs_is_dropped_after_the_timeout(model_and_batch):
    model, batch = model_and_batch
    release = threading.Event()
    try:
        ref = TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked")
        fleet = FleetOracle(members(model, 2, hang=release), timeout_s=0.5)
        q = seed_queries(6)
        assert torch.equal(fleet.evaluate(q, batch), ref.evaluate(q, batch))
        assert len(fleet.dropped) == 1 and "no answer within 0.5 s" in fleet.dropped[0].reason
    finally:
        release.set()


def test_no_member_left_is_a_clear_error(model_and_batch):
    model, batch = model_and_batch
    bad = [Flaky(copy.deepcopy(model), cross_entropy) for _ in range(2)]
    fleet = FleetOracle(bad, names=["x", "y"])
    with pytest.raises(FleetError, match=r"all 2 fleet members have dropped out \(x: evaluate failed: "
                                         r"RuntimeError: link lost"):
        fleet.evaluate(seed_queries(4), batch)
    assert isinstance(FleetError("x"), OracleError)


def test_members_must_share_the_layout(model_and_batch):
    model, _ = model_and_batch
    with pytest.raises(ValueError, match="another parameter layout"):
        FleetOracle([TorchOracle(model, cross_entropy), TorchOracle(MLP([12, 4]), cross_entropy)])
    with pytest.raises(ValueError, match="at least one member"):
        FleetOracle([])


@pytest.mark.parametrize("optimizer,flaky", [
    ({"kind": "seed-sgd", "lr": 0.05}, {"fail_at": 4}),
    ({"kind": "seed-sgd", "lr": 0.05}, {"fail_at": 3, "what": "apply"}),
    ({"kind": "adam", "lr": 0.01}, {"fail_at": 4}),
])
def test_training_through_a_failing_fleet_matches_one_oracle(model_and_batch, optimizer, flaky):
    """A member drops mid-run; the run still reaches exactly the parameters of a single-oracle run."""
    model, _ = model_and_batch
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 12, generator=g), torch.randint(0, 4, (96,), generator=g)

    def run(oracle):
        trainer = Trainer(oracle, [Phase(RGE(q=6, mu=1e-2), optimizer)], DatasetBatches(x, y, 32, seed=0),
                          TrainConfig(epochs=3, seed=0), progress=False)
        trainer.run()
        return oracle.get_flat()

    fleet = FleetOracle(members(model, 3, **flaky))
    expected = run(TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked"))
    assert torch.equal(run(fleet), expected)
    assert len(fleet.dropped) == 1 and fleet.counters.forward_passes == 9 * 12
    for i in fleet.live():
        assert torch.equal(fleet.members[i].get_flat(), expected)


def test_fleet_of_simulated_devices_survives_a_device_that_dies():
    """Three device simulators share each step; one dies at step 3. The run ends bit-identical to one device."""
    device_oracle = pytest.importorskip("edgezo.host.device_oracle", reason="the device link is not in this checkout")
    from edgezo.targets.sim import SimulatorThread

    from edgezo.optim import seed_sgd_step

    torch.manual_seed(0)
    model = MLP([12, 8, 4])
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(32, 12, generator=g), torch.randint(0, 4, (32,), generator=g)

    def train(oracle, kill=None):
        est = RGE(q=6, mu=1e-2, difference="forward")
        for step in range(6):
            if step == 3 and kill is not None:
                kill()
            batch = (x[step % 2 * 16:(step % 2 + 1) * 16], y[step % 2 * 16:(step % 2 + 1) * 16])
            seed_sgd_step(oracle, est.estimate(oracle, batch, step=step, seed=0), 0.05)
        return oracle.get_flat()

    sims = [SimulatorThread() for _ in range(4)]
    links = []
    try:
        def device(sim):
            oracle = device_oracle.DeviceOracle(copy.deepcopy(model), cross_entropy, link=sim.port, max_batch=16,
                                                timeout=0.2, retries=2)
            links.append(oracle.link)
            return oracle

        expected = train(device(sims[0]))
        fleet = FleetOracle([device(s) for s in sims[1:]], names=["dev1", "dev2", "dev3"], timeout_s=30)
        got = train(fleet, kill=sims[2].close)
    finally:
        for link in links:
            link.close()
        for sim in sims:
            sim.close()
    assert [d.name for d in fleet.dropped] == ["dev2"] and fleet.reassigned > 0
    assert torch.equal(got, expected)
