"""The "pinn" recipe task, the combined form of the hybrid estimator and the CLI (edgezo.adapters.pinn.task)."""

import json

import pytest
import torch
from edgezo.models.pinn import PINNMLP

from edgezo.adapters.pinn.model import SteinPINN
from edgezo.adapters.pinn.pde import HJB, Heat
from edgezo.adapters.pinn.stein import SteinDerivatives
from edgezo.adapters.pinn.task import CollocationBatches
from edgezo.cli import main
from edgezo.estimators import CGE, RGE, build_estimator
from edgezo.estimators.hybrid import Hybrid, combined
from edgezo.losses import mse
from edgezo.oracles.torch_oracle import TorchOracle
from edgezo.recipes import apply_overrides, build_trainer, get_recipe, parse_recipe, with_estimator

GROUPS = {"hidden": ["net.layers.0.*", "net.layers.1.*"], "last": ["net.layers.2.*"]}

HEAT_RECIPE = """
name = "heat-test"
description = "tiny heat recipe for tests"
task = "pinn"
groups = { hidden = ["net.layers.0.*", "net.layers.1.*"], last = ["net.layers.2.*"] }
[pde]
kind = "heat"
space_dim = 3
[pinn]
steps_per_epoch = 10
test_points = 500
[model]
kind = "pinn-mlp"
sizes = [4, 8, 8, 1]
[estimator]
kind = "combined"
parts = [{ kind = "cge", groups = ["last"], mu = 1e-3, difference = "central" },
         { kind = "rge", groups = ["hidden"], q = 4, mu = 1e-2 }]
[optimizer]
kind = "adam"
lr = 0.01
[train]
epochs = 2
batch_size = 16
seed = 0
[oracle]
path = "stacked"
"""


def heat_oracle(derivatives="stein", seed=0):
    torch.manual_seed(seed)
    pde = Heat(3)
    model = SteinPINN(PINNMLP([4, 8, 8, 1]), pde, SteinDerivatives("sparse_grid", dim=4), derivatives=derivatives)
    oracle = TorchOracle(model, mse, groups=GROUPS, path="stacked")
    return oracle, CollocationBatches(pde, 16, seed).get(0, 0, 0)


def test_central_cge_on_the_output_layer_is_the_exact_gradient_of_the_stein_loss():
    """The heat residual is linear in the output layer, so the loss is quadratic there and central
    differences are exact: CGE equals backprop through the Stein quadrature to rounding (1e-7 relative)."""
    oracle, batch = heat_oracle()
    _, exact = oracle.autograd(batch)  # derivatives="stein": backprop through the same forward-only loss
    last = oracle.layout.group("last")
    est = CGE(mu=1e-3, difference="central", groups=["last"]).estimate(oracle, batch, step=0, seed=0)
    g = est.to_dense(oracle.layout, dtype=torch.float64)
    torch.testing.assert_close(g[last.offset:last.stop], exact[last.offset:last.stop].double(), rtol=1e-7, atol=1e-9)
    assert g[: last.offset].abs().max() == 0  # nothing outside the group
    # forward differences are biased by O(mu): the comparison can fail
    fwd = CGE(mu=1e-1, groups=["last"]).estimate(oracle, batch, step=0, seed=0).to_dense(oracle.layout,
                                                                                       dtype=torch.float64)
    assert (fwd[last.offset:last.stop] - exact[last.offset:last.stop]).abs().max() > 1e-6


