"""The ``rtl`` firmware: the C protocol handling driving the Verilator model of the accelerator (docs/rtl.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgezo.host.device_oracle import DeviceOracle
from edgezo.models.mlp import MLP
from edgezo.targets import qemu
from edgezo.targets.rtl.reference import RtlReference, predictor_for

from edgezo import directions as D
from edgezo.data import load_digits
from edgezo.losses import cross_entropy
from edgezo.oracle import SeedQueries, SeedUpdate


def test_fixture_skips_with_the_reason_without_verilator(monkeypatch):
    from edgezo.host import pytest_plugin

    real = qemu.shutil.which
    monkeypatch.setattr(qemu.shutil, "which", lambda t: None if t == "verilator" else real(t))
    with pytest.raises(pytest.skip.Exception, match="verilator"):
        pytest_plugin._start("rtl", "fpga-int8")


@pytest.mark.rtl
def test_rtl_device_is_bit_exact_with_its_reference(edgezo_device):
    link = edgezo_device("fpga-int8", firmware="rtl")
    assert link.hello()["name"] == "rtl:fpga-int8"
    torch.manual_seed(0)
    model = MLP([64, 8, 10])
    oracle = DeviceOracle(model, cross_entropy, link=link, max_batch=16, checkpoint_every=2)
    ref = RtlReference([64, 8, 10])
    ref.load_float(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy())
    assert np.array_equal(oracle.get_flat().numpy(), ref.as_float())  # write-weights quantized as the reference
    d = load_digits()
    x, y = d.x_train[:16], d.y_train[:16]
    mu, lr = 0.01, 0.05
    for step, seeds in enumerate([(11, 12), (13, 14), (15, 16)]):
        losses = oracle.evaluate(SeedQueries(seeds, (mu, mu)), (x, y))
        for s, loss in zip(seeds, losses):
            theta = ref.perturbed(D.directions([s], 0, ref.dim)[0].numpy(), np.float32(mu))
            want = torch.nn.functional.cross_entropy(ref.logits(x, theta).double(), y).item()
            assert abs(float(loss) - want) < 1e-6
        coeffs = (0.7 - step, -0.3 * step)
        oracle.apply_seed_update(SeedUpdate(seeds, coeffs), lr)
        for s, c in zip(seeds, coeffs):
            a = np.float32(-(np.float32(lr) * np.float32(c)))
            ref.update(D.directions([s], 0, ref.dim)[0].numpy(), a)
    oracle._theta_cache = None
    assert np.array_equal(oracle.get_flat().numpy(), ref.as_float())
    oracle.predictor = predictor_for(model)  # what `edgezo device train` sets for an rtl: device
    assert torch.equal(oracle.predict(d.x_test[:50]), ref.logits(d.x_test[:50]))


@pytest.mark.rtl
def test_rtl_device_refuses_tensor_train_layers(edgezo_device):
    from edgezo.host.link import DeviceError
    from edgezo.models.ttm import TTMLP

    link = edgezo_device(firmware="rtl")
    with pytest.raises((DeviceError, Exception), match="dense layers only"):
        DeviceOracle(TTMLP([[[4, 4, 4], [2, 2, 2], 2], [[2, 2, 2], [1, 5, 2], 2]]), cross_entropy, link=link)


@pytest.mark.rtl
def test_rtl_device_survives_faults_bit_identically(edgezo_device, edgezo_faulty_device):
    from edgezo.estimators.rge import RGE
    from edgezo.optim import seed_sgd_step

    d = load_digits()
    thetas = []
    for faulty in (False, True):
        link = (edgezo_faulty_device(firmware="rtl", corrupt=0.01, drop=0.03, reset_every=200, seed=3, timeout=0.05)
                if faulty else edgezo_device(firmware="rtl"))
        torch.manual_seed(0)
        oracle = DeviceOracle(MLP([64, 4, 10]), cross_entropy, link=link, max_batch=8, checkpoint_every=2,
                              frame_bytes=64)
        est = RGE(q=3, mu=0.01, difference="forward", seed_chain=True)
        for step in range(4):
            batch = (d.x_train[8 * step:8 * step + 8], d.y_train[8 * step:8 * step + 8])
            seed_sgd_step(oracle, est.estimate(oracle, batch, step=step, seed=0), 0.05)
        thetas.append(oracle.get_flat().numpy().copy())
        if faulty:
            assert oracle.resets > 0
    assert np.array_equal(thetas[0], thetas[1])
