"""edgezo train --onnx: an ONNX classifier built with torch.onnx trains through ONNX Runtime and is written back."""

import json
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from edgezo.export.onnx_model import build_onnx_trainer, train_onnx
from torch import nn

from edgezo.cli import main
from edgezo.recipes import apply_overrides, get_recipe


def export(model, example, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}},
                          do_constant_folding=False)
    return path


@pytest.fixture
def mlp_onnx(tmp_path):
    torch.manual_seed(0)
    return export(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), torch.zeros(2, 64),
                  tmp_path / "mlp.onnx")


@pytest.fixture
def cnn_onnx(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64, 10))
    return export(model, torch.zeros(2, 1, 8, 8), tmp_path / "cnn.onnx")


def accuracy(path, x, y):
    session = ort.InferenceSession(str(path))
    logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float((logits.argmax(-1) == y.numpy()).mean())


def test_mlp_trains_and_the_written_model_is_what_was_evaluated(mlp_onnx, tmp_path, digits):
    before = accuracy(mlp_onnx, digits.x_test, digits.y_test)
    metrics = train_onnx(mlp_onnx, "digits-mlp", out=tmp_path / "run", overrides={"train.epochs": 2})
    after = accuracy(metrics["onnx_out"], digits.x_test, digits.y_test)
    assert before < 0.3 and after > 0.8  # CGE with Adam, 2 epochs (seeded; observed 0.90)
    assert after == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    assert metrics["backend"] == "onnxruntime" and metrics["params"] == 2410


def test_cnn_with_batch_norm_through_the_stacked_path(cnn_onnx, tmp_path):
    recipe = apply_overrides(get_recipe("digits-mlp-rge"), {"train.max_steps": 3})
    trainer, graphs = build_onnx_trainer(cnn_onnx, recipe, out_dir=tmp_path / "run", progress=False)
    assert trainer.oracle.path == "stacked" and "1.running_mean" not in graphs.names
    assert graphs.input_shape == (1, 8, 8)  # digits' 64 features are fed as 1x8x8 images
    # the ORT oracle's loss at θ equals torch's on the same model and batch
    batch = trainer.batches.get(0, 0, 0)
    torch.manual_seed(0)  # the fixture's weights again
    torch_model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Flatten(), nn.Linear(64, 10)).eval()
    with torch.no_grad():
        ref = float(nn.functional.cross_entropy(torch_model(batch[0]), batch[1]))
    assert trainer.oracle.loss(batch) == pytest.approx(ref, abs=1e-5)
    theta0 = trainer.oracle.get_flat()
    trainer.run()
    assert trainer.state.step == 3 and not torch.equal(trainer.oracle.get_flat(), theta0)


def test_cli_train_onnx_with_trainable_pattern(mlp_onnx, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--onnx", str(mlp_onnx), "--trainable", "2.*", "--max-steps", "4", "--out", str(out),
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainable"] == ["2.weight", "2.bias"] and metrics["params"] == 330
    import onnx

    before = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(mlp_onnx)).graph.initializer}
    after = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(out / "model.onnx")).graph.initializer}
    np.testing.assert_array_equal(before["0.weight"], after["0.weight"])  # frozen
    assert not np.array_equal(before["2.weight"], after["2.weight"])  # trained


@pytest.mark.parametrize("argv,message", [
    (["--trainable", "nope*"], "match no initializer"),
    (["--recipe", "hjb20"], "task 'pinn'"),
    (["--workers", "2"], "drop --workers"),
])
def test_cli_train_onnx_bad_input(mlp_onnx, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["train", "--onnx", str(mlp_onnx), "--out", str(out), "--no-progress", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "model.onnx").exists()


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--onnx", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "no ONNX model at" in capsys.readouterr().err
