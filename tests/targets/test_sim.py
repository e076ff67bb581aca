"""The Python device simulator: forward vs torch, the memory model, the process on a pty, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from edgezo.host.device_oracle import device_param_order, model_spec
from edgezo.host.link import DeviceLink
from edgezo.models.ttm import TTMLP
from edgezo.targets.sim import forward

from edgezo import protocol as P


def test_tt_forward_matches_torch():
    torch.manual_seed(0)
    model = TTMLP([[[4, 4, 4], [8, 8, 8], 4], [[8, 8, 8], [1, 5, 2], 3]])
    spec = model_spec(model, 8)
    theta = torch.cat([dict(model.named_parameters())[n].detach().reshape(-1) for n in device_param_order(model)])
    x = torch.randn(8, 64)
    got = forward(spec, theta.numpy(), x.numpy())
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=0, atol=2e-5)
    assert spec.num_params == theta.numel() == 1722


def test_model_spec_roundtrip_and_ram():
    spec = model_spec(TTMLP([[[4, 4, 4], [8, 8, 8], 4], [[8, 8, 8], [1, 5, 2], 3]]), 64)
    assert P.ModelSpec.decode(spec.encode()) == spec
    ram = P.device_ram_bytes(spec, 256)
    assert ram["weights"] == ram["perturbed"] == 4 * 1722 and ram["batch"] == 64 * 257
    with pytest.raises(ValueError, match="malformed"):
        P.ModelSpec.decode(spec.encode()[:-3])


def test_simulator_process_on_a_pty():
    proc = subprocess.Popen([sys.executable, "-m", "edgezo.targets.sim", "--target", "cortex-m7-512k"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "PORT"
        with DeviceLink(line[1], timeout=5) as link:
            info = link.hello()
        assert info["sram_bytes"] == 512 * 1024 and info["name"] == "sim:cortex-m7-512k"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_device_train_cli(tmp_path):
    from edgezo.cli import main

    out = tmp_path / "run"
    rc = main(["device", "train", "--sim", "cortex-m4-256k", "--recipe", "digits-mlp-rge", "--max-steps", "3",
               "--set", "optimizer.kind=seed-sgd", "--set", "optimizer.lr=0.05", "--out", str(out), "--no-progress"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["wire"]["bytes_sent"] > 0 and m["device_ram_bytes"] < 262144


def test_device_train_refuses_adam(tmp_path, capsys):
    from edgezo.cli import main

    rc = main(["device", "train", "--sim", "cortex-m4-256k", "--recipe", "digits-mlp-rge", "--out", str(tmp_path)])
    assert rc == 2 and "optimizer.kind=seed-sgd" in capsys.readouterr().err


def test_device_train_without_a_device_is_a_clear_error(tmp_path, capsys):
    from edgezo.cli import main

    rc = main(["device", "train", "--port", str(tmp_path / "no-such-tty"), "--recipe", "digits-tt-device",
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "device link: cannot open port" in err and "edgezo device sim" in err
    assert not (tmp_path / "run" / "metrics.json").exists()
