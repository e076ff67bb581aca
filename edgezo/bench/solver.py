"""``edgezo bench solver``: solver-in-the-loop error correction, ZO against FO.

The ``burgers-correction`` recipe: a coarse numpy finite-volume solver for 1-D
viscous Burgers' (32 cells, first-order flux, 20 steps of dt = 0.1) whose
rollout drifts from an 8× finer second-order reference; a periodic CNN
corrector (88 parameters) is applied after every solver step. On the same
training initial conditions, epochs, batch order, optimizer and
schedule, the bench trains

* ``fo``  — backpropagation through the differentiable torch twin of the solver;
* ``cge`` — the recipe's estimator: forward coordinate-wise estimates
  through the numpy black box (DeepZero, Chen et al., ICLR 2024);
* ``rge-q{q}`` — central randomized estimates with q Rademacher directions,
  μ = 1e-3, for each q of ``--rge-q`` (default 8 and 32);

and reports the mean absolute rollout error on held-out initial conditions
(steps 1..T, all cells) beside the uncorrected solver, with the forward passes
(loss evaluations = rollouts of a batch), solver calls and states advanced.
It also times the batched ZO rollout (q perturbed correctors advanced by one
solver call per time step) against one rollout per perturbation.

Goals: ``zo_fo_error_ratio`` = error(ZO) / error(FO) with ZO = the recipe's
estimator (CGE), and ``ordering_holds`` = 1 when error(no correction) >
error(ZO) > error(FO) (strictly), else 0. The same two numbers for each RGE
run are in ``details``. DeepZero reports no correction 0.153, ZO 0.119, FO 0.074 (mean
absolute error) on its own PDE problem.

Measured (full size: 64 training / 16 held-out initial conditions, batch 4,
50 epochs = 800 steps, Adam lr 0.01 cosine, seed 0; 2 shared CPU cores):
no correction 0.0544, FO 0.01216, CGE 0.01217 (ratio 1.0004), RGE q = 8
0.0216 (1.77), RGE q = 32 0.0287 (2.36). Forward CGE with μ = 1e-6 in float64
is the FO gradient to ~1e-6, so CGE and FO differ only by how rounding
differences grow over 800 steps (4e-4 relative here, either sign: the strict
ZO > FO half of ``ordering_holds`` is a coin flip for CGE). The stacked ZO
rollout runs about 6× more rollouts per second than one rollout per perturbation
(q = 16, batch 4).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict

import numpy as np
import torch

from edgezo.errors import ConfigError

RECIPE = "burgers-correction"
QUICK = {"data.train": 32, "train.epochs": 25}


def add_arguments(parser) -> None:
    parser.add_argument("--rge-q", type=int, nargs="+", default=[8, 32],
                        help="directions q of the central RGE runs (default: 8 32)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (all estimators)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a field of the burgers-correction recipe for every run")


def _recipe(args, estimator: str | None, q: int | None = None):
    from ..overrides import parse_set
    from ..recipes import apply_overrides, get_recipe, with_estimator

    recipe = get_recipe(RECIPE)
    if estimator is not None:
        recipe = with_estimator(recipe, estimator)
    overrides = dict(QUICK) if args.quick else {}
    overrides["train.seed"] = int(args.seed)
    if getattr(args, "epochs", None):
        overrides["train.epochs"] = int(args.epochs)
    extra = parse_set(getattr(args, "set", None) or [])
    fixed = [k for k in extra if k.split(".")[0] in ("estimator", "phases", "fo_optimizer", "task")]
    if fixed:
        raise ConfigError(f"--set cannot change {', '.join(fixed)}: the bench fixes the estimators it compares "
                         "(use --rge-q for the RGE runs, or edit the recipe)")
    overrides.update(extra)
    if estimator == "rge":
        overrides.update({"estimator.q": int(q), "estimator.mu": 1e-3,
                          "estimator.difference": "central", "estimator.direction": "rademacher"})
    return apply_overrides(recipe, overrides)


def _train(recipe) -> tuple[dict, object]:
    from ..recipes import build_trainer

    trainer = build_trainer(recipe, progress=False)
    metrics = trainer.run()
    return metrics, trainer


def _per_step_error(traj: torch.Tensor, reference: torch.Tensor) -> list[float]:
    return [float(v) for v in (traj - reference).abs().mean(dim=(0, 2))]


def _throughput(oracle, batch, q: int, reps: int, seed: int) -> dict:
    """Rollouts per second of the stacked and the per-perturbation ("loop") path, interleaved."""
    from ..oracle import SeedQueries

    times = {"stacked": [], "loop": []}
    for r in range(reps + 1):
        seeds = tuple(int(s) for s in np.random.default_rng([seed, r]).integers(0, 2**32, q))
        queries = SeedQueries(seeds, (1e-3,) * q)
        for path in times:
            oracle.path = path
            t0 = time.perf_counter()
            oracle.evaluate(queries, batch)
            if r:
                times[path].append(time.perf_counter() - t0)
    oracle.path = "stacked"
    out = {p: {"median_s_per_call": statistics.median(ts), "rollouts_per_s": q / statistics.median(ts)}
           for p, ts in times.items()}
    out["speedup"] = out["stacked"]["rollouts_per_s"] / out["loop"]["rollouts_per_s"]
    return out


def run(args) -> dict:
    """Train and compare (see the module docstring), on one torch thread.

    Every tensor here is tiny (at most q·B·channels·n ≈ 10^5 entries), so
    intra-op threads only add synchronisation; on a shared 2-core machine
    they made the runs 3-15× slower. The previous thread count is restored.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> dict:
    from ..adapters.solver.task import BurgersProblem, burgers_data, no_correction_errors

    rge_names = [f"rge-q{q}" for q in args.rge_q]
    jobs = [("fo", "fo", None), ("cge", None, None)] + [(n, "rge", q) for n, q in zip(rge_names, args.rge_q)]
    runs, trainers = {}, {}
    for name, estimator, q in jobs:
        recipe = _recipe(args, estimator, q)
        metrics, trainer = _train(recipe)
        trainers[name] = trainer
        runs[name] = {
            "estimator": repr(trainer.phases[0].estimator), "test_mae": metrics["test_mae"],
            "test_mae_final": metrics["test_mae_final"], "forward_passes": metrics["forward_passes"],
            "samples_forwarded": metrics["samples_forwarded"], "solver_calls": metrics["solver_calls"],
            "solver_states": metrics["solver_states"], "steps": metrics["steps"], "wall_s": metrics["wall_s"],
            "final_train_loss": metrics["final_train_loss"],
            "history": [{"step": h["step"], "forward_passes": h["forward_passes"], "test_mae": h["test_mae"]}
                        for h in metrics["history"]],
        }
    zo_recipe = _recipe(args, None)
    problem = BurgersProblem.from_recipe(zo_recipe)
    data = burgers_data(problem)
    baseline = no_correction_errors(problem, data)
    runs["none"] = {"test_mae": baseline["no_correction_test_mae"],
                    "test_mae_final": baseline["no_correction_test_mae_final"], "forward_passes": 0}

    per_step = {name: _per_step_error(trainers[name].oracle.predict(data.x_test).cpu(), data.y_test)
                for name in trainers}
    uncorrected = trainers["cge"].oracle.loop.rollout_uncorrected(data.x_test).cpu()
    per_step["none"] = _per_step_error(uncorrected, data.y_test)
    sample = {"x": ((np.arange(problem.n) + 0.5) * 2 * np.pi / problem.n).tolist(),
              "reference": data.y_test[0, -1].tolist(), "none": uncorrected[0, -1].tolist(),
              **{name: trainers[name].oracle.predict(data.x_test[:1])[0, -1].tolist() for name in trainers}}

    oracle = trainers["cge"].oracle
    bs = zo_recipe.config["train"]["batch_size"]
    speed = _throughput(oracle, (data.x_train[:bs], data.y_train[:bs]), 16, 2 if args.quick else 5, args.seed)

    none, fo = runs["none"]["test_mae"], runs["fo"]["test_mae"]

    def verdict(zo: float) -> dict:
        return {"zo_fo_error_ratio": zo / fo, "ordering_holds": int(none > zo > fo)}

    return {
        "goals": verdict(runs["cge"]["test_mae"]),
        "zo_estimator": "cge",
        "details": {"cge": {**verdict(runs["cge"]["test_mae"]),
                            "relative_difference_to_fo": runs["cge"]["test_mae"] / fo - 1.0},
                    **{n: verdict(runs[n]["test_mae"]) for n in rge_names},
                    "improvement_over_no_correction": {k: 1.0 - runs[k]["test_mae"] / none for k in trainers}},
        "recipe": RECIPE,
        "problem": {**asdict(problem), "params": oracle.dim, "batch_size": bs,
                    "epochs": zo_recipe.config["train"]["epochs"]},
        "literature_deepzero": {"none": 0.153, "zo": 0.119, "fo": 0.074},
        "runs": runs,
        "per_step_mae": per_step,
        "sample_final_state": sample,
        "throughput": {"q": 16, "batch": bs, **speed},
        "torch_threads": torch.get_num_threads(),
    }


