"""Goals of bench tensor-zo from synthetic runs (known accuracies and forward passes)."""

import pytest

from edgezo.bench import tensor_zo_goals


def _run(acc, passes=(10, 20), params=100):
    return {"test_accuracy": acc, "params": params,
            "history": [{"forward_passes": p, "test_accuracy": acc * (i + 1) / len(passes)}
                        for i, p in enumerate(passes)]}


def test_goals_use_the_best_dense_setting_and_mnist_names():
    runs = {"fo-dense": [_run(0.9, params=203530)], "fo-tt": [_run(0.88, params=1770)],
            "zo-rge-dense": [_run(0.5, params=203530)], "zo-rge-dense@lr=0.003": [_run(0.6, (30, 60), 203530)],
            "zo-rge-tt": [_run(0.7, (10, 20), 1770)], "zo-hybrid-tt": [_run(0.85, params=1770)]}
    g = tensor_zo_goals.task_goals(runs)
    assert g["zo_dense_baseline"] == "zo-rge-dense@lr=0.003"
    assert g["tt_forward_pass_ratio"] == 60 / 20  # TT reaches 0.6 at its 2nd evaluation (0.7)
    assert g["hybrid_tt_gap_pp"] == pytest.approx(3.0) and g["tt_fo_loss_pp"] == pytest.approx(2.0)
    result = {"tasks": {"mnist": {"goals": g}, "mnist1024": {"goals": {"hybrid_tt_gap_pp": 1.5}}}}
    goals, targets = tensor_zo_goals.all_goals(result)
    assert goals["mnist_tt_compression"] == pytest.approx(203530 / 1770)
    assert goals["mnist1024_hybrid_tt_gap_pp"] == 1.5 and set(goals) <= set(targets)


def test_forward_pass_ratio_takes_each_side_at_its_best_setting():
    runs = {"zo-rge-dense": [_run(0.6, (30, 60), 203530)], "zo-rge-tt": [_run(0.5, (10, 20), 1770)],
            "zo-rge-tt@lr=0.003": [_run(0.8, (5, 40), 1770)]}
    g = tensor_zo_goals.task_goals(runs)
    assert g["zo_tt_setting"] == "zo-rge-tt@lr=0.003" and g["zo_dense_baseline"] == "zo-rge-dense"
    assert g["tt_forward_pass_ratio"] == 60 / 40  # the tuned TT run reaches 0.6 at its 2nd evaluation (0.8)
