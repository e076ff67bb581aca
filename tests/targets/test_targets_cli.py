"""``edgezo targets``, the budget refusal of ``edgezo export``, and the int8 / photonic training backends."""

import json

import numpy as np
import pytest
import torch
from edgezo.targets.profile import list_profiles

from edgezo.cli import main


def test_targets_lists_every_profile(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for p in list_profiles():
        assert p.name in out
    assert "thumbv7em-none-eabihf" in out and "int8/int8/int32 (Q3.4)" in out and "multiplicative 2%" in out


def test_targets_with_a_recipe_says_what_fits(capsys):
    assert main(["targets", "--recipe", "digits-mlp", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {p.name for p in list_profiles()}
    assert rows["cortex-m4-256k"]["fits"] == "yes" and rows["cortex-m4-256k"]["step_bytes"] < 262144
    assert main(["targets", "--recipe", "digits-mlp", "--batch-size", "4096"]) == 0
    assert "NO" in capsys.readouterr().out  # 4,096 samples of 64 floats alone need 1 MiB


def test_export_refuses_a_model_that_does_not_fit(tmp_path, capsys):
    out = tmp_path / "big"
    code = main(["export", "--target", "cortex-m4-256k", "--out", str(out), "--no-tvm",
                 "--set", "model.sizes=[64, 512, 256, 10]"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not fit cortex-m4-256k" in err
    for item in ("weights", "activations", "estimator", "optimizer", "io", "budget"):
        assert item in err
    assert "suggestions:" in err and "TT layer" in err  # what to shrink
    assert not out.exists()  # nothing written


def test_export_of_a_model_that_fits_writes_the_onnx_artifacts(tmp_path, capsys):
    out = tmp_path / "ok"
    assert main(["export", "--target", "cortex-m4-256k", "--out", str(out), "--no-tvm"]) == 0
    assert "fits: yes" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["memory"]["fits"] and manifest["memory"]["profile"] == "cortex-m4-256k"
    assert {f["file"] for f in manifest["files"]} == {"model.onnx", "model_stacked.onnx", "params.bin",
                                                      "model_params.h", "model_inference.onnx"}
    assert json.loads((out / "metrics.json").read_text())["fits"] is True


def test_export_loads_a_checkpoint(tmp_path, capsys):
    from edgezo.export.onnx import load_onnx

    run = tmp_path / "run"
    assert main(["train", "--recipe", "digits-mlp-rge", "--max-steps", "2", "--out", str(run), "--no-progress",
                 "--set", 'oracle.path="stacked"']) == 0
    out = tmp_path / "exp"
    assert main(["export", "--recipe", "digits-mlp-rge", "--checkpoint", str(run), "--out", str(out),
                 "--no-tvm"]) == 0
    trained = torch.load(run / "checkpoint.pt", weights_only=True)["params"]
    shipped = np.fromfile(out / "params.bin", dtype="<f4")
    assert np.array_equal(shipped, trained.numpy())
    header = (out / "model_params.h").read_text()
    assert "#define EDGEZO_DIM 2410" in header and "EDGEZO_OFFSET_LAYERS_1_BIAS 2400" in header
    assert json.loads((out / "manifest.json").read_text())["checkpoint"].endswith("checkpoint.pt")
    assert load_onnx(out / "model.onnx").graph.input[2].name == "layers_0_weight"
    assert main(["export", "--checkpoint", str(tmp_path / "nothing"), "--out", str(out), "--no-tvm"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.fixture
def one_thread():
    """The simulators run many tiny torch ops: one thread avoids contention on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_int8_oracle_training_lowers_the_loss(one_thread):
    """ZO training through the non-differentiable fpga-int8 forward (no straight-through estimator).

    Deterministic (fixed seeds): 40 steps of central RGE (q = 10) take the
    mini-batch loss from ~2.34 to ~1.94.
    """
    from edgezo.oracles.backends import oracle_factory
    from edgezo.recipes import apply_overrides, build_trainer, get_recipe

    recipe = apply_overrides(get_recipe("digits-mlp-rge"), {"train.max_steps": 40, "train.epochs": 1,
                                                            "estimator.q": 10, "optimizer.lr": 0.05})
    trainer = build_trainer(recipe, progress=False, oracle_factory=oracle_factory("int8", recipe))
    assert trainer.oracle.backend == "int8" and trainer.oracle.profile.name == "fpga-int8"
    metrics = trainer.run()
    losses = [v for _, v in trainer.state.losses]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2
    assert metrics["test_accuracy"] > 0.2  # on the int8 datapath; 10 classes: chance is 0.1


def test_int8_oracle_computes_on_the_integer_grid():
    from edgezo.models import MLP
    from edgezo.targets.backends import simulated_oracle

    from edgezo.losses import cross_entropy

    torch.manual_seed(0)
    model = MLP([8, 6, 3])
    oracle = simulated_oracle("fpga-int8", "int8", model, cross_entropy)
    x = torch.rand(4, 8)
    logits = oracle.predict(x)
    assert torch.equal(logits * 16, torch.round(logits * 16))  # Q3.4 outputs: multiples of 1/16
    from edgezo.oracle import OracleError

    with pytest.raises(OracleError, match="non-differentiable"):
        oracle.autograd((x, torch.zeros(4, dtype=torch.long)))


def test_photonic_noise_is_seeded_and_resumable():
    from edgezo.models import MLP
    from edgezo.targets.backends import simulated_oracle

    from edgezo.losses import cross_entropy
    from edgezo.oracle import SeedQueries

    torch.manual_seed(0)
    model = MLP([8, 6, 3])
    batch = (torch.rand(16, 8), torch.randint(0, 3, (16,)))
    a = simulated_oracle("photonic-noisy", "photonic", model, cross_entropy, seed=5)
    state = a.state_dict()
    q = SeedQueries((1, 1), (0.0, 0.0))
    first = a.evaluate(q, batch)
    assert first[0] != first[1]  # fresh noise per evaluation
    b = simulated_oracle("photonic-noisy", "photonic", model, cross_entropy, seed=99)
    b.load_state_dict(state)
    assert torch.equal(b.evaluate(q, batch), first)  # same generator state: same noise