def plot(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    runs = result["runs"]
    rge = sorted((n for n in runs if n.startswith("rge")), key=lambda n: int(n.split("q")[-1]))
    names = ["none", *rge, "cge", "fo"]
    trained = [*rge, "cge", "fo"]
    labels = {"none": "no correction", "cge": "ZO-CGE", "fo": "FO (torch twin)",
              **{n: f"ZO-RGE q={n.split('q')[-1]}" for n in rge}}
    colors = {"none": "0.5", "cge": "C0", "fo": "C2", **{n: f"C{1 + 2 * i}" for i, n in enumerate(rge)}}
    styles = {n: "--" if n == "fo" else "-" for n in names}  # FO dashed: CGE lies underneath it

    ax = axes[0, 0]
    bars = ax.bar([labels[n].replace(" ", "\n", 1) for n in names], [runs[n]["test_mae"] for n in names],
                  color=[colors[n] for n in names])
    for bar, n in zip(bars, names):
        ax.annotate(f"{runs[n]['test_mae']:.4f}\n{runs[n]['forward_passes']} fwd",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("held-out mean abs. rollout error")
    g = result["goals"]
    ax.set_title(f"ZO-CGE / FO = {g['zo_fo_error_ratio']:.4f}, ordering holds = {g['ordering_holds']}")
    ax.margins(y=0.2)

    ax = axes[0, 1]
    for n in trained:
        h = runs[n]["history"]
        ax.plot([r["step"] for r in h], [r["test_mae"] for r in h], color=colors[n], ls=styles[n], label=labels[n])
    ax.axhline(runs["none"]["test_mae"], color=colors["none"], ls=":", label=labels["none"])
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out MAE")
    ax.set_title("training curves (same data, epochs, optimizer)")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    for n in names:
        err = result["per_step_mae"][n]
        ax.plot(range(1, len(err)), err[1:], color=colors[n], ls=styles[n], label=labels[n], marker="o", ms=2)
    ax.set_xlabel("solver step t")
    ax.set_ylabel("MAE at step t")
    ax.set_title("error along the rollout (held-out initial conditions)")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    s = result["sample_final_state"]
    ax.plot(s["x"], s["reference"], "k-", lw=2, label="fine reference")
    for n in ("none", "cge", "fo"):
        ax.plot(s["x"], s[n], color=colors[n], ls=styles[n], lw=1, marker=".", ms=3, label=labels[n])
    ax.set_xlabel("x")
    ax.set_ylabel("u(x, T)")
    ax.set_title("one held-out initial condition at t = T")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
