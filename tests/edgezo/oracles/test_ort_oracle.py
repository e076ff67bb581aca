"""ORTOracle against the TorchOracle: same θ, batch and queries → same losses (float32: |Δ| ≤ 1e-5 + 1e-5·|ℓ|)."""

import copy

import pytest
import torch
from edgezo.export.backends import graph_oracle
from edgezo.export.onnx import export_onnx
from edgezo.models import MLP

from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, OracleError, SeedQueries, SeedUpdate
from edgezo.oracles.onnxruntime import ORTOracle
from edgezo.oracles.torch_oracle import TorchOracle


def close(a, b, atol=1e-5, rtol=1e-5):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return bool(((a - b).abs() <= atol + rtol * b.abs()).all())


GROUPS = {"first": ["layers.0.*"]}


@pytest.fixture(scope="module")
def exported():
    """The model and its export, traced once for the module."""
    torch.manual_seed(0)
    model = MLP([8, 6, 3])
    batch = (torch.randn(10, 8), torch.randint(0, 3, (10,)))
    return model, batch, export_onnx(model, batch, groups=GROUPS)


@pytest.fixture
def pair(exported):
    model, batch, exp = exported
    model = copy.deepcopy(model)
    ref = TorchOracle(model, cross_entropy, groups=GROUPS, path="stacked")
    ort = ORTOracle(exp.model_bytes(), exp.layout, exp.param_inputs, ref.get_flat(), stacked=exp.stacked_bytes())
    return ref, ort, batch


def _bytes(exported):
    """The single-point graph only (no stacked graph)."""
    return exported[2].model_bytes()


@pytest.mark.parametrize("path", ["sequential", "iobinding", "stacked"])
def test_queries_match_torch(pair, path):
    ref, ort, batch = pair
    ort.path = path
    seeds = SeedQueries((1, 2, 3, 1), (0.1, -0.1, 0.05, 0.0))
    group = SeedQueries((4, 5), (0.2, -0.2), group="rest", kind="gaussian")
    coords = CoordQueries((0, 7, ref.dim - 1, 3), (0.3, -0.3, 0.1, 0.0))
    for q in (seeds, group, coords):
        assert close(ort.evaluate(q, batch), ref.evaluate(q, batch))
    assert ort.counters.forward_passes == 10 and ort.counters.samples_forwarded == 100


def test_loss_predict_and_parameters(pair):
    ref, ort, batch = pair
    assert close(ort.loss(batch), ref.loss(batch))
    assert close(ort.predict(batch[0]), ref.predict(batch[0]))
    assert torch.equal(ort.get_flat(), ref.get_flat())
    assert ort.layout == ref.layout
    update = SeedUpdate((7, 8), (0.5, -1.0), group="first")
    ort.apply_seed_update(update, 0.1)
    ref.apply_seed_update(update, 0.1)
    assert torch.allclose(ort.get_flat(), ref.get_flat(), atol=1e-7)
    theta = torch.randn(ref.dim)
    ort.set_flat(theta)
    ref.set_flat(theta)
    assert close(ort.loss(batch), ref.loss(batch))
    with pytest.raises(ValueError, match="1-D tensor"):
        ort.set_flat(torch.zeros(3))


def test_host_optimizer_steps_the_flat_parameter(pair):
    ref, ort, batch = pair
    grad = torch.randn(ref.dim)
    steps = []
    for oracle in (ref, ort):
        opt = torch.optim.SGD(oracle.optimizer_parameters(), lr=0.01, momentum=0.9)
        oracle.set_grad(grad)
        opt.step()
        oracle.after_step()
        steps.append(oracle.get_flat())
    assert torch.allclose(steps[0], steps[1], atol=1e-7)
    assert close(ort.loss(batch), ref.loss(batch))


def test_auto_path_choice_is_recorded_and_restored(pair, exported):
    ref, ort, batch = pair
    ort.evaluate(SeedQueries((1, 2, 3), (0.1, 0.1, 0.1)), batch)
    (key, choice), = ort.choices.items()
    assert key == "seed:q=3:b=10" and choice in ("sequential", "iobinding", "stacked")
    assert set(ort.timings[key]) == {"sequential", "iobinding", "stacked"}
    state = ort.state_dict()
    fresh = ORTOracle(_bytes(exported), ort.layout, ort.param_inputs, ort.get_flat())
    fresh.load_state_dict(state)
    assert fresh.available_paths() == ["sequential", "iobinding"]  # no stacked graph given
    fresh.evaluate(SeedQueries((1, 2, 3), (0.1, 0.1, 0.1)), batch)
    assert fresh.choices[key] in fresh.available_paths()


def test_bad_construction_and_fo(pair, exported):
    ref, ort, batch = pair
    data = _bytes(exported)
    with pytest.raises(ValueError, match="no graph input for the parameters"):
        ORTOracle(data, ort.layout, {"layers.0.weight": "layers_0_weight"}, ort.get_flat())
    with pytest.raises(ValueError, match="entries"):
        ORTOracle(data, ort.layout, ort.param_inputs, torch.zeros(3))
    with pytest.raises(ValueError, match="not available"):
        ORTOracle(data, ort.layout, ort.param_inputs, ort.get_flat(), path="stacked")
    wrong = dict(ort.param_inputs, **{"layers.0.bias": "nope"})
    with pytest.raises(ValueError, match="do not match"):
        ORTOracle(data, ort.layout, wrong, ort.get_flat())
    with pytest.raises(OracleError, match="torch backend"):
        ort.autograd(batch)


def test_factory_wires_export_and_oracle(exported):
    model, batch, _ = exported
    oracle = graph_oracle("onnxruntime", model, cross_entropy, groups=GROUPS, example_batch=batch, path="stacked")
    ref = TorchOracle(model, cross_entropy, groups=GROUPS, path="stacked")
    assert oracle.backend == "onnxruntime" and oracle.path == "stacked"
    assert close(oracle.loss(batch), ref.loss(batch))
    with pytest.raises(ValueError, match="example batch"):
        graph_oracle("onnxruntime", model, cross_entropy)
