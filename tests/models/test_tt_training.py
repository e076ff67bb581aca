"""Training TT-compressed models with forward passes only: recipes, oracle and ZO progress.

The TT layer itself (forward = reconstructed dense layer, TT-SVD error falling
with rank) is tested in test_ttm.py. Seeds are fixed; the ZO tests are
stochastic in principle but the loss drops they check are several times the
run-to-run spread.
"""

import pytest
import torch
from edgezo.models import build_model
from edgezo.models.ttm import TTMLP, parameter_report
from torch.func import functional_call

from edgezo.data import FASHION_MNIST_DEBIAN_DIR, DataError
from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, SeedQueries
from edgezo.oracles.torch_oracle import TorchOracle
from edgezo.recipes import apply_overrides, build_trainer, get_recipe

F64 = torch.float64


@pytest.mark.parametrize("name,params,core_weights,dense", [
    ("digits-tt", 1722, 1200, 38410),
    ("mnist-tt", 1770, 1504, 203530),  # the paper's 1,504 excludes the 266 biases
    ("mnist-tt-1024", 3962, 2928, 814090),
])
def test_recipes_build_the_stated_tt_models(name, params, core_weights, dense):
    recipe = get_recipe(name)
    model = build_model(recipe.section("model"))
    assert isinstance(model, TTMLP)
    rep = parameter_report(model)
    assert (rep["params"], rep["tt_params"], rep["dense_equivalent_params"]) == (params, core_weights, dense)
    assert recipe.config["groups"] == "per_tensor"


def test_mnist_recipes_take_the_data_path_from_the_command_line():
    with pytest.raises(DataError, match="--data"):
        build_trainer(get_recipe("mnist-tt"), progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST_DEBIAN_DIR.is_dir(), reason="Fashion-MNIST (dataset-fashion-mnist) not installed")
def test_mnist_tt_recipe_trains_a_few_steps():
    recipe = apply_overrides(get_recipe("mnist-tt"), {"train.max_steps": 2, "train.epochs": 1})
    m = build_trainer(recipe, data_path=str(FASHION_MNIST_DEBIAN_DIR), progress=False).run()
    assert m["forward_passes"] == 2 * 11 and m["samples_forwarded"] == 2 * 11 * 250  # RGE q=10, batch 250
    assert m["params"] == 1770


@pytest.mark.parametrize("path", ["stacked", "vmap"])
def test_batched_oracle_on_tt_model_matches_single_forwards(path):
    """Coordinate and one-core seed queries on a TT model: the batched paths (the
    stacked one treats unperturbed stacked tensors as shared) equal one
    functional forward per point."""
    torch.manual_seed(0)
    model = TTMLP([([4, 4, 4], [2, 4, 4], 3), ([2, 4, 4], [1, 5, 2], 2)], activation="tanh", dtype=F64)
    batch = (torch.randn(12, 64, dtype=F64), torch.randint(0, 10, (12,)))
    oracle = TorchOracle(model, cross_entropy, groups="per_tensor", path=path)
    layout = oracle.layout
    theta = oracle.get_flat()
    core = layout.group("layers.1.core1")
    coords = tuple(range(core.offset, core.offset + 7)) + (0, layout.dim - 1)
    queries = [CoordQueries(coords, (1e-3,) * len(coords)),
               SeedQueries((5, 6, 7), (0.1, -0.1, 0.0), "layers.0.core1")]
    for q in queries:
        got = oracle.evaluate(q, batch)
        block = oracle._perturbed(theta, q, 0, len(q))
        for i in range(len(q)):
            params = {k: v[i] for k, v in layout.split(block).items()}
            ref = cross_entropy(functional_call(model, params, (batch[0],)), batch[1])
            assert abs(float(got[i]) - float(ref)) < 1e-12


def _train_loss(trainer, data):
    return trainer.oracle.loss((data.x_train, data.y_train))


@pytest.mark.parametrize("phases", [
    # layer-wise RGE on the cores (one tensor per step), the authors' settings with Adam
    [{"start_epoch": 0, "estimator": {"kind": "rge", "q": 10, "mu": 0.01, "difference": "forward",
                                      "layerwise": "cycle"},
      "optimizer": {"kind": "adam", "lr": 0.01, "betas": [0.9, 0.5]}}],
    # hybrid: CGE on the small groups (two output-layer cores and its bias, 82 entries),
    # layer-wise RGE on the rest
    [{"start_epoch": 0, "estimator": {"kind": "hybrid", "cge_below": 100},
      "optimizer": {"kind": "adam", "lr": 0.01, "betas": [0.9, 0.5]}}],
], ids=["rge-layerwise", "hybrid"])
def test_zo_on_a_tt_model_lowers_the_training_loss(digits, phases):
    recipe = apply_overrides(get_recipe("digits-tt"), {"phases": phases, "train.epochs": 3,
                                                       "train.batch_size": 32, "oracle.path": "stacked"})
    trainer = build_trainer(recipe, progress=False)
    before = _train_loss(trainer, digits)
    m = trainer.run()
    after = _train_loss(trainer, digits)
    assert m["params"] == 1722
    assert after < before - 0.3, (before, after)
    assert m["forward_passes"] > 0


def test_tensor_zo_bench_configurations():
    """The benchmark's five runs differ from the TT recipe only where they must."""
    from edgezo.bench.tensor_zo import CONFIGS, DIGITS, config_recipe, scaled_phases
    from edgezo.bench.tensor_zo_goals import forward_pass_ratio

    recipes = {c: config_recipe(DIGITS, c, seed=3).config for c in CONFIGS}
    assert {c: r["model"]["kind"] for c, r in recipes.items()} == {
        "fo-dense": "mlp", "fo-tt": "tt-mlp", "zo-rge-dense": "mlp", "zo-rge-tt": "tt-mlp", "zo-hybrid-tt": "tt-mlp"}
    assert all(r["train"]["seed"] == 3 and r["train"]["epochs"] == 30 for r in recipes.values())
    assert recipes["fo-tt"]["estimator"] == {"kind": "fo"} and "phases" not in recipes["fo-dense"]
    assert recipes["zo-rge-tt"]["estimator"]["kind"] == "rge" and "phases" not in recipes["zo-rge-dense"]
    assert recipes["zo-hybrid-tt"]["phases"] == get_recipe("digits-tt").config["phases"]
    quick = config_recipe(DIGITS, "zo-hybrid-tt", epochs=12).config
    assert [p["start_epoch"] for p in quick["phases"]] == [0, round(22 * 12 / 30)]
    with pytest.raises(ValueError, match="no room for phase 1"):
        scaled_phases([{"start_epoch": 0}, {"start_epoch": 29}], 30, 1)

    def run(points):
        return {"test_accuracy": points[-1][1], "history": [{"forward_passes": p, "test_accuracy": a}
                                                            for p, a in points]}
    dense = run([(10, 0.5), (20, 0.8), (30, 0.8)])
    assert forward_pass_ratio(dense, run([(10, 0.8), (20, 0.85)])) == 2.0
    assert forward_pass_ratio(dense, run([(10, 0.7), (20, 0.75)])) is None
