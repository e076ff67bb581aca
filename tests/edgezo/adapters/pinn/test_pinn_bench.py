"""``edgezo bench pinn`` (edgezo.bench.pinn): equal-error ratios and a tiny end-to-end run."""

import math
from types import SimpleNamespace

import pytest

from edgezo.bench import pinn as bench

TINY = """
name = "heat-bench-test"
description = "tiny heat recipe for the bench test"
task = "pinn"
groups = { hidden = ["net.layers.0.*"], last = ["net.layers.1.*"] }
[pde]
kind = "heat"
space_dim = 2
[pinn]
steps_per_epoch = 5
test_points = 300
[model]
kind = "pinn-mlp"
sizes = [3, 6, 1]
[estimator]
kind = "combined"
parts = [{ kind = "cge", groups = ["last"], mu = 1e-3, difference = "central" },
         { kind = "rge", groups = ["hidden"], q = 2, mu = 1e-2 }]
[optimizer]
kind = "adam"
lr = 0.01
[train]
epochs = 1
batch_size = 8
seed = 0
[oracle]
path = "stacked"
"""


def mc_rows(errs):
    return [{"evaluations": n, "err": e} for n, e in errs]


def test_equal_error_ratio_interpolates_log_log():
    # error = 1/sqrt(n): reaching 1/sqrt(1000) takes exactly n = 1000
    mc = mc_rows([(n, 1 / math.sqrt(n)) for n in (10, 100, 10_000)])
    r = bench.equal_error_ratio(1 / math.sqrt(1000), 100, mc, "err")
    assert not r["lower_bound"] and r["ratio"] == pytest.approx(10)
    assert r["mc_evaluations"] == pytest.approx(1000, rel=1e-9)
    assert r["extrapolated_mc_evaluations"] == pytest.approx(1000, rel=1e-9)


def test_equal_error_ratio_reports_a_lower_bound_when_not_reached():
    mc = mc_rows([(10, 0.5), (100, 0.2), (1000, 0.1)])
    r = bench.equal_error_ratio(0.01, 50, mc, "err")
    assert r["lower_bound"] and r["ratio"] == pytest.approx(1000 / 50)
    assert r["extrapolated_ratio"] > r["ratio"]
    reached_first = bench.equal_error_ratio(0.9, 50, mc, "err")
    assert reached_first["mc_evaluations"] == 10 and not reached_first["lower_bound"]


RF = TINY.replace('name = "heat-bench-test"', 'name = "heat-bench-test-rf"').replace(
    """parts = [{ kind = "cge", groups = ["last"], mu = 1e-3, difference = "central" },
         { kind = "rge", groups = ["hidden"], q = 2, mu = 1e-2 }]""",
    """parts = [{ kind = "cge", groups = ["last"], mu = 1e-3, difference = "central" }]""")
PDE2 = TINY.replace('name = "heat-bench-test"', 'name = "hjb-bench-test"').replace(
    'kind = "heat"\nspace_dim = 2', 'kind = "hjb-sines"\nspace_dim = 2').replace(
    "[pinn]", "[pinn]\nrule = \"sparse_grid\"")


