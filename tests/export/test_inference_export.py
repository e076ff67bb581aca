"""model_inference.onnx: x → logits (or u), trained weights baked in, batch norm folded; ORT matches torch to 1e-5."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from edgezo.export.inference import export_inference, fold_batch_norm, staged_reference
from edgezo.models.resnet import resnet20

from edgezo.cli import main
from edgezo.params import ParamSpace
from edgezo.recipes import get_recipe

TOL = 1e-5


def run_onnx(path_or_bytes, x):
    session = ort.InferenceSession(path_or_bytes if isinstance(path_or_bytes, (bytes, str)) else str(path_or_bytes))
    assert [i.name for i in session.get_inputs()] == ["x"]
    return session.run(None, {"x": x.numpy()})[0]


def train_and_export(tmp_path, recipe, *train_args):
    run, art = tmp_path / "run", tmp_path / "art"
    assert main(["train", "--recipe", recipe, "--out", str(run), "--no-progress", *train_args]) == 0
    assert main(["export", "--recipe", recipe, "--checkpoint", str(run), "--out", str(art), "--no-tvm"]) == 0
    return run, art


def trained_model(recipe_name, run):
    """The recipe's model with the run's θ, built independently of the exporter."""
    from edgezo.models import build_model

    recipe = get_recipe(recipe_name)
    if recipe.task == "pinn":
        from edgezo.adapters.pinn.task import build_pinn_model

        model, _ = build_pinn_model(recipe)
    else:
        model = build_model(recipe.section("model"))
    theta = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["params"]
    ParamSpace(model, recipe.config.get("groups")).set_flat(theta)
    return model


def test_trained_deepzero_cnn(tmp_path, digits):
    run, art = train_and_export(tmp_path, "digits-cnn", "--max-steps", "2", "--set", "estimator.grasp_q=16")
    model = trained_model("digits-cnn", run)
    images = digits.x_train.reshape(-1, 1, 8, 8)
    reference = staged_reference(model, images)  # population statistics of the training set
    x = digits.x_test.reshape(-1, 1, 8, 8)
    with torch.no_grad():
        expected = reference(x).numpy()
        # the calibrated network on the calibration set is the trained (batch-statistics) network itself
        np.testing.assert_allclose(reference(images).numpy(), model(images).numpy(), atol=TOL)
    np.testing.assert_allclose(run_onnx(art / "model_inference.onnx", x), expected, atol=TOL)
    metrics = json.loads((art / "metrics.json").read_text())["inference"]
    assert metrics["batch_norms_folded"] == 2 and metrics["max_abs_diff_vs_torch"] < TOL
    import onnx

    ops = {n.op_type for n in onnx.load(str(art / "model_inference.onnx")).graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops


def test_trained_tt_mlp_keeps_its_cores(tmp_path, digits):
    run, art = train_and_export(tmp_path, "digits-tt", "--max-steps", "2")
    model = trained_model("digits-tt", run).eval()
    with torch.no_grad():
        expected = model(digits.x_test).numpy()
    np.testing.assert_allclose(run_onnx(art / "model_inference.onnx", digits.x_test), expected, atol=TOL)
    import onnx

    stored = sum(int(np.prod(i.dims)) for i in onnx.load(str(art / "model_inference.onnx")).graph.initializer)
    assert stored < 2000  # the 1,722 TT parameters (+ shape constants), not the 38,410 of the dense twin
    assert (art / "model.onnx").exists()  # the training graph as before


def test_trained_pinn_outputs_u(tmp_path):
    run, art = train_and_export(tmp_path, "heat3", "--max-steps", "2")
    model = trained_model("heat3", run)
    x = model.pde.sample(257, torch.Generator().manual_seed(3))
    got = run_onnx(art / "model_inference.onnx", x)
    np.testing.assert_allclose(got, model.solution(x).numpy(), atol=TOL)
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["outputs"][0]["name"] == "u" and manifest["training_graph"]["exported"] is False


def test_resnet20_folds_every_batch_norm():
    torch.manual_seed(0)
    model = resnet20()
    calib = torch.randn(24, 3, 32, 32)
    exp = export_inference(model, calib[:2], calibration=calib)
    assert exp.info["batch_norms_folded"] == 19
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = exp.reference(x).numpy()
        np.testing.assert_allclose(exp.reference(calib).numpy(), model(calib).numpy(), atol=TOL)
    np.testing.assert_allclose(run_onnx(exp.model_bytes(), x), expected, atol=TOL)


def test_fold_batch_norm_is_exact_in_float64():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3)).double().eval()
    with torch.no_grad():
        seq[1].running_mean.uniform_(-1, 1)
        seq[1].running_var.uniform_(0.5, 2)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    folded = fold_batch_norm(seq)
    assert isinstance(folded[1], torch.nn.Identity)
    torch.testing.assert_close(folded(x), seq(x), rtol=0, atol=1e-12)


def test_batch_statistics_network_needs_calibration():
    with pytest.raises(ValueError, match="calibration samples"):
        export_inference(resnet20(), torch.zeros(2, 3, 32, 32))
