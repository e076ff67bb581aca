"""Training runs of ``edgezo bench pinn``: curves, variants, equal-cost comparisons, throughput.

Every run records, at each evaluation, the test relative L2 error against the
forward passes (loss evaluations) and against the *training* wall time (the
evaluations themselves are timed apart and excluded), so that runs of different
cost per step compare at equal forward passes, equal steps and equal wall time.

Throughput (docs/pinn.md): the Stein loss of one step evaluates the network on
``queries × collocation points × quadrature nodes`` rows. ``forward_rows_per_s``
is the nominal rows of the run (:attr:`SteinPINN.network_evaluations`) divided
by the seconds spent inside the network's forward
(:attr:`SteinPINN.forward_seconds`); ``outside_forward_share`` is the share of
the training wall time spent elsewhere (Stein quadrature combine, residuals,
estimator bookkeeping, optimizer).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..adapters.pinn.model import SteinPINN
from ..recipes import Recipe, apply_overrides, build_trainer, with_estimator

__all__ = ["variant", "train_curve", "equal_wall", "value_at"]


def variant(recipe: Recipe, kind: str, sg_evaluations: int) -> Recipe:
    """``fo`` (autograd derivatives and parameters), ``zo_monte_carlo`` (antithetic Monte Carlo nodes, as many
    evaluations per point as the grid: 2·pairs + 1 = grid size) or the recipe itself."""
    if kind == "fo":
        return with_estimator(recipe, "fo")
    if kind == "zo_monte_carlo":
        pairs = max(1, (sg_evaluations - 1) // 2)
        return apply_overrides(recipe, {"pinn.rule": "monte_carlo", "pinn.samples": pairs})
    return recipe


def _find_pinn(module) -> SteinPINN | None:
    if isinstance(module, SteinPINN):
        return module
    return next((m for m in getattr(module, "modules", lambda: [])() if isinstance(m, SteinPINN)), None)


def _timed(evaluator, clock: dict):
    """Wrap an evaluator: add ``wall_s``, the training time so far without the evaluations."""

    def evaluate(oracle):
        start = time.perf_counter()
        rec = evaluator(oracle)
        clock["eval_s"] += time.perf_counter() - start
        rec["wall_s"] = max(0.0, start - clock["t0"] - clock["eval_before"])
        clock["eval_before"] = clock["eval_s"]
        return rec

    return evaluate


def train_curve(recipe: Recipe, *, steps: int, eval_every: int, overrides: dict | None = None) -> dict[str, Any]:
    """Train ``recipe`` for ``steps`` steps; the curve, final errors, trained fraction and throughput."""
    ov = {"train.max_steps": steps, "train.eval_every": eval_every, **(overrides or {})}
    spe = recipe.config.get("pinn", {}).get("steps_per_epoch", 100)
    if recipe.config.get("train", {}).get("epochs", 1) * spe < steps:
        ov["train.epochs"] = -(-steps // spe)
    trainer = build_trainer(apply_overrides(recipe, ov), progress=False)
    model = _find_pinn(trainer.oracle.model)
    theta0 = trainer.oracle.get_flat().clone()
    initial = trainer.evaluator(trainer.oracle)
    clock = {"t0": 0.0, "eval_s": 0.0, "eval_before": 0.0}
    trainer.evaluator = _timed(trainer.evaluator, clock)
    model.forward_seconds, model.network_evaluations = 0.0, 0
    clock["t0"] = time.perf_counter()
    metrics = trainer.run()
    wall = time.perf_counter() - clock["t0"] - clock["eval_s"]
    changed = (trainer.oracle.get_flat() != theta0).double().mean().item()
    history = [{"step": 0, "forward_passes": 0, "test_rel_l2": initial["test_rel_l2"], "wall_s": 0.0}]
    history += [{k: h[k] for k in ("step", "forward_passes", "test_rel_l2", "wall_s")} for h in metrics["history"]]
    rows = model.network_evaluations
    fwd = model.forward_seconds
    return {
        "recipe": recipe.name, "estimator": metrics["estimator"], "derivatives": metrics["derivatives"],
        "rule": metrics["rule"], "params": metrics["params"], "steps": metrics["steps"],
        "forward_passes": metrics["forward_passes"], "network_evaluations": metrics["network_evaluations"],
        "wall_s": wall, "test_rel_l2": metrics["test_rel_l2"],
        "best_test_rel_l2": min(h["test_rel_l2"] for h in history),
        "final_train_loss": metrics["final_train_loss"],
        "trained_fraction": changed,
        # Stein runs only: the autograd baseline's forward is not timed apart from its backward
        "throughput": {"network_rows": rows, "forward_s": round(fwd, 3),
                       "forward_rows_per_s": rows / fwd if fwd > 0 else None,
                       "step_s": wall / max(1, metrics["steps"]),
                       "outside_forward_share": max(0.0, 1.0 - fwd / wall) if wall > 0 and fwd > 0 else None},
        "history": history,
    }


def value_at(history: list[dict], key: str, x: float) -> float:
    """The test error of the last evaluation with ``history[key] <= x`` (the run's state at that cost)."""
    best = history[0]["test_rel_l2"]
    for h in history:
        if h[key] <= x + 1e-12:
            best = h["test_rel_l2"]
    return float(best)


def equal_wall(zo: dict, fo: dict) -> dict[str, Any]:
    """ZO vs FO at equal steps (final errors) and at equal wall time (both at the shorter run's training time)."""
    wall = min(zo["wall_s"], fo["wall_s"])
    z, f = value_at(zo["history"], "wall_s", wall), value_at(fo["history"], "wall_s", wall)
    return {
        "equal_steps": {"steps": zo["steps"], "zo": zo["test_rel_l2"], "fo": fo["test_rel_l2"],
                        "ratio": zo["test_rel_l2"] / fo["test_rel_l2"]},
        "equal_wall": {"wall_s": wall, "zo": z, "fo": f, "ratio": z / f},
        "wall_per_step": {"zo": zo["wall_s"] / max(1, zo["steps"]), "fo": fo["wall_s"] / max(1, fo["steps"])},
    }


def median_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def set_threads(threads: int) -> int:
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    return before
