"""Conformance suite: the torch, onnxruntime and tvm oracles agree.

Stated tolerances (float32 everywhere):

* losses at the same θ, batch and direction seeds:
  ``|ℓ_backend − ℓ_torch| ≤ 1e-5 + 1e-5·|ℓ_torch|`` (every query of a step);
* gradient estimates of one step (RGE and CGE): cosine to torch's ≥ 0.99
  (forward differences divide the loss rounding by μ, so the estimates agree
  less tightly than the losses);
* the default recipe trained for one epoch through each backend: test
  accuracy within 3 points of torch's (``slow``).

Every oracle runs its stacked path here (the auto choice would first time a
per-point loop over the 2,410 CGE queries); the other paths are compared with
torch in tests/edgezo/oracles/.
"""

import numpy as np
import pytest
import torch

from edgezo.data import load_digits
from edgezo.oracles.backends import oracle_factory
from edgezo.oracles.tvm import tvm_available
from edgezo.recipes import DEFAULT_RECIPE, apply_overrides, build_trainer, get_recipe, make_oracle, phases_of

TVM = pytest.param("tvm", marks=[pytest.mark.tvm, pytest.mark.skipif(
    not tvm_available(), reason="Apache TVM is not installed (pip install edgezo[tvm])")])
BACKENDS = ["torch", "onnxruntime", TVM]


def loss_close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(np.abs(a - b) <= 1e-5 + 1e-5 * np.abs(b)))


def cosine(a, b):
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


@pytest.fixture(scope="module")
def setup():
    from edgezo.models import build_model

    from edgezo.losses import cross_entropy

    recipe = get_recipe(DEFAULT_RECIPE)
    data = load_digits()
    torch.manual_seed(0)
    model = build_model(recipe.section("model"))
    batch = (data.x_train[:64], data.y_train[:64])
    cache = {}

    def oracle(backend):
        if backend not in cache:
            # an explicit path: "auto" would time the per-point loop over all 2,410 CGE queries first
            cache[backend] = make_oracle(model, cross_entropy, example_batch=batch, path="stacked",
                                         oracle_factory=oracle_factory(backend, recipe))
        return cache[backend]

    return recipe, oracle, batch


class _Recorder:
    """Wraps an oracle and records every loss it returns."""

    def __init__(self, oracle):
        self.oracle, self.values = oracle, []

    def __getattr__(self, name):
        return getattr(self.oracle, name)

    def evaluate(self, queries, batch):
        out = self.oracle.evaluate(queries, batch)
        self.values.extend(out.tolist())
        return out

    def loss(self, batch):
        value = self.oracle.loss(batch)
        self.values.append(value)
        return value


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("estimator", ["rge", "cge"])
def test_same_losses_and_estimates(setup, backend, estimator):
    recipe, oracle, batch = setup
    if estimator == "rge":
        est = phases_of(get_recipe("digits-mlp-rge"))[0].estimator
    else:
        est = phases_of(recipe)[0].estimator
    ref, other = _Recorder(oracle("torch")), _Recorder(oracle(backend))
    for step in (0, 1):
        e_ref = est.estimate(ref, batch, step=step, seed=3)
        e_other = est.estimate(other, batch, step=step, seed=3)
        assert loss_close(e_other.loss, e_ref.loss)
        g_ref, g_other = e_ref.to_dense(ref.layout), e_other.to_dense(other.layout)
        assert cosine(g_other, g_ref) >= 0.99
    assert len(other.values) == len(ref.values) > 0
    assert loss_close(other.values, ref.values)


@pytest.mark.parametrize("backend", BACKENDS)
def test_predictions_agree(setup, backend):
    _, oracle, _ = setup
    x = load_digits().x_test[:50]
    a, b = oracle(backend).predict(x), oracle("torch").predict(x)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.argmax(-1), b.argmax(-1))


@pytest.fixture(scope="module")
def trained():
    recipe = apply_overrides(get_recipe(DEFAULT_RECIPE), {"train.epochs": 1, "oracle.path": "stacked"})
    results = {}

    def train(backend):
        if backend not in results:
            trainer = build_trainer(recipe, progress=False, oracle_factory=oracle_factory(backend, recipe))
            metrics = trainer.run()
            losses = [v for _, v in trainer.state.losses]
            results[backend] = (metrics, losses)
        return results[backend]

    return train


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_default_recipe_trains_to_the_same_accuracy_band(trained, backend):
    metrics, losses = trained(backend)
    ref_metrics, ref_losses = trained("torch")
    assert metrics["backend"] == backend
    assert metrics["forward_passes"] == ref_metrics["forward_passes"]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])  # it trained
    assert metrics["test_accuracy"] >= 0.8
    assert abs(metrics["test_accuracy"] - ref_metrics["test_accuracy"]) <= 0.03
