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

(b) Training curves, relative L2 test error vs forward passes (loss
    evaluations) and vs wall-clock, for the same recipe trained three ways:
    ZO + sparse grid (the recipe), ZO + Monte Carlo (same recipe, Monte Carlo
    nodes redrawn every step, as many nodes per point as the grid: equal cost)
    and FO (``--estimator fo``: autograd derivatives and backpropagation, the
    recipe's ``[fo_optimizer]``). Same network, seed, collocation points and
    step count. The trivial baseline (network output 0, i.e. the hard
    constraint alone) is recorded too.

Goals: ``hjb20_rel_l2`` (ZO + sparse grid, target ≤ 2e-3), ``hjb20_fo_rel_l2``,
``hjb20_zero_net_rel_l2``, ``hjb20_zo_fo_ratio`` (target ≤ 3) and
``sparse_grid_eval_ratio`` (target ≥ 2).

Threads: ``--threads`` (default 1) sets torch's intra-op threads for the run.
On the shared 2-core development machine one thread ran an hjb20 ZO step in
0.19 s and two threads in 1.1 s (the many small chunked GEMMs and element-wise
ops stall on thread synchronisation when other processes hold the cores).

``--quick``: 20 points and Monte Carlo up to 4,096 pairs for (a); 60 training
steps for (b). Full size: 100 points, Monte Carlo up to 65,536 pairs (5 seeds);
the recipe's own step count for (b).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from ..adapters.pinn.pde import relative_l2
from ..adapters.pinn.stein import SteinDerivatives
from ..adapters.pinn.task import build_pinn_model, test_points
from ..recipes import Recipe, RecipeError, apply_overrides, build_trainer, get_recipe, recipes, with_estimator


# (a) derivative study and (b) training sizes; ``steps=None`` means the recipe's own step count
SIZES = {
    "quick": {"points": 20, "levels": (2, 3, 4), "mc_pairs": (16, 64, 256, 1024, 4096), "mc_seeds": 3, "steps": 60},
    "full": {"points": 100, "levels": (2, 3, 4), "mc_pairs": (16, 64, 256, 1024, 4096, 16384, 65536), "mc_seeds": 5,
             "steps": None},
}


def add_arguments(parser) -> None:
    parser.add_argument("--recipe", default="hjb20", help="PINN recipe to benchmark (default hjb20)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the recipe's; "
                                                                "60 with --quick)")
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


# ----------------------------------------------------------------------------- (b) training


def _variant(recipe: Recipe, kind: str, sg_evaluations: int) -> Recipe:
    if kind == "fo":
        return with_estimator(recipe, "fo")
    if kind == "zo_monte_carlo":
        pairs = max(1, (sg_evaluations - 1) // 2)  # 2·pairs + 1 evaluations per point = the grid's
        return apply_overrides(recipe, {"pinn.rule": "monte_carlo", "pinn.samples": pairs})
    return recipe


def train_curve(recipe: Recipe, *, steps: int, eval_every: int) -> dict:
    overrides = {"train.max_steps": steps, "train.eval_every": eval_every}
    spe = recipe.config.get("pinn", {}).get("steps_per_epoch", 100)
    if recipe.config.get("train", {}).get("epochs", 1) * spe < steps:
        overrides["train.epochs"] = -(-steps // spe)
    trainer = build_trainer(apply_overrides(recipe, overrides), progress=False)
    initial = trainer.evaluator(trainer.oracle)
    t0 = time.perf_counter()
    metrics = trainer.run()
    wall = time.perf_counter() - t0
    history = [{"step": 0, "forward_passes": 0, "test_rel_l2": initial["test_rel_l2"], "wall_s": 0.0}]
    for h in metrics["history"]:
        history.append({k: h[k] for k in ("step", "forward_passes", "test_rel_l2", "network_evaluations")})
    # wall time per step is uniform; spread it over the evaluations for the plot
    for h in history[1:]:
        h["wall_s"] = wall * h["step"] / max(1, metrics["steps"])
    return {"estimator": metrics["estimator"], "derivatives": metrics["derivatives"], "rule": metrics["rule"],
            "params": metrics["params"], "steps": metrics["steps"], "forward_passes": metrics["forward_passes"],
            "network_evaluations": metrics["network_evaluations"], "wall_s": round(wall, 2),
            "test_rel_l2": metrics["test_rel_l2"], "best_test_rel_l2": min(h["test_rel_l2"] for h in history),
            "final_train_loss": metrics["final_train_loss"], "history": history}


def zero_net_error(recipe: Recipe) -> float:
    model, opts = build_pinn_model(recipe)
    x = test_points(model.pde, opts["test_points"], opts["test_seed"])
    return relative_l2(model.pde.constrain(x, torch.zeros(x.shape[0], dtype=x.dtype)), model.pde.exact(x))


def run(args) -> dict:
    threads = int(getattr(args, "threads", None) or 1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = _run(args)
    finally:
        torch.set_num_threads(before)
    result["cpu_budget"]["threads"] = threads
    return result


def _run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    seed = int(getattr(args, "seed", 0))
    recipe = get_recipe(getattr(args, "recipe", None) or "hjb20")
    if recipe.config.get("task") != "pinn":
        pinn = ", ".join(r for r in recipes() if get_recipe(r).config.get("task") == "pinn")
        raise RecipeError(f"bench pinn needs a PINN recipe (task = \"pinn\"); {recipe.name} has task "
                          f"{recipe.config.get('task')!r}. PINN recipes: {pinn}")
    recipe = apply_overrides(recipe, {"train.seed": seed})
    cfg = recipe.config
    default_steps = cfg.get("train", {}).get("max_steps") or (
        cfg.get("train", {}).get("epochs", 1) * cfg.get("pinn", {}).get("steps_per_epoch", 100))
    size = SIZES["quick" if quick else "full"]
    steps = getattr(args, "steps", None) or size["steps"] or default_steps
    eval_every = getattr(args, "eval_every", None) or max(1, steps // 20)

    t0 = time.perf_counter()
    deriv = derivative_errors(recipe, points=size["points"], levels=size["levels"], mc_pairs=size["mc_pairs"],
                              mc_seeds=size["mc_seeds"], seed=seed)
    deriv["wall_s"] = round(time.perf_counter() - t0, 2)
    level3 = next(r for r in deriv["sparse_grid"] if r["level"] == 3)
    ratios = {key: equal_error_ratio(level3[key], level3["evaluations"], deriv["monte_carlo"], key)
              for key in ("grad_err", "lap_err")}
    deriv["equal_error"] = ratios

    model, opts = build_pinn_model(recipe)
    sg_evals = SteinDerivatives("sparse_grid", dim=model.pde.dim, level=int(opts["level"])).evaluations_per_point
    runs = {}
    for kind in ("zo_sparse_grid", "zo_monte_carlo", "fo"):
        runs[kind] = train_curve(_variant(recipe, kind, sg_evals), steps=steps, eval_every=eval_every)
    zero = zero_net_error(recipe)
    zo, fo = runs["zo_sparse_grid"]["test_rel_l2"], runs["fo"]["test_rel_l2"]
    prefix = recipe.name.replace("-", "_")
    return {
        "goals": {
            f"{prefix}_rel_l2": zo,
            f"{prefix}_fo_rel_l2": fo,
            f"{prefix}_zero_net_rel_l2": zero,
            f"{prefix}_zo_fo_ratio": zo / fo,
            "sparse_grid_eval_ratio": min(r["ratio"] for r in ratios.values()),
        },
        "recipe": {"name": recipe.name, "config": copy.deepcopy(cfg)},
        "steps": steps,
        "cpu_budget": {"zo_sparse_grid_wall_s": runs["zo_sparse_grid"]["wall_s"],
                       "threads": torch.get_num_threads()},
        "derivatives": deriv,
        "training": runs,
        "zero_net_rel_l2": zero,
    }


def plot(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    d = result["derivatives"]
    ax = axes[0]
    for key, color, label in (("grad_err", "C0", "gradient"), ("lap_err", "C3", "Laplacian")):
        mc = d["monte_carlo"]
        ax.plot([r["evaluations"] for r in mc], [r[key] for r in mc], "o--", color=color, ms=4,
                label=f"Monte Carlo, {label}")
        sg = d["sparse_grid"]
        ax.plot([r["evaluations"] for r in sg], [r[key] for r in sg], "s-", color=color, ms=6,
                label=f"sparse grid (levels {', '.join(str(r['level']) for r in sg)}), {label}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forward evaluations per point")
    ax.set_ylabel("relative error vs autograd")
    bound = "≥ " if any(r["lower_bound"] for r in d["equal_error"].values()) else ""
    ratio = result["goals"]["sparse_grid_eval_ratio"]
    ax.set_title(f"Stein derivatives, {d['points']} points (MC/SG evaluations {bound}{ratio:.3g})")
    ax.legend(fontsize=7)
    goals = result["goals"]
    zero = result["zero_net_rel_l2"]
    for ax, xkey, xlabel in ((axes[1], "forward_passes", "forward passes (loss evaluations)"),
                             (axes[2], "wall_s", "wall-clock seconds")):
        for name, run in result["training"].items():
            h = [r for r in run["history"] if r[xkey] > 0 or xkey != "wall_s"]  # log axis: the start sits at x = 1
            xs = [max(r[xkey], 1) if xkey == "forward_passes" else r[xkey] for r in h]
            ax.plot(xs, [r["test_rel_l2"] for r in h], marker="o", ms=3,
                    label=f"{name.replace('_', ' ')} ({run['test_rel_l2']:.2e})")
        ax.axhline(zero, color="gray", ls=":", lw=1, label=f"network ≡ 0 ({zero:.2e})")
        ax.axhline(2e-3, color="k", ls="--", lw=1, label="target 2e-3")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test relative L2")
        ax.legend(fontsize=7)
    zo_fo = goals[next(k for k in goals if k.endswith("zo_fo_ratio"))]
    axes[1].set_title(f"{result['recipe']['name']}, {result['steps']} steps (ZO/FO = {zo_fo:.2f})")
    axes[2].set_title(f"same runs vs wall-clock ({result['cpu_budget']['threads']} thread)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
