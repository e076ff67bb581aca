"""The user's journey, as the README walks it, through the real commands and a real HTTP server:

train on digits → export (model_inference.onnx) → `edgezo serve model` (a separate process) →
`edgezo robustify --url` against that endpoint → the certification report. Small settings.
"""

import json

import numpy as np
import onnxruntime as ort
import pytest

from edgezo.cli import main

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = [pytest.mark.service, pytest.mark.slow]

KEY = "journey-key-0001"


def test_train_export_serve_robustify_certify(tmp_path, digits, serve_process):
    run, art, rob = tmp_path / "run", tmp_path / "art", tmp_path / "rob"
    assert main(["train", "--out", str(run), "--epochs", "3", "--no-progress"]) == 0
    trained = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    assert main(["export", "--checkpoint", str(run), "--out", str(art), "--no-tvm"]) == 0
    clf = art / "model_inference.onnx"
    session = ort.InferenceSession(str(clf))
    local = session.run(None, {"x": digits.x_test.numpy()})[0].argmax(-1)
    assert float((local == digits.y_test.numpy()).mean()) == pytest.approx(trained, abs=1e-9)

    proc, url = serve_process(["model", "--onnx", str(clf)], {"EDGEZO_MODEL_KEYS": f"{KEY}:200000"})
    try:
        headers = {"X-API-Key": KEY}
        served = httpx.post(f"{url}/v1/predict", json={"inputs": digits.x_test[:64].tolist(), "output": "labels"},
                            headers=headers, timeout=30).json()["labels"]
        assert served == local[:64].tolist()
        assert main(["robustify", "--url", url, "--api-key", KEY, "--out", str(rob), "--estimator", "cge",
                     "--latent-dim", "4", "--train-size", "48", "--test-size", "2", "--batch-size", "8",
                     "--ae-epochs", "1", "--warmup-epochs", "1", "--epochs", "2", "--n0", "10", "--n", "40",
                     "--set", "denoiser_width=4", "--set", "denoiser_depth=3", "--set", "ae_width=4"]) == 0
        usage = httpx.get(f"{url}/v1/usage", headers=headers, timeout=30).json()
    finally:
        proc.terminate()
        proc.wait(30)
    report = json.loads((rob / "certification.json").read_text())
    metrics = json.loads((rob / "metrics.json").read_text())
    assert report["num_images"] == 2 and len(metrics["certified_accuracy"]) == 4
    assert all(0.0 <= v <= 1.0 for v in metrics["certified_accuracy"].values())
    # every query the run counted reached the served model (plus the 64 predictions above)
    assert usage["queries_used"] == metrics["queries_used"] + 64
    assert (rob / "frontend.onnx").exists()
    np.testing.assert_array_equal(sorted(p.name for p in art.iterdir() if p.suffix == ".onnx"),
                                  ["model.onnx", "model_inference.onnx", "model_stacked.onnx"])