def test_combined_is_the_sum_of_its_parts():
    oracle, batch = heat_oracle()
    comb = build_estimator({"kind": "combined", "parts": [
        {"kind": "cge", "groups": ["last"], "mu": 1e-3, "difference": "central"},
        {"kind": "rge", "groups": ["hidden"], "q": 3, "mu": 1e-2}]})
    est = comb.estimate(oracle, batch, step=5, seed=1)
    a = CGE(mu=1e-3, difference="central", groups=["last"]).estimate(oracle, batch, step=5, seed=1)
    b = RGE(q=3, mu=1e-2, groups=["hidden"]).estimate(oracle, batch, step=5, seed=1)
    dense = lambda e: e.to_dense(oracle.layout, dtype=torch.float64)  # noqa: E731
    # The combined estimate evaluates the same points in other batches, so float64 reductions may
    # round differently: a central difference with mu = 1e-3 amplifies loss rounding ~500x (5e-12
    # relative was seen on an AVX-512 host). A wrong combination would differ at O(1).
    torch.testing.assert_close(dense(est), dense(a) + dense(b), rtol=1e-9, atol=1e-12)
    assert est.forward_passes == a.forward_passes + b.forward_passes == 2 * 9 + 2 * 3
    # no part evaluates θ itself: the reported loss is the mean of the parts' central-difference
    # means, within O(μ²) of the loss at θ
    assert est.loss == pytest.approx(oracle.loss(batch), rel=1e-3) and isinstance(comb, Hybrid)


def test_combined_refuses_overlapping_or_unnamed_groups():
    with pytest.raises(ValueError, match="disjoint"):
        combined(parts=[{"kind": "cge", "groups": ["last"]}, {"kind": "rge", "groups": ["last", "hidden"]}])
    with pytest.raises(ValueError, match="must name"):
        combined(parts=[{"kind": "rge"}])
    with pytest.raises(ValueError, match="first-order"):
        combined(parts=[{"kind": "fo"}])
    with pytest.raises(ValueError, match="at least one"):
        combined(parts=[])


