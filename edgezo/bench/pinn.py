"""``edgezo bench pinn``: sparse-grid Stein PINNs on the 20-dimensional HJB benchmark.

(a) Derivative error vs forward evaluations. A fixed network (the recipe's
    architecture at a seeded default ``nn.Linear`` initialisation — the
    recipe's zero output layer would have zero derivatives) at fixed uniform
    random points:
    gradient (all inputs) and Laplacian (the PDE's space dimensions) of the
    network from the Stein estimators, against autograd. Sparse grids of levels
    2–4 vs antithetic Monte Carlo of growing size (median over seeds).
    ``sparse_grid_eval_ratio``: for the level-3 grid (the recipe's), the Monte
    Carlo evaluations per point needed to reach the same error, divided by the
    grid's — interpolated log-log on the measured Monte Carlo curve; where Monte
    Carlo does not reach the grid's error at its largest measured size, the ratio
    reported is the lower bound (largest size / grid size) and the c/√n
    extrapolation is recorded beside it. The goal value is the smaller of the
    gradient and Laplacian ratios.

(b) HJB-20 (``--recipe``, default ``hjb20``: the whole tensor-train network
    trained by ZO), four runs of the same step count, seed and collocation
    points: ZO + sparse grid (the recipe), ZO + antithetic Monte Carlo (nodes
    redrawn every step, as many evaluations per point as the grid: equal
    forward passes), FO (``--estimator fo``: autograd derivatives and
    backpropagation on the same network, the recipe's ``[fo_optimizer]``) and
    the random-feature baseline ``<recipe>-rf`` (output layer only).

(c) The second PDE (``--pde2``, default ``poisson10``, docs/pinn.md): ZO, FO and
    its ``-rf`` baseline.

(d) FO vs ZO at equal steps and at equal training wall time; throughput
    (network rows per second inside the forward, share of a step outside
    it); the measured share of parameters that changed (pinn_runs.py).

Goals: ``hjb20_full_rel_l2`` (≤ 1e-3), ``hjb20_full_trained_fraction``
(≥ 0.95), ``pde2_zo_fo_ratio`` (≤ 5), ``pde2_rf_fo_ratio`` (≥ 5),
``train_mc_sg_ratio`` (≥ 1.5), ``sparse_grid_eval_ratio`` (≥ 2), and the
earlier ``hjb20_rel_l2``, ``hjb20_fo_rel_l2``, ``hjb20_zero_net_rel_l2``,
``hjb20_zo_fo_ratio`` (now of the full-network run).

Threads: ``--threads`` (default 1) sets torch's intra-op threads for the run.
On the shared 2-core development machine one thread ran an hjb20 ZO step in
0.19 s and two threads in 1.1 s (the many small chunked GEMMs and element-wise
ops stall on thread synchronisation when other processes hold the cores).

``--quick``: 20 points and Monte Carlo up to 4,096 pairs for (a); 12 training
steps of 25 collocation points (2,000 test points) per run. Full size: 100
points, Monte Carlo up to 16,384 pairs (5 seeds; 65,536 pairs took ten
minutes of the bench on the shared machine and Monte Carlo still did not reach
the grid's error); each recipe's own step count.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..adapters.pinn.pde import relative_l2
from ..adapters.pinn.stein import SteinDerivatives
from ..adapters.pinn.task import build_pinn_model, test_points
from ..recipes import Recipe, RecipeError, apply_overrides, get_recipe, recipes, with_estimator
from .pinn_runs import equal_wall, set_threads, train_curve, variant

# (a) derivative study and (b) training sizes; ``steps=None`` means the recipe's own step count
SIZES = {
    "quick": {"points": 20, "levels": (2, 3, 4), "mc_pairs": (16, 64, 256, 1024, 4096), "mc_seeds": 3, "steps": 12,
              "overrides": {"train.batch_size": 25, "pinn.test_points": 2000}},
    "full": {"points": 100, "levels": (2, 3, 4), "mc_pairs": (16, 64, 256, 1024, 4096, 16384), "mc_seeds": 5,
             "steps": None, "overrides": {}},
}


def add_arguments(parser) -> None:
    parser.add_argument("--recipe", default="hjb20", help="PINN recipe to benchmark (default hjb20)")
    parser.add_argument("--pde2", default="poisson10", help="second PDE's recipe (default poisson10; 'none' skips it)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the recipe's; "
                                                                "fewer with --quick)")
    parser.add_argument("--pde2-steps", type=int, default=None, help="training steps per second-PDE run")
    parser.add_argument("--eval-every", type=int, default=None, help="test evaluations every N steps")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads during the benchmark (default 1, see the module docstring)")


# ----------------------------------------------------------------------------- (a) derivatives


def _autograd_reference(net, x, lap_dims):
    x = x.clone().requires_grad_(True)
    f = net(x)[:, 0]
    (g,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    lap = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in lap_dims:
        lap = lap + torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0][:, i]
    return g.detach(), lap.detach()


def _rel(a, b) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def derivative_errors(recipe: Recipe, *, points: int, levels, mc_pairs, mc_seeds: int, seed: int) -> dict:
    """Relative gradient / Laplacian errors of the Stein estimators vs autograd (see the module docstring)."""
    torch.manual_seed(seed)
    if recipe.config.get("model", {}).get("kind") == "pinn-mlp":
        # a non-trivial network: default nn.Linear initialisation (a zero output layer has zero derivatives)
        recipe = apply_overrides(recipe, {"model.output_init": "default", "model.first_scale": 1.0})
    model, opts = build_pinn_model(recipe)
    net, pde = model.net, model.pde
    x = pde.sample(points, torch.Generator().manual_seed(seed + 1))
    lap_dims = pde.second_dims
    g_ref, lap_ref = _autograd_reference(net, x, lap_dims)
    f = lambda v: net(v)[:, 0]  # noqa: E731
    sigma = float(opts["sigma"])

    def errs(est):
        with torch.no_grad():
            r = est(f, x)
        return _rel(r.grad, g_ref), _rel(r.laplacian(lap_dims), lap_ref)

    sparse = []
    for level in levels:
        est = SteinDerivatives("sparse_grid", dim=pde.dim, sigma=sigma, level=level, max_batch=2**18)
        eg, el = errs(est)
        sparse.append({"level": level, "evaluations": est.evaluations_per_point, "grad_err": eg, "lap_err": el})
    mc = []
    for pairs in mc_pairs:
        e = np.array([errs(SteinDerivatives("monte_carlo", dim=pde.dim, sigma=sigma, samples=pairs, seed=s,
                                            max_batch=2**18)) for s in range(mc_seeds)])
        med = np.median(e, axis=0)
        mc.append({"pairs": pairs, "evaluations": 2 * pairs + 1, "grad_err": float(med[0]), "lap_err": float(med[1]),
                   "grad_err_seeds": e[:, 0].tolist(), "lap_err_seeds": e[:, 1].tolist()})
    return {"points": points, "sigma": sigma, "network": repr(net), "sparse_grid": sparse, "monte_carlo": mc}


def equal_error_ratio(target_err: float, target_evals: int, mc: list[dict], key: str) -> dict:
    """Monte Carlo evaluations per point to reach ``target_err`` (log-log interpolation), / ``target_evals``."""
    n = np.array([r["evaluations"] for r in mc], dtype=float)
    e = np.array([r[key] for r in mc], dtype=float)
    out: dict = {"target_err": target_err, "sparse_grid_evaluations": target_evals}
    reached = np.flatnonzero(e <= target_err)
    # c/√n fit on the largest three sizes (the regime where sampling noise dominates)
    tail = slice(max(0, len(n) - 3), len(n))
    c = float(np.exp(np.mean(np.log(e[tail]) + 0.5 * np.log(n[tail]))))
    out["extrapolated_mc_evaluations"] = (c / target_err) ** 2
    out["extrapolated_ratio"] = out["extrapolated_mc_evaluations"] / target_evals
    if len(reached):
        i = int(reached[0])
        if i == 0:
            needed = n[0]
        else:
            t = (math.log(target_err) - math.log(e[i - 1])) / (math.log(e[i]) - math.log(e[i - 1]))
            needed = math.exp(math.log(n[i - 1]) + t * (math.log(n[i]) - math.log(n[i - 1])))
        out.update(mc_evaluations=needed, ratio=needed / target_evals, lower_bound=False)
    else:
        out.update(mc_evaluations=float(n[-1]), ratio=float(n[-1]) / target_evals, lower_bound=True)
    return out


# ----------------------------------------------------------------------------- (b)-(e) training


def zero_net_error(recipe: Recipe) -> float:
    model, opts = build_pinn_model(recipe)
    x = test_points(model.pde, opts["test_points"], opts["test_seed"])
    return relative_l2(model.pde.constrain(x, torch.zeros(x.shape[0], dtype=x.dtype)), model.pde.exact(x))


def _grid_size(recipe: Recipe) -> int:
    model, opts = build_pinn_model(recipe)
    return SteinDerivatives("sparse_grid", dim=model.pde.dim, level=int(opts["level"])).evaluations_per_point


def _baseline(recipe: Recipe) -> Recipe | None:
    """The random-feature baseline: recipe ``<name>-rf`` (registered, or a ``-rf.toml`` file beside a recipe file)."""
    if f"{recipe.name}-rf" in recipes():
        return get_recipe(f"{recipe.name}-rf")
    source = Path(recipe.source)
    sibling = source.with_name(f"{source.stem}-rf.toml")
    return get_recipe(str(sibling)) if source.suffix == ".toml" and sibling.exists() else None


def rf_autograd(rf: Recipe) -> Recipe:
    """The random-feature baseline fitted with exact (autograd) derivatives: first-order on the groups
    the ``-rf`` recipe's estimator trains (its output layer), the hidden layers left at their random
    initialisation, with the ``-rf`` recipe's optimizer. No Stein smoothing, so the only handicap left
    is the frozen features: this is the baseline that says whether a PDE needs its hidden layers."""
    cfg = rf.config
    spec = cfg.get("estimator", {})
    groups = [g for part in spec.get("parts", [spec]) for g in part.get("groups", [])]
    if not groups:
        raise RecipeError(f"{rf.name}: the random-feature baseline's estimator names no parameter groups")
    fo = with_estimator(rf, "fo")
    return apply_overrides(fo, {"estimator.groups": groups, "optimizer": copy.deepcopy(cfg["optimizer"])})


def _save_partial(args, runs: dict, where: str) -> None:
    """Write the runs finished so far to ``<out>/pinn.partial.json`` (atomic), so a run cut short still reports."""
    out = getattr(args, "out", None)
    if not out:
        return
    path = Path(out) / "pinn.partial.json"
    partial = json.loads(path.read_text()) if path.exists() else {}
    partial[where] = runs
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(partial, indent=1, default=float))
    os.replace(tmp, path)


def _train_all(recipe: Recipe, kinds, *, steps: int, eval_every: int, overrides: dict, args=None,
               where: str = "main") -> dict:
    sg = _grid_size(recipe)
    runs: dict = {}
    for kind in kinds:
        _save_partial(args, runs, where)
        if kind in ("rf", "rf_fo"):
            base = _baseline(recipe)
            if base is None:
                continue
            base = apply_overrides(base, {"train.seed": recipe.config["train"].get("seed", 0)})
            runs[kind] = train_curve(base if kind == "rf" else rf_autograd(base), steps=steps,
                                     eval_every=eval_every, overrides=overrides)
        else:
            runs[kind] = train_curve(variant(recipe, kind, sg), steps=steps, eval_every=eval_every,
                                     overrides=overrides)
    _save_partial(args, runs, where)
    return runs


def _steps(recipe: Recipe, given: int | None) -> int:
    cfg = recipe.config
    return int(given or cfg.get("train", {}).get("max_steps")
               or cfg.get("train", {}).get("epochs", 1) * cfg.get("pinn", {}).get("steps_per_epoch", 100))


def _pinn_recipe(name: str) -> Recipe:
    recipe = get_recipe(name)
    if recipe.config.get("task") != "pinn":
        pinn = ", ".join(r for r in recipes() if get_recipe(r).config.get("task") == "pinn")
        raise RecipeError(f"bench pinn needs a PINN recipe (task = \"pinn\"); {recipe.name} has task "
                          f"{recipe.config.get('task')!r}. PINN recipes: {pinn}")
    return recipe


def _run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    seed = int(getattr(args, "seed", 0))
    size = SIZES["quick" if quick else "full"]
    main = apply_overrides(_pinn_recipe(getattr(args, "recipe", None) or "hjb20"), {"train.seed": seed})
    pde2_name = getattr(args, "pde2", None) or "poisson10"
    pde2 = None if pde2_name == "none" else apply_overrides(_pinn_recipe(pde2_name), {"train.seed": seed})
    overrides = size["overrides"]

    t0 = time.perf_counter()
    deriv = derivative_errors(main, points=size["points"], levels=size["levels"], mc_pairs=size["mc_pairs"],
                              mc_seeds=size["mc_seeds"], seed=seed)
    deriv["wall_s"] = round(time.perf_counter() - t0, 2)
    level3 = next(r for r in deriv["sparse_grid"] if r["level"] == 3)
    deriv["equal_error"] = {key: equal_error_ratio(level3[key], level3["evaluations"], deriv["monte_carlo"], key)
                            for key in ("grad_err", "lap_err")}

    steps = getattr(args, "steps", None) or size["steps"] or _steps(main, None)
    eval_every = getattr(args, "eval_every", None) or max(1, steps // 20)
    runs = _train_all(main, ("zo_sparse_grid", "zo_monte_carlo", "fo", "rf"), steps=steps, eval_every=eval_every,
                      overrides=overrides, args=args, where="main")
    result = {"recipe": {"name": main.name, "config": copy.deepcopy(main.config)}, "steps": steps,
              "derivatives": deriv, "training": runs, "zero_net_rel_l2": zero_net_error(main),
              "comparison": {"zo_vs_fo": equal_wall(runs["zo_sparse_grid"], runs["fo"])}}
    if pde2 is not None:
        steps2 = getattr(args, "pde2_steps", None) or size["steps"] or _steps(pde2, None)
        runs2 = _train_all(pde2, ("zo_sparse_grid", "fo", "rf", "rf_fo"), steps=steps2,
                           eval_every=getattr(args, "eval_every", None) or max(1, steps2 // 20), overrides=overrides,
                           args=args, where="pde2")
        result["pde2"] = {"recipe": {"name": pde2.name, "config": copy.deepcopy(pde2.config)}, "steps": steps2,
                          "training": runs2, "zero_net_rel_l2": zero_net_error(pde2),
                          "comparison": {"zo_vs_fo": equal_wall(runs2["zo_sparse_grid"], runs2["fo"])}}
    result["goals"] = _goals(result, main.name)
    result["throughput"] = {f"{where}:{kind}": run["throughput"]
                            for where, group in (("main", runs), ("pde2", result.get("pde2", {}).get("training", {})))
                            for kind, run in group.items()}
    return result


def _goals(result: dict, name: str) -> dict:
    runs = result["training"]
    prefix = name.replace("-", "_")
    zo, fo = runs["zo_sparse_grid"]["test_rel_l2"], runs["fo"]["test_rel_l2"]
    ratios = result["derivatives"]["equal_error"]
    goals = {
        f"{prefix}_full_rel_l2": zo,
        f"{prefix}_full_trained_fraction": runs["zo_sparse_grid"]["trained_fraction"],
        f"{prefix}_rel_l2": zo,
        f"{prefix}_fo_rel_l2": fo,
        f"{prefix}_zero_net_rel_l2": result["zero_net_rel_l2"],
        f"{prefix}_zo_fo_ratio": zo / fo,
        "train_mc_sg_ratio": runs["zo_monte_carlo"]["test_rel_l2"] / zo,
        "sparse_grid_eval_ratio": min(r["ratio"] for r in ratios.values()),
    }
    if "rf" in runs:
        goals[f"{prefix}_rf_rel_l2"] = runs["rf"]["test_rel_l2"]
    if "pde2" in result:
        r2 = result["pde2"]["training"]
        goals["pde2_zo_fo_ratio"] = r2["zo_sparse_grid"]["test_rel_l2"] / r2["fo"]["test_rel_l2"]
        baselines = [r2[k]["test_rel_l2"] for k in ("rf", "rf_fo") if k in r2]
        if baselines:  # the stronger of the two random-feature fits (Stein/ZO and autograd)
            goals["pde2_rf_fo_ratio"] = min(baselines) / r2["fo"]["test_rel_l2"]
        goals["pde2_trained_fraction"] = r2["zo_sparse_grid"]["trained_fraction"]
    return goals


def run(args) -> dict:
    before = set_threads(int(getattr(args, "threads", None) or 1))
    try:
        result = _run(args)
    finally:
        torch.set_num_threads(before)
    result["cpu_budget"] = {"threads": int(getattr(args, "threads", None) or 1),
                            "training_wall_s": {f"{w}:{k}": r["wall_s"] for w, g in
                                                (("main", result["training"]),
                                                 ("pde2", result.get("pde2", {}).get("training", {})))
                                                for k, r in g.items()}}
    return result


def plot(result: dict, path) -> None:
    """pinn.png: derivative errors, and relative L2 vs forward passes / wall time for every training run."""
    from .pinn_plot import plot_result

    plot_result(result, path)
