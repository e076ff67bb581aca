"""Smoke test of ``edgezo bench solver`` on a tiny problem (deterministic, a few seconds)."""

import json

import pytest

from edgezo.cli import main

TINY = ["--set=data.train=8", "--set=data.test=4", "--set=solver.steps=5", "--set=model.channels=[2]",
        "--set=model.kernel_size=3", "--set=train.batch_size=4", "--epochs=2", "--rge-q", "2"]


def test_bench_solver_writes_goals_runs_and_plot(tmp_path):
    assert main(["bench", "solver", "--out", str(tmp_path), *TINY]) == 0
    result = json.loads((tmp_path / "solver.json").read_text())
    assert set(result["goals"]) == {"zo_fo_error_ratio", "ordering_holds"}
    runs = result["runs"]
    assert set(runs) == {"none", "fo", "cge", "rge-q2"}
    assert result["goals"]["zo_fo_error_ratio"] == pytest.approx(runs["cge"]["test_mae"] / runs["fo"]["test_mae"])
    expected = int(runs["none"]["test_mae"] > runs["cge"]["test_mae"] > runs["fo"]["test_mae"])
    assert result["goals"]["ordering_holds"] == expected
    # 2 epochs x 2 steps; forward CGE costs d + 1 rollouts per step, central RGE 2q, FO one (plus a backward)
    params = result["problem"]["params"]
    assert runs["fo"]["forward_passes"] == 4
    assert runs["cge"]["forward_passes"] == 4 * (params + 1)
    assert runs["rge-q2"]["forward_passes"] == 4 * 4
    assert runs["cge"]["solver_states"] > 0 and runs["fo"]["solver_calls"] > 0  # FO evaluates with the black box
    assert len(result["per_step_mae"]["none"]) == 6
    assert result["throughput"]["speedup"] > 0
    assert (tmp_path / "solver.png").stat().st_size > 10_000


def test_bench_solver_refuses_to_change_the_compared_estimators(tmp_path, capsys):
    assert main(["bench", "solver", "--out", str(tmp_path), "--set=estimator.mu=0.1"]) == 2
    assert "--set cannot change estimator.mu" in capsys.readouterr().err