def test_output_layer_queries_share_the_hidden_features(monkeypatch):
    """A CGE step on the output layer runs the hidden layers on the B·n rows once, not once per query."""
    oracle, batch = heat_oracle()
    net = oracle.model.net
    rows = []
    orig = net._layer

    def spy(k, params, h, h_q, q):
        if k == 1:
            rows.append(h.numel() // net.layers[1].in_features)
        return orig(k, params, h, h_q, q)

    monkeypatch.setattr(net, "_layer", spy)
    CGE(mu=1e-3, difference="central", groups=["last"]).estimate(oracle, batch, step=0, seed=0)
    assert sum(rows) == 16 * 41  # one pass over B·n rows for all 2·9 queries


def test_collocation_batches_are_deterministic_per_step():
    src = CollocationBatches(HJB(20), 100, seed=3)
    x, y = src.get(0, 5, 5)
    assert x.shape == (100, 21) and x.dtype == torch.float64 and torch.equal(y, torch.zeros(100, dtype=torch.float64))
    assert torch.equal(x, CollocationBatches(HJB(20), 100, seed=3).get(0, 5, 5)[0])
    assert not torch.equal(x, src.get(0, 6, 6)[0])
    assert not torch.equal(x, CollocationBatches(HJB(20), 100, 4).get(0, 5, 5)[0])
    with pytest.raises(ValueError):
        CollocationBatches(HJB(20), 0, 0)


def test_recipe_trains_and_reports_test_rel_l2(tmp_path):
    recipe = parse_recipe(HEAT_RECIPE)
    trainer = build_trainer(recipe, progress=False, out_dir=tmp_path)
    first = trainer.evaluator(trainer.oracle)["test_rel_l2"]
    metrics = trainer.run()
    assert metrics["test_rel_l2"] < 0.9 * first  # 20 steps of the combined ZO estimator (measured 0.41 → 0.35)
    assert metrics["derivatives"] == "stein" and metrics["evaluations_per_point"] == 41
    assert metrics["network_evaluations"] == metrics["samples_forwarded"] * 41
    assert metrics["forward_passes"] == 20 * (2 * 9 + 2 * 4)


def test_fo_baseline_uses_autograd_derivatives():
    recipe = with_estimator(parse_recipe(HEAT_RECIPE), "fo")
    trainer = build_trainer(recipe, progress=False)
    assert trainer.oracle.model.derivatives == "autograd"
    first = trainer.evaluator(trainer.oracle)["test_rel_l2"]
    metrics = trainer.run()
    assert metrics["test_rel_l2"] < 0.8 * first and metrics["derivatives"] == "autograd"


def test_monte_carlo_run_resumes_exactly(tmp_path):
    """Collocation points and Monte Carlo nodes depend on the step only, so a resumed run is identical."""
    text = HEAT_RECIPE.replace('[pinn]\n', '[pinn]\nrule = "monte_carlo"\nsamples = 8\n')
    recipe = parse_recipe(text)
    full = build_trainer(recipe, progress=False)
    full.config.max_steps = full.total_steps = 4
    full.run()
    part = build_trainer(recipe, progress=False, out_dir=tmp_path)
    part.config.checkpoint_every = 2
    part.total_steps = 2
    part.run()
    resumed = build_trainer(recipe, progress=False, out_dir=tmp_path)
    resumed.config.checkpoint_every = 2
    resumed.total_steps = 4
    resumed.run(resume=True)
    assert torch.equal(resumed.oracle.get_flat(), full.oracle.get_flat())


def test_bad_pinn_options():
    from edgezo.recipes import RecipeError

    with pytest.raises(RecipeError, match="unknown \\[pinn\\] option"):
        build_trainer(parse_recipe(HEAT_RECIPE.replace("[pinn]\n", "[pinn]\nsigmaa = 0.1\n")), progress=False)
    with pytest.raises(RecipeError, match="rule"):
        build_trainer(parse_recipe(HEAT_RECIPE.replace("[pinn]\n", '[pinn]\nrule = "qmc"\n')), progress=False)


def test_registered_recipes_build():
    for name in ("hjb20", "hjb20-rf", "heat3", "heat10", "heat10-rf"):
        recipe = get_recipe(name)
        assert recipe.task == "pinn"
    hjb = get_recipe("hjb20").config
    assert hjb["pde"] == {"kind": "hjb", "space_dim": 20} and hjb["model"]["activation"] == "sin"
    assert hjb["train"]["batch_size"] == 50 and hjb["pinn"]["test_points"] == 10_000
    assert get_recipe("hjb20-rf").config["model"]["sizes"] == [21, 32, 32, 1]  # the landed baseline, unchanged
    heat, rf = get_recipe("heat10").config, get_recipe("heat10-rf").config
    assert heat["model"] == rf["model"] and heat["pde"] == rf["pde"] == {"kind": "heat", "space_dim": 10, "rate": 1.0}


@pytest.mark.parametrize("name", ["hjb20", "heat10"])
def test_full_network_recipes_estimate_every_parameter_with_tt_hidden_layers(name):
    """The first phase's estimator covers every coordinate; the hidden layers are TTLinear; nothing is frozen."""
    from edgezo.models.ttm import TTLinear

    from edgezo.recipes import phases_of

    trainer = build_trainer(apply_overrides(get_recipe(name), {"pinn.test_points": 10}), progress=False)
    net = trainer.oracle.model.net
    assert [type(m) for m in net.layers[:-1]] == [TTLinear, TTLinear]
    assert all(p.requires_grad for p in net.parameters())
    phases = phases_of(get_recipe(name))
    covered = sum(row["entries"] for row in phases[0].estimator.describe(trainer.oracle.layout))
    assert covered == trainer.oracle.dim == sum(p.numel() for p in net.parameters())
    assert all(p.estimator.name == "hybrid" for p in phases)
    assert len(phases) == {"hjb20": 2, "heat10": 1}[name]  # hjb20 ends with an output-layer polish, heat10 does not


@pytest.mark.parametrize("estimator", [None, "fo"])
def test_cli_train_writes_test_rel_l2(tmp_path, estimator, capsys):
    out = tmp_path / "run"
    argv = ["train", "--recipe", "hjb20", "--out", str(out), "--max-steps", "1", "--no-progress",
            "--batch-size", "2", "--set", "pinn.test_points=200"]
    if estimator:
        argv += ["--estimator", estimator]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["test_rel_l2"] < 0.2 and metrics["recipe"] == "hjb20" and metrics["steps"] == 1
    assert "test_rel_l2" in capsys.readouterr().out
