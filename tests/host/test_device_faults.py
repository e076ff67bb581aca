"""A faulty link (corrupt bytes, dropped frames, device resets) ends bit-identical to a clean run.

The faulty runs use RGE's seed chain, so the compact messages (evaluate-chain,
update-last) cross the faulty link; recovery replays explicit updates.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgezo.host.device_oracle import DeviceOracle
from edgezo.host.faults import faulty_link
from edgezo.host.link import DeviceLink
from edgezo.models.ttm import TTMLP
from edgezo.targets.sim import SimulatorThread

from edgezo.estimators.rge import RGE
from edgezo.losses import cross_entropy
from edgezo.optim import seed_sgd_step


def _train(link_factory, steps=10, frame_bytes=64, seed_chain=True):
    torch.manual_seed(0)
    model = TTMLP([[[4, 4, 4], [4, 4, 2], 3], [[4, 4, 2], [1, 5, 2], 2]])
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 64, generator=g), torch.randint(0, 10, (16,), generator=g)
    with SimulatorThread("cortex-m4-256k") as sim:
        link = link_factory(sim.port)
        oracle = DeviceOracle(model, cross_entropy, link=link, max_batch=16, checkpoint_every=4,
                              frame_bytes=frame_bytes)
        est = RGE(q=4, mu=0.01, difference="forward", seed_chain=seed_chain)
        losses = []
        for step in range(steps):
            batch = (x[step % 2 * 4:(step % 2 + 1) * 4], y[step % 2 * 4:(step % 2 + 1) * 4])
            e = est.estimate(oracle, batch, step=step, seed=0)
            losses.append(e.loss)
            seed_sgd_step(oracle, e, 0.05)
        theta = oracle.get_flat().numpy()
        stats = link.stats, getattr(link.port, "stats", None), oracle.resets
        link.close()
    return theta, losses, stats


@pytest.mark.slow
def test_faulty_run_is_bit_identical_to_clean_run():
    clean, clean_losses, _ = _train(lambda port: DeviceLink(port, timeout=1.0))
    faulty, faulty_losses, (lstats, fstats, resets) = _train(
        lambda port: faulty_link(port, corrupt=0.01, drop=0.03, reset_every=250, seed=3, timeout=0.04))
    assert fstats["corrupted"] >= 0.01 * fstats["bytes"] * 0.7  # about 1 % of the bytes were corrupted
    assert fstats["dropped_frames"] > 0 and fstats["resets"] > 0 and resets > 0
    assert lstats.retransmits > 0
    assert {"evaluate_chain", "update_last"} <= set(lstats.by_type)
    assert clean_losses == faulty_losses
    assert np.array_equal(clean.view(np.uint32), faulty.view(np.uint32))
    assert not np.array_equal(clean, _train(lambda port: DeviceLink(port), steps=9)[0])  # the test can fail


@pytest.mark.parametrize("seed_chain", [False, True])
def test_reset_mid_training_reloads_checkpoint_and_replays(seed_chain):
    """Quick (no corruption): one device reset; the oracle replays the logged updates exactly once."""
    clean, _, _ = _train(lambda port: DeviceLink(port), steps=6, frame_bytes=256, seed_chain=seed_chain)
    faulty, _, (_, fstats, resets) = _train(
        lambda port: faulty_link(port, corrupt=0.0, drop=0.0, reset_every=25, timeout=0.5), steps=6, frame_bytes=256,
        seed_chain=seed_chain)
    assert fstats["resets"] >= 1 and resets >= 1
    assert np.array_equal(clean.view(np.uint32), faulty.view(np.uint32))
