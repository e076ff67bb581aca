"""The compact messages (evaluate-chain, update-last, load-batch-u8) through DeviceOracle on the simulator.

They must change the bytes on the wire only: losses and θ bit-identical to the
explicit messages, the explicit form whenever the compact one does not apply,
and recovery after a reset between an evaluate and its update-last.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgezo.host.device_oracle import DeviceOracle
from edgezo.host.link import DeviceError, DeviceLink
from edgezo.models.ttm import TTMLP
from edgezo.targets.sim import SimulatorThread

from edgezo import protocol as P
from edgezo.data import load_digits
from edgezo.directions import chain_seeds
from edgezo.estimators.rge import RGE
from edgezo.losses import cross_entropy
from edgezo.optim import seed_sgd_step
from edgezo.oracle import SeedQueries, SeedUpdate

DIGITS_TT = [[[4, 4, 4], [8, 8, 8], 4], [[8, 8, 8], [1, 5, 2], 3]]


def test_chain_pattern_detection():
    chain = list(chain_seeds(123456789, 5))
    assert P.chain_pattern([chain[0]] + chain, [0] + [1] * 5) == (123456789, 5, P.PATTERN_FORWARD)
    assert P.chain_pattern(chain + chain, [1] * 5 + [-1] * 5) == (123456789, 5, P.PATTERN_CENTRAL)
    assert P.chain_queries(123456789, 5, P.PATTERN_FORWARD) == ([chain[0]] + chain, [0] + [1] * 5)
    assert P.chain_queries(123456789, 5, P.PATTERN_CENTRAL) == (chain + chain, [1] * 5 + [-1] * 5)
    other = chain[:4] + [chain[4] ^ 1]
    assert P.chain_pattern([other[0]] + other, [0] + [1] * 5) is None  # not a chain
    assert P.chain_pattern([chain[0]] + chain, [0, 1, 1, 2, 1, 1]) is None  # not an RGE pattern
    assert P.chain_pattern(chain + chain[::-1], [1] * 5 + [-1] * 5) is None
    assert P.distinct_seeds(chain + chain, [1] * 5 + [-1] * 5) == chain
    assert P.distinct_seeds([7, 7, 8, 9], [0, 1, 1, 0]) == [7, 8]


def test_u8_scale():
    d = load_digits()
    assert P.u8_scale(d.x_train[:64].numpy()) == 1 / 16  # pixels k/16, k = 0..16
    assert P.u8_scale(np.array([0.0, 3.0, 255.0])) == 1.0
    assert P.u8_scale(np.array([0.0, 256.0])) is None
    assert P.u8_scale(np.array([0.1, 0.2])) is None
    assert P.u8_scale(np.array([-1.0, 2.0])) is None


def _train(port, *, compact, difference, steps=4, reset_at=None):
    torch.manual_seed(0)
    model = TTMLP(DIGITS_TT)
    d = load_digits()
    link = DeviceLink(port, timeout=5)
    oracle = DeviceOracle(model, cross_entropy, link=link, max_batch=32, compact=compact, checkpoint_every=3)
    est = RGE(q=10, mu=0.01, difference=difference, seed_chain=True)
    losses = []
    for step in range(steps):
        batch = (d.x_train[step * 32:(step + 1) * 32], d.y_train[step * 32:(step + 1) * 32])
        e = est.estimate(oracle, batch, step=step, seed=0)
        losses.append(e.loss)
        if step == reset_at:
            link.send_raw(P.RESET)  # the device loses θ between the evaluate and its update-last
        seed_sgd_step(oracle, e, 0.05)
    theta = oracle.get_flat().numpy().view(np.uint32).copy()
    stats = {k: list(v) for k, v in link.stats.by_type.items()}
    link.close()
    return losses, theta, stats, oracle


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_compact_messages_are_bit_identical_to_explicit(difference):
    with SimulatorThread() as sim:
        lc, tc, sc, _ = _train(sim.port, compact=True, difference=difference)
    with SimulatorThread() as sim:
        lx, tx, sx, _ = _train(sim.port, compact=False, difference=difference)
    assert lc == lx
    np.testing.assert_array_equal(tc, tx)
    assert {"evaluate_chain", "update_last", "load_batch_u8"} <= set(sc)
    assert not {"evaluate", "update", "load_batch"} & set(sc)
    assert {"evaluate", "update", "load_batch"} <= set(sx) and "update_last" not in sx
    control = lambda s, names: sum(s[k][1] + s[k][2] for k in names if k in s)
    queries = 4 * (11 if difference == "forward" else 20)
    per_query = control(sc, ("evaluate_chain", "update_last")) / queries
    assert per_query <= (16 if difference == "forward" else 11), per_query
    assert per_query < control(sx, ("evaluate", "update")) / queries
    assert control(sc, ("load_batch_u8",)) * 3 < control(sx, ("load_batch",))  # u8 vs float32 features


def test_update_last_only_for_the_last_evaluate():
    d = load_digits()
    batch = (d.x_train[:16], d.y_train[:16])
    with SimulatorThread() as sim:
        torch.manual_seed(0)
        oracle = DeviceOracle(TTMLP(DIGITS_TT), cross_entropy, link=sim.port, max_batch=16)
        types = lambda: {k: v[0] for k, v in oracle.link.stats.by_type.items()}
        chain = chain_seeds(99, 4)
        oracle.evaluate(SeedQueries((chain[0],) + chain, (0.0,) + (0.01,) * 4), batch)
        oracle.apply_seed_update(SeedUpdate(chain, (0.1, -0.2, 0.3, 0.4)), 0.05)
        assert types().get("update_last") == 1 and "update" not in types()
        oracle.apply_seed_update(SeedUpdate(chain[:3], (0.1, -0.2, 0.3)), 0.05)  # other seeds: explicit
        oracle.apply_seed_update(SeedUpdate(chain, (0.1, -0.2, 0.3, 0.4), kind="gaussian"), 0.05)  # other kind
        assert types().get("update") == 2
        oracle.evaluate(SeedQueries((5, 6, 7), (0.0, 0.01, -0.01)), batch)  # explicit evaluate, not a chain
        assert types().get("evaluate") == 1
        oracle.apply_seed_update(SeedUpdate((6, 7), (0.5, 0.5)), 0.05)  # its seeds: update-last
        assert types().get("update_last") == 2
        theta = oracle.get_flat()
    with SimulatorThread() as sim:  # the same updates, all explicit
        torch.manual_seed(0)
        ref = DeviceOracle(TTMLP(DIGITS_TT), cross_entropy, link=sim.port, max_batch=16, compact=False)
        for u in (SeedUpdate(chain, (0.1, -0.2, 0.3, 0.4)), SeedUpdate(chain[:3], (0.1, -0.2, 0.3)),
                  SeedUpdate(chain, (0.1, -0.2, 0.3, 0.4), kind="gaussian"), SeedUpdate((6, 7), (0.5, 0.5))):
            ref.apply_seed_update(u, 0.05)
        assert torch.equal(theta, ref.get_flat())
        assert "update_last" not in ref.link.stats.by_type


@pytest.mark.parametrize("compact,difference", [(True, "forward"), (True, "central"), (False, "forward")])
def test_reset_between_evaluate_and_update_recovers(compact, difference):
    """The update finds the device reset: reload the checkpoint, replay (explicit updates), count the step once."""
    with SimulatorThread() as sim:
        lc, tc, _, _ = _train(sim.port, compact=compact, difference=difference)
    with SimulatorThread() as sim:
        lr_, tr, stats, oracle = _train(sim.port, compact=compact, difference=difference, reset_at=2)
    assert oracle.resets >= 1 and oracle.step == 4
    assert stats["update_last" if compact else "update"][0] >= 3
    assert lc == lr_
    np.testing.assert_array_equal(tc, tr)


def test_device_without_compact_messages_gets_the_explicit_forms():
    """hello's flag bit 1 announces 0x09-0x0B; a device without it is sent only the explicit messages."""
    with SimulatorThread() as sim:
        lc, tc, _, oracle = _train(sim.port, compact=True, difference="forward")
        assert oracle.info["compact"] and oracle.compact
    with SimulatorThread(compact=False) as sim:
        link = DeviceLink(sim.port, timeout=5)
        assert link.hello()["compact"] is False
        with pytest.raises(DeviceError, match="unknown message type 0x09"):
            link.request(P.EVALUATE_CHAIN, bytes(19))
        link.close()
        lx, tx, sx, oracle = _train(sim.port, compact=True, difference="forward")
    assert oracle.compact is False
    assert not {"evaluate_chain", "update_last", "load_batch_u8"} & set(sx)
    assert lc == lx
    np.testing.assert_array_equal(tc, tx)
