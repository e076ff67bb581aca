"""edgezo bench tensor-zo: configuration recipes, goals, the rank table and the stacked-forward paths."""

import types

import pytest
import torch
from edgezo.models.ttm import TTLinear

from edgezo.bench import tensor_zo, tt_forward


def test_einsum_stacked_equals_the_layer_paths():
    """The one-einsum stacked forward equals forward_stacked's contract and dense paths (float64)."""
    torch.manual_seed(0)
    layer = TTLinear([4, 7, 7, 4], [4, 4, 4, 4], 3, bias=False, dtype=torch.float64)
    cores = [c.detach() + 0.1 * torch.randn(5, *c.shape, dtype=torch.float64) for c in layer.cores]
    x = torch.randn(6, 784, dtype=torch.float64)
    ref = layer.forward_stacked(cores, None, x, path="contract")
    assert torch.allclose(tt_forward.einsum_stacked(cores, x), ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(layer.forward_stacked(cores, None, x, path="dense"), ref, rtol=1e-10, atol=1e-12)
    # copy 2 by itself, through the plain module forward
    with torch.no_grad():
        for p, c in zip(layer.cores, cores):
            p.copy_(c[2])
    assert torch.allclose(layer(x), ref[2], rtol=1e-10, atol=1e-12)


def test_measure_layer_reports_every_path():
    row = tt_forward.measure_layer([2, 2], [2, 2], 2, q=3, batch=8, rounds=1)
    assert set(row["seconds"]) == {"dense", "tt-reconstruct", "tt-contract", "tt-einsum"}
    assert row["time_over_dense"]["dense"] == 1.0
    # F_c = Σ_k M_<k N_>k r_{k-1} m_k n_k r_k = 1·2·(1·2·2·2) + 2·1·(2·2·2·1) = 32; dense M·N = 16
    assert row["macs_per_sample"] == {"dense": 16.0, "tt_contract": 32.0}


def test_config_recipe_rank_lr_and_cap():
    cfg = tensor_zo.config_recipe(tensor_zo.MNIST, "zo-hybrid-tt", rank=6, lr=0.003, max_wall_s=12.0).config
    assert [spec[2] for spec in cfg["model"]["layer_specs"]] == [6, 6]
    assert all(p["optimizer"]["lr"] == 0.003 for p in cfg["phases"])
    assert cfg["train"]["max_wall_s"] == 12.0
    assert cfg["train"]["eval_every"] == 60000 // cfg["train"]["batch_size"] // 4
    dense = tensor_zo.config_recipe(tensor_zo.MNIST, "zo-rge-dense", lr=0.001).config
    assert dense["optimizer"]["lr"] == 0.001 and dense["model"]["sizes"] == [784, 256, 10]
    assert "coord_path" not in dense.get("oracle", {})
    assert cfg["oracle"]["coord_path"] == "delta"
    big = tensor_zo.config_recipe(tensor_zo.MNIST1024, "fo-tt").config
    assert big["model"]["layer_specs"][0][2] == 6


def test_rank_table_and_task_selection():
    res = {"summary": {"fo-tt@r=2": {"params": 10, "test_accuracy": 0.8},
                       "zo-hybrid-tt@r=2": {"params": 10, "test_accuracy": 0.7},
                       "fo-tt@r=8": {"params": 40, "test_accuracy": 0.85}}}
    assert tensor_zo.rank_table(res) == [{"rank": 2, "params": 10, "fo_accuracy": 0.8, "zo_accuracy": 0.7},
                                        {"rank": 8, "params": 40, "fo_accuracy": 0.85}]
    args = types.SimpleNamespace(tasks=None, mnist="/data")
    assert tensor_zo._selected_tasks(args) == ["digits", "mnist", "mnist1024", "ranks"]
    args.quick = True
    assert tensor_zo._selected_tasks(args) == ["digits", "mnist"]
    with pytest.raises(ValueError, match="need --mnist"):
        tensor_zo._selected_tasks(types.SimpleNamespace(tasks="ranks", mnist=None))
    with pytest.raises(ValueError, match="unknown task"):
        tensor_zo._selected_tasks(types.SimpleNamespace(tasks="cifar", mnist="/d"))


def test_trainer_wall_cap_stops_after_one_step_and_evaluates():
    from edgezo.recipes import Recipe, build_trainer

    recipe = tensor_zo.config_recipe(tensor_zo.DIGITS, "zo-rge-tt", epochs=2, max_wall_s=0.0)
    trainer = build_trainer(Recipe("capped", "", recipe.config), progress=False)
    m = trainer.run()
    assert m["steps"] == 1 and len(m["history"]) == 1
    assert m["history"][0]["step"] == 1 and m["history"][0]["wall_s"] >= 0.0


def test_parallel_runs_come_back_in_their_planned_order():
    """--jobs 2: two spawned processes at a time; every row lands under its own configuration and seed."""
    args = types.SimpleNamespace(configs="fo-tt,zo-rge-tt", seeds=2, seed=0, epochs=2, quick=False, max_run_s=1e-9,
                                 threads=1, in_process=False, dense_lrs="", tt_lrs="", jobs=2)
    res = tensor_zo.run_task(tensor_zo.DIGITS, args)
    assert set(res["runs"]) == {"fo-tt", "zo-rge-tt"}
    for rows in res["runs"].values():
        assert [r["seed"] for r in rows] == [0, 1]
        assert all(r["steps"] == 1 and r["peak_rss_mb"] > 0 for r in rows)
    assert res["runs"]["fo-tt"][0]["backward_passes"] == 1 and res["runs"]["zo-rge-tt"][0]["backward_passes"] == 0


def test_one_pool_runs_the_costliest_schedules_first_and_returns_rows_per_task(monkeypatch):
    order = []

    def fake_run_all(payloads, in_process, workers):
        order.extend(p["name"] for p in payloads)
        return [{"test_accuracy": 0.5, "test_loss": 1.0, "final_train_loss": 1.0, "params": 7,
                 "forward_passes": 3, "backward_passes": 0, "samples_forwarded": 9, "steps": 1, "epochs": 1,
                 "wall_s": 0.1, "estimator": "x", "rss_start_mb": None, "peak_rss_mb": None,
                 "history": [{"step": 1, "forward_passes": 3, "wall_s": 0.1, "test_accuracy": 0.5}]}
                for _ in payloads]

    monkeypatch.setattr(tensor_zo, "_run_all", fake_run_all)
    args = types.SimpleNamespace(configs="fo-tt,zo-hybrid-tt", seeds=1, seed=0, epochs=None, quick=False,
                                 max_run_s=None, threads=1, in_process=True, dense_lrs="", tt_lrs="", jobs=2,
                                 ranks="2,8")
    plans = {"digits": tensor_zo.plan_task(tensor_zo.DIGITS, args),
             "ranks": tensor_zo.plan_task(tensor_zo.MNIST, args, "unused", n_seeds=1,
                                          jobs=tensor_zo._rank_jobs(args), full_epochs=tensor_zo.RANK_EPOCHS)}
    res = tensor_zo.run_plans(plans, args)
    assert order[0] == "mnist-tt:zo-hybrid-tt@r=8" and order[1] == "mnist-tt:zo-hybrid-tt@r=2"
    assert set(res["ranks"]["runs"]) == {"fo-tt@r=2", "zo-hybrid-tt@r=2", "fo-tt@r=8", "zo-hybrid-tt@r=8"}
    assert set(res["digits"]["runs"]) == {"fo-tt", "zo-hybrid-tt"}
    assert res["ranks"]["epochs"] == tensor_zo.RANK_EPOCHS


def test_coordinate_query_timing_compares_both_paths_on_the_same_coordinates():
    from edgezo.bench import tt_coordinates

    res = tt_coordinates.run(batch=8, per_tensor=4, rounds=1,
                             nets={"tiny": [[[2, 3], [2, 2], 2], [[2, 2], [1, 5], 2]]})["tiny"]
    # cores (1,2,2,2) + (2,2,3,1) + bias 4, then (1,1,2,2) + (2,5,2,1) + bias 5; 4 sampled from each tensor
    assert res["coordinates"] == 8 + 12 + 4 + 4 + 20 + 5 and res["sampled"] == 6 * 4
    assert res["max_loss_difference"] < 1e-5
    assert set(res["us_per_coordinate"]) == {"block", "delta"} and res["delta_full_step_s"] > 0


def test_seeds_reach_the_mnist_tasks_but_not_the_rank_study():
    def args(seeds):
        return types.SimpleNamespace(configs="fo-tt", seeds=seeds, seed=5, epochs=None, quick=False, max_run_s=None,
                                     threads=1, in_process=True, dense_lrs="", tt_lrs="", jobs=1, ranks="2",
                                     mnist="/data")

    default = tensor_zo.plan_all(args(None), ["digits", "mnist", "ranks"])
    assert [default[n].seeds for n in ("digits", "mnist", "ranks")] == [[5, 6, 7], [5], [5]]
    two = tensor_zo.plan_all(args(2), ["digits", "mnist", "mnist1024", "ranks"])
    assert [two[n].seeds for n in ("digits", "mnist", "mnist1024", "ranks")] == [[5, 6], [5, 6], [5, 6], [5]]
    assert [p["config"]["train"]["seed"] for p in two["mnist"].payloads] == [5, 6]


def test_learning_rate_sweeps_are_checked_before_anything_runs(tmp_path):
    base = dict(tasks="digits", mnist=None, quick=True, out=str(tmp_path), seed=0)
    with pytest.raises(ValueError, match="comma-separated numbers"):
        tensor_zo.run(types.SimpleNamespace(**base, tt_lrs="abc"))
    with pytest.raises(ValueError, match="784-256-10 task only"):
        tensor_zo.run(types.SimpleNamespace(**base, dense_lrs="0.001"))