def test_tiny_end_to_end_run(tmp_path, monkeypatch):
    monkeypatch.setitem(bench.SIZES, "quick", {"points": 5, "levels": (2, 3), "mc_pairs": (16, 64), "mc_seeds": 2,
                                               "steps": 3, "overrides": {}})
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    (tmp_path / "tiny-rf.toml").write_text(RF)
    (tmp_path / "pde2.toml").write_text(PDE2)
    args = SimpleNamespace(quick=True, seed=0, recipe=str(path), pde2=str(tmp_path / "pde2.toml"), steps=3,
                           eval_every=1, out=str(tmp_path))
    result = bench.run(args)
    goals = result["goals"]
    p = "heat_bench_test"
    assert set(goals) == {f"{p}_full_rel_l2", f"{p}_full_trained_fraction", f"{p}_rel_l2", f"{p}_fo_rel_l2",
                          f"{p}_zero_net_rel_l2", f"{p}_zo_fo_ratio", f"{p}_rf_rel_l2", "train_mc_sg_ratio",
                          "sparse_grid_eval_ratio", "pde2_zo_fo_ratio", "pde2_trained_fraction"}
    assert all(math.isfinite(v) and v > 0 for v in goals.values())
    # every parameter of the full-network run moved (RGE on the hidden layer, CGE on the output layer)
    assert goals[f"{p}_full_trained_fraction"] == 1.0
    runs = result["training"]
    assert set(runs) == {"zo_sparse_grid", "zo_monte_carlo", "fo", "rf"}
    assert runs["rf"]["trained_fraction"] == pytest.approx(7 / 31)  # the output layer (6 + 1) of 31 parameters
    assert runs["fo"]["derivatives"] == "autograd" and runs["zo_monte_carlo"]["rule"] == "monte_carlo"
    assert [h["step"] for h in runs["fo"]["history"]] == [0, 1, 2, 3]
    walls = [h["wall_s"] for h in runs["fo"]["history"]]
    assert walls == sorted(walls) and walls[-1] <= runs["fo"]["wall_s"] + 1e-6
    # equal cost: Monte Carlo gets as many nodes per point as the grid (2·pairs + 1 = grid size, 3-D level 3: 25)
    assert runs["zo_monte_carlo"]["network_evaluations"] == runs["zo_sparse_grid"]["network_evaluations"]
    tp = runs["zo_sparse_grid"]["throughput"]
    assert tp["network_rows"] == runs["zo_sparse_grid"]["network_evaluations"] and tp["forward_rows_per_s"] > 0
    assert 0 <= tp["outside_forward_share"] < 1
    cmp = result["comparison"]["zo_vs_fo"]
    assert cmp["equal_steps"]["ratio"] == pytest.approx(goals[f"{p}_zo_fo_ratio"])
    assert cmp["equal_wall"]["wall_s"] == min(runs["zo_sparse_grid"]["wall_s"], runs["fo"]["wall_s"])
    assert set(result["pde2"]["training"]) == {"zo_sparse_grid", "fo"}  # no -rf file beside pde2.toml
    d = result["derivatives"]
    level3 = next(r for r in d["sparse_grid"] if r["level"] == 3)
    mc_small = d["monte_carlo"][0]
    assert level3["lap_err"] < mc_small["lap_err"]  # 25 grid nodes beat 33 Monte Carlo evaluations
    assert [r["level"] for r in d["sparse_grid"]] == [2, 3] and d["points"] == 5
    bench.plot(result, tmp_path / "pinn.png")
    assert (tmp_path / "pinn.png").stat().st_size > 10_000


def test_value_at_reads_the_state_at_a_cost():
    hist = [{"wall_s": 0.0, "test_rel_l2": 1.0}, {"wall_s": 2.0, "test_rel_l2": 0.5},
            {"wall_s": 4.0, "test_rel_l2": 0.1}]
    from edgezo.bench.pinn_runs import value_at

    assert value_at(hist, "wall_s", 3.0) == 0.5 and value_at(hist, "wall_s", 4.0) == 0.1
    assert value_at(hist, "wall_s", 1.0) == 1.0


def test_bench_refuses_a_recipe_that_is_not_a_pinn(tmp_path, capsys):
    from edgezo.cli import main

    assert main(["bench", "pinn", "--recipe", "digits-mlp", "--quick", "--out", str(tmp_path)]) == 2
    assert "needs a PINN recipe" in capsys.readouterr().err
    assert not (tmp_path / "pinn.json").exists()


def test_random_feature_baseline_with_autograd_trains_only_the_output_layer(tmp_path):
    from edgezo.bench.pinn_runs import train_curve
    from edgezo.recipes import get_recipe

    (tmp_path / "tiny-rf.toml").write_text(RF)
    rf = get_recipe(str(tmp_path / "tiny-rf.toml"))
    fitted = bench.rf_autograd(rf)
    assert fitted.config["estimator"] == {"kind": "fo", "groups": ["last"]}
    assert fitted.config["optimizer"] == rf.config["optimizer"]  # the -rf recipe's own optimizer
    run = train_curve(fitted, steps=3, eval_every=1)
    assert run["derivatives"] == "autograd" and run["estimator"] == "fo"
    assert run["trained_fraction"] == pytest.approx(7 / 31)  # the output layer (6 + 1) of 31 parameters
    assert run["test_rel_l2"] < run["history"][0]["test_rel_l2"]
