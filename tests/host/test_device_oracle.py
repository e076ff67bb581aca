"""DeviceOracle on the Python simulator against TorchOracle (float32 tolerances)."""

from __future__ import annotations

import copy

import pytest
import torch
from edgezo.host.device_oracle import DeviceOracle
from edgezo.host.link import DeviceError
from edgezo.models.mlp import MLP
from edgezo.models.ttm import TTMLP
from edgezo.targets.sim import SimulatorThread

from edgezo import protocol as P
from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, OracleError, SeedQueries, SeedUpdate
from edgezo.oracles.torch_oracle import TorchOracle


def _models():
    torch.manual_seed(0)
    return [MLP([64, 32, 10]), TTMLP([[[4, 4, 4], [8, 8, 8], 4], [[8, 8, 8], [1, 5, 2], 3]])]


@pytest.mark.parametrize("idx", [0, 1])
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_matches_torch_oracle(idx, kind):
    model = _models()[idx]
    ref = TorchOracle(copy.deepcopy(model), cross_entropy, groups="per_tensor")
    g = torch.Generator().manual_seed(2)
    batch = (torch.randn(32, 64, generator=g), torch.randint(0, 10, (32,), generator=g))
    with SimulatorThread() as sim:
        dev = DeviceOracle(model, cross_entropy, link=sim.port, groups="per_tensor", max_batch=32)
        assert torch.equal(dev.get_flat(), ref.get_flat())
        group = dev.layout.group_names[1]
        q = SeedQueries((5, 6, 7, 5, 6, 7), (0.0, 0.01, 0.01, -0.01, -0.01, 0.01), group, kind)
        a, b = dev.evaluate(q, batch), ref.evaluate(q, batch)
        assert torch.allclose(a, b, rtol=0, atol=2e-6), (a - b).abs().max()
        assert a[1] != a[0]
        u = SeedUpdate((1, 2, 3), (0.5, -1.0, 2.0), group, kind)
        dev.apply_seed_update(u, 0.01)
        ref.apply_seed_update(u, 0.01)
        assert torch.allclose(dev.get_flat(), ref.get_flat(), rtol=0, atol=1e-6)
        assert not torch.equal(dev.get_flat(), torch.cat([p.detach().reshape(-1) for p in _models()[idx].parameters()]))
        assert torch.allclose(dev.predict(batch[0]), ref.predict(batch[0]), atol=1e-5)
        assert dev.counters.forward_passes == 6


def test_update_is_idempotent_per_step():
    with SimulatorThread() as sim:
        dev = DeviceOracle(_models()[0], cross_entropy, link=sim.port)
        dev.apply_seed_update(SeedUpdate((1,), (1.0,)), 0.1)
        before = dev.get_flat()
        body = P.pack_update(1, "rademacher", 0, dev.dim, 0.1, [1], [1.0])  # step 1 again
        step, applied = P.UPDATE_RESP.unpack(dev.link.request(P.UPDATE, body))
        assert (step, applied) == (1, 0)
        dev._theta_cache = None
        assert torch.equal(dev.get_flat(), before)
        with pytest.raises(DeviceError, match="step_gap"):
            dev.link.request(P.UPDATE, P.pack_update(5, "rademacher", 0, dev.dim, 0.1, [1], [1.0]))


def test_refuses_what_the_device_cannot_do():
    with SimulatorThread() as sim:
        dev = DeviceOracle(_models()[0], cross_entropy, link=sim.port)
        with pytest.raises(OracleError, match="seed queries"):
            dev.evaluate(CoordQueries((0,), (0.1,)), (torch.zeros(2, 64), torch.zeros(2, dtype=torch.long)))
        with pytest.raises(OracleError, match="sphere"):
            dev.apply_seed_update(SeedUpdate((1,), (1.0,), None, "sphere"), 0.1)


def test_memory_budget_is_enforced():
    with SimulatorThread() as sim:
        with pytest.raises(DeviceError, match="out_of_memory.*SRAM"):
            DeviceOracle(MLP([64, 512, 10]), cross_entropy, link=sim.port, max_batch=64)
