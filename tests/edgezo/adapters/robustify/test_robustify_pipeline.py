"""The ZO-AE-DS pipeline: stages, query accounting, budgets, artifacts and exact resume (tiny sizes)."""

import json

import numpy as np
import pytest
import torch
from edgezo.models.denoiser import ConvAutoencoder, DnCNN

from edgezo.adapters.robustify import (
    CallableBlackBox,
    Frontend,
    Interrupted,
    LatentOracle,
    Robustifier,
    RobustifyConfig,
    TorchBlackBox,
)
from edgezo.estimators import CGE

TINY = dict(q=3, latent_dim=4, batch_size=8, ae_epochs=1, warmup_epochs=1, epochs=2, n0=10, n=30,
            denoiser_width=4, denoiser_depth=3, ae_width=4, checkpoint_every=3, radii=(0.0, 0.1))


@pytest.fixture(scope="module")
def tiny_data(digits):
    x = digits.x_train[:32].view(-1, 1, 8, 8)
    return x, digits.x_test[:3].view(-1, 1, 8, 8), digits.y_test[:3]


def _classifier():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))


def _run(tmp, data, *, stop_after=None, **overrides):
    x, xt, yt = data
    cfg = RobustifyConfig(**{**TINY, **overrides})
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return stop_after is not None and calls["n"] > stop_after

    bb = TorchBlackBox(_classifier(), input_shape=(64,))
    r = Robustifier(cfg, bb, x, xt, yt, out_dir=tmp, num_classes=10, should_stop=should_stop)
    return r, bb


def test_full_run_counts_queries_and_writes_artifacts(tmp_path, tiny_data):
    import onnxruntime as ort

    r, bb = _run(tmp_path, tiny_data)
    report = r.run()
    # labels 32 + 2 epochs × 4 steps × 8 samples × (q + 1) + 3 images × (n0 + n)
    assert report["queries"]["total"] == bb.queries == 32 + 2 * 4 * 8 * 4 + 3 * 40 == r.plan["total"]
    assert report["queries"]["stability"] == 256 and report["queries"]["certify"] == 120
    assert set(report["certified_accuracy"]) == {"0", "0.1"} and report["num_images"] == 3
    for name in ("frontend.onnx", "denoiser_encoder.onnx", "decoder.onnx", "certification.json",
                 "manifest.json", "metrics.json"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["certified_accuracy"] == report["certified_accuracy"] and metrics["queries_used"] == bb.queries
    x = tiny_data[1]
    sess = ort.InferenceSession(str(tmp_path / "frontend.onnx"))
    with torch.no_grad():
        expected = r.frontend.eval()(x).numpy()
    assert np.allclose(sess.run(None, {"x": x.numpy()})[0], expected, atol=1e-4)  # float32 kernels differ
    z = ort.InferenceSession(str(tmp_path / "denoiser_encoder.onnx")).run(None, {"x": x.numpy()})[0]
    assert z.shape == (3, 4)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, tiny_data):
    ref, _ = _run(tmp_path / "ref", tiny_data)
    expected = ref.run()
    first, _ = _run(tmp_path / "cut", tiny_data, stop_after=9)  # in the middle of the stability stage
    with pytest.raises(Interrupted):
        first.run()
    assert first.state["stage"] == "stability" and 0 < first.state["step"] < 8
    again, _ = _run(tmp_path / "cut", tiny_data)
    report = again.run(resume=True)
    assert report["results"] == expected["results"]
    assert report["queries"]["total"] == expected["queries"]["total"] and report["sessions"] == 2
    for (k, a), b in zip(ref.frontend.state_dict().items(), again.frontend.state_dict().values()):
        assert torch.equal(a, b), k


def test_budget_too_small_is_refused_and_tight_budget_truncates_training(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="too small"):
        _run(tmp_path / "a", tiny_data, query_budget=100)
    budget = 32 + 120 + 3 * 32 + 10  # labels + certification + three training steps (and a bit)
    r, bb = _run(tmp_path / "b", tiny_data, query_budget=budget)
    report = r.run()
    assert report["training_truncated_at_step"] == 3
    assert bb.queries <= budget and report["num_images"] == 3


def test_resume_refuses_other_settings(tmp_path, tiny_data):
    r, _ = _run(tmp_path, tiny_data, stop_after=2)
    with pytest.raises(Interrupted):
        r.run()
    other, _ = _run(tmp_path, tiny_data, q=5)
    with pytest.raises(ValueError, match="other settings"):
        other.run(resume=True)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown robustify setting"):
        RobustifyConfig.from_dict({"sigmaa": 0.5})
    with pytest.raises(ValueError, match="method"):
        RobustifyConfig(method="zo-xx")
    cfg = RobustifyConfig(method="zo-ds", estimator="cge", batch_size=8)
    assert cfg.queries_per_step(64) == 8 * 65
    assert RobustifyConfig(method="fo-ds").queries_per_step(64) == 0


def test_fo_ds_needs_the_white_box(tiny_data, tmp_path):
    x, xt, yt = tiny_data
    bb = CallableBlackBox(lambda v: torch.zeros(v.shape[0], 10), input_shape=(64,))
    with pytest.raises(ValueError, match="white-box"):
        Robustifier(RobustifyConfig(method="fo-ds", **TINY), bb, x, xt, yt, out_dir=tmp_path, num_classes=10)


def test_latent_gradient_backpropagates_to_the_first_order_gradient(digits):
    """∇_θ[aᵀ Enc(D_θ(x))] with a from CGE through the black box equals autograd of the loss
    CE(f(Dec(Enc(D_θ(x)))), y) over denoiser and encoder (central CGE, μ = 1e-3, float32 black box)."""
    torch.manual_seed(0)
    fe = Frontend(DnCNN(1, 4, 3, batch_norm=False), ConvAutoencoder((1, 8, 8), 4, 4)).double()
    clf = _classifier().double()
    x = digits.x_train[:6].view(-1, 1, 8, 8).double()
    y = torch.arange(6)
    params = list(fe.denoiser.parameters()) + list(fe.autoencoder.encoder.parameters())

    loss = torch.nn.functional.cross_entropy(clf(fe(x)), y)
    expected = torch.autograd.grad(loss, params)

    codes = fe.code(x)
    oracle = LatentOracle(CallableBlackBox(lambda v: clf(v.double()), input_shape=(64,), scores="logits"),
                          lambda z: fe.autoencoder.decode(z.double()))
    oracle.set_point(codes.detach(), y)
    a = oracle.gradient_from(CGE(mu=1e-3, difference="central").estimate(oracle, (y,), step=0, seed=0))
    got = torch.autograd.grad((a.double() * codes).sum(), params)
    flat_e, flat_g = torch.cat([g.flatten() for g in expected]), torch.cat([g.flatten() for g in got])
    assert float(torch.nn.functional.cosine_similarity(flat_e, flat_g, dim=0)) > 0.999
    assert torch.allclose(flat_g, flat_e, atol=1e-4, rtol=1e-2)
