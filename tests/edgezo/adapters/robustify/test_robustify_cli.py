"""`edgezo robustify` (local one-shot run on an ONNX black box) and `edgezo serve` option errors."""

import json

import pytest
import torch

from edgezo.adapters.robustify.onnx_export import export_module
from edgezo.cli import main


def test_cli_run_writes_metrics_with_certified_accuracy(tmp_path, digits, capsys):
    torch.manual_seed(0)
    export_module(torch.nn.Linear(64, 10), digits.x_test[:2], tmp_path / "clf.onnx", output_name="logits")
    out = tmp_path / "run"
    args = ["robustify", "--onnx", str(tmp_path / "clf.onnx"), "--out", str(out), "--train-size", "16",
            "--test-size", "2", "--estimator", "cge", "--latent-dim", "3", "--epochs", "1", "--ae-epochs", "1",
            "--warmup-epochs", "1", "--batch-size", "8", "--n0", "5", "--n", "20", "--radii", "0", "0.1",
            "--set", "denoiser_width=4", "--set", "denoiser_depth=3", "--set", "ae_width=4"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["certified_accuracy"]) == {"0", "0.1"}
    assert metrics["queries_used"] == 16 + 2 * 8 * 4 + 2 * 25
    assert (out / "frontend.onnx").is_file() and "certified accuracy" in capsys.readouterr().out
    assert main(args) == 2  # refuses to overwrite without --resume / --force
    assert "already holds a run" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0


@pytest.mark.parametrize("argv,fragment", [
    (["robustify", "--out", "x"], "either --onnx"),
    (["robustify", "--url", "http://127.0.0.1:1", "--out", "x"], "--api-key"),
    (["robustify", "--onnx", "missing.onnx", "--out", "x", "--set", "nope=1"], "unknown robustify setting"),
])
def test_cli_errors_are_clear(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_serve_without_credentials_is_a_clear_error(capsys, monkeypatch, tmp_path):
    pytest.importorskip("fastapi")
    monkeypatch.delenv("EDGEZO_SERVICE_TOKENS", raising=False)
    assert main(["serve", "robustify", "--workdir", str(tmp_path)]) == 2
    assert "EDGEZO_SERVICE_TOKENS" in capsys.readouterr().err


def test_serve_model_with_a_missing_model_is_a_clear_error(capsys, monkeypatch, tmp_path):
    pytest.importorskip("fastapi")
    monkeypatch.setenv("EDGEZO_MODEL_KEYS", "a-long-enough-key:10")
    assert main(["serve", "model", "--onnx", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
