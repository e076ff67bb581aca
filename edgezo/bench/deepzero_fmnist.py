"""``edgezo bench deepzero --mnist DIR``: FO vs ZO-CGE vs ZO-RGE on Fashion-MNIST (DeepZero's CNNs).

Models: DeepZero's CNN family with one input channel (docs/deepzero-fmnist.md),
the recipes ``fmnist-cnn-730`` (depth 1, width 33: 736 parameters) and
``fmnist-cnn-3700`` (depth 2, width 19: 3,734 parameters).

Every configuration trains on the same reduced problem (:data:`SETTINGS`): the
first ``train_subset`` images of a fixed permutation of the 60,000 training
images (``subset_seed`` 0), inputs average-pooled 2×2 (28×28 → 14×14), the
recipe's SGD + momentum + cosine schedule, batch 64, the same epochs; test
accuracy on the full 10,000-image test set.

* ``fo`` — autograd (torch) gradients;
* ``cge`` — the recipe itself: sparse CGE (ZO-GraSP layer ratios at
  ``SPARSITY``, mask reshuffled every 5 epochs), forward difference, μ = 5e-3,
  evaluated by :class:`~edgezo.oracles.staged.StagedOracle` (feature reuse,
  batched coordinates);
* ``rge`` — Gaussian RGE, forward difference, μ = 5e-3, with q equal to CGE's
  coordinates per step in the same seed, so both cost the same q + 1 forward
  passes per step (RGE's are full forwards: reuse needs one moved stage).

Each cell: ``seeds`` runs, mean and a 95 % Student-t interval
(``scipy.stats.t.interval``). Learning rates: chosen per model size and method
by a sweep (:data:`LR_GRID`, seed 0, the table's full schedule) on held-out
training images (the 5,000 images after the subset in the permutation), never
on the test set; a choice on the grid's edge is logged and recorded. (A
one-epoch sweep on the smaller model alone picked rates too high for three
epochs and for the larger model: docs/deepzero-fmnist.md.)

``jobs`` runs go at a time, each in its own spawned process
(:mod:`edgezo.bench.processes`); seconds per step are then measured with the
other workers busy, alike for every configuration.

Dense vs sparse CGE (:func:`sparsity_sweep`): the larger model at DeepZero's
gradient sparsities (0, 80, 90, 95, 99 %), test accuracy and measured seconds
per training step.
"""

from __future__ import annotations

import statistics

import numpy as np
from scipy import stats

from .processes import run_in_processes

RECIPES = {"cnn-736": "fmnist-cnn-730", "cnn-3734": "fmnist-cnn-3700"}
METHODS = ("fo", "cge", "rge")
SETTINGS = {
    "quick": {"train_subset": 256, "epochs": 1, "pool": 2, "val": 1000, "seeds": 2,
              "lrs": {"fo": [0.1], "cge": [0.1], "rge": [0.02]}, "sparsities": [0.0, 0.99]},
    "full": {"train_subset": 3000, "epochs": 3, "pool": 2, "val": 5000, "seeds": 3,
             "lrs": {"fo": [0.05, 0.1, 0.2, 0.4, 0.8], "cge": [0.2, 0.4, 0.8, 1.6], "rge": [0.03, 0.1, 0.3]},
             "sparsities": [0.0, 0.8, 0.9, 0.95, 0.99]},
}
LR_GRID = SETTINGS["full"]["lrs"]
SPARSITY = 0.8
MU = 5e-3


def fmnist_recipe(size: str, method: str, *, data_dir: str, lr: float, seed: int, settings: dict,
                  q: int | None = None, sparsity: float = SPARSITY):
    """The recipe of one cell: ``RECIPES[size]`` on the reduced problem, with ``method``'s estimator."""
    from ..recipes import apply_overrides, get_recipe, with_estimator

    base = get_recipe(RECIPES[size])
    recipe = with_estimator(base, "fo") if method == "fo" else base
    pool = int(settings["pool"])
    overrides = {"data.path": data_dir, "data.train_subset": settings["train_subset"], "data.pool": pool,
                 "model.image_size": base.config["model"]["image_size"] // pool,
                 "train.epochs": settings["epochs"], "train.seed": seed, "optimizer.lr": lr,
                 "train.eval_every": 0}
    if "batch_size" in settings:
        overrides["train.batch_size"] = settings["batch_size"]
    if method == "cge":
        overrides["estimator.sparsity"] = sparsity
        if "grasp_q" in settings:
            overrides.update({"estimator.grasp_q": settings["grasp_q"], "deepzero.grasp_samples": settings["grasp_q"]})
    recipe = apply_overrides(recipe, overrides)
    if method == "rge":
        if q is None:
            raise ValueError("rge needs q (CGE's coordinates per step)")
        recipe = apply_overrides(recipe, {"estimator": {"kind": "rge", "q": int(q), "mu": MU,
                                                        "difference": "forward", "direction": "gaussian"}})
    return recipe


def train_cell(recipe, *, validation=None) -> dict:
    """Train one recipe; test metrics, cost, and validation accuracy when ``validation`` = (x, y)."""
    from ..recipes import build_trainer
    from ..trainer import classification_evaluator

    trainer = build_trainer(recipe, progress=False)
    m = trainer.run()
    out = {"test_accuracy": m["test_accuracy"], "forward_passes": m["forward_passes"], "steps": m["steps"],
           "wall_s": m["wall_s"], "step_s": m["wall_s"] / max(1, m["steps"]), "params": m["params"],
           "final_train_loss": m["final_train_loss"]}
    if "deepzero" in m:
        out["active_per_step"] = m["deepzero"]["active_per_step"]
    if validation is not None:
        out["val_accuracy"] = classification_evaluator(*validation)(trainer.oracle)["test_accuracy"]
    return out


def validation_set(data_dir: str, settings: dict):
    """The ``val`` training images right after the subset in its permutation (pooled alike)."""
    from ..data import load_dataset, subset_order

    full = load_dataset("fashion-mnist", data_dir, flatten=False, pool=settings["pool"])
    order = subset_order(full.x_train.shape[0], 0)
    idx = order[settings["train_subset"]: settings["train_subset"] + settings["val"]]
    return full.x_train[idx], full.y_train[idx]


def t_interval(values: list[float]) -> dict:
    """Mean and 95 % Student-t interval of ``values`` (``scipy.stats.t.interval``)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": len(values)}
    sem = stats.sem(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    return {"mean": mean, "low": float(low), "high": float(high), "n": len(values),
            "std": statistics.stdev(values)}


def cge_count(size: str, data_dir: str, settings: dict, seed: int) -> int:
    """CGE's coordinates per step for ``size`` and ``seed`` (builds the trainer: ZO-GraSP ratios)."""
    from ..recipes import apply_overrides, build_trainer

    recipe = fmnist_recipe(size, "cge", data_dir=data_dir, lr=0.05, seed=seed, settings=settings)
    trainer = build_trainer(apply_overrides(recipe, {"train.max_steps": 1}), progress=False)
    return int(trainer.info["deepzero"]["active_per_step"])


def run_cell(payload: dict) -> dict:
    """One training run of the study (module level: spawned workers run it by name)."""
    recipe = fmnist_recipe(payload["size"], payload["method"], data_dir=payload["data_dir"], lr=payload["lr"],
                           seed=payload["seed"], settings=payload["settings"], q=payload.get("q"),
                           sparsity=payload.get("sparsity", SPARSITY))
    validation = validation_set(payload["data_dir"], payload["settings"]) if payload.get("validate") else None
    return train_cell(recipe, validation=validation)


def _run_cells(payloads: list[dict], jobs: int, log) -> list[dict]:
    """``run_cell`` over ``payloads`` (``jobs`` processes at a time), the costliest first so that the
    workers finish together: RGE's queries are full forwards, and the larger model costs more."""
    order = sorted(range(len(payloads)), key=lambda k: (payloads[k]["method"] == "rge",
                                                        payloads[k]["size"] == "cnn-3734"), reverse=True)

    def report(p: dict, cell: dict) -> None:
        extra = f", val {cell['val_accuracy']:.4f}" if "val_accuracy" in cell else ""
        tag = f" sparsity {p['sparsity']}" if "sparsity" in p else ""
        log(f"{p['size']} {p['method']}{tag} lr={p['lr']:g} seed {p['seed']}: test {cell['test_accuracy']:.4f}"
            f"{extra} ({cell['forward_passes']} passes, {cell['wall_s']:.0f} s)")

    done = run_in_processes(run_cell, [payloads[k] for k in order], jobs, report)
    cells: list[dict] = [{}] * len(payloads)
    for k, cell in zip(order, done):
        cells[k] = cell
    return cells


def lr_sweep(data_dir: str, settings: dict, *, jobs: int = 1, threads: int | None = None, log=print) -> dict:
    """Per model size and method, validation accuracy of each learning rate (seed 0, the table's
    schedule unless ``sweep_epochs`` says otherwise); the best lr and whether it lies on the grid's edge.

    With one learning rate per method (``--quick``) there is nothing to choose and nothing is run."""
    if all(len(settings["lrs"][m]) == 1 for m in METHODS):
        return {size: {m: {"best_lr": settings["lrs"][m][0], "runs": [], "at_grid_edge": False} for m in METHODS}
                for size in RECIPES}
    sweep_settings = {**settings, "epochs": settings.get("sweep_epochs", settings["epochs"])}
    payloads = []
    for size in RECIPES:
        q = cge_count(size, data_dir, settings, 0)
        payloads += [{"size": size, "method": method, "lr": lr, "seed": 0, "q": q, "validate": True,
                      "data_dir": data_dir, "settings": sweep_settings, "threads": threads}
                     for method in METHODS for lr in settings["lrs"][method]]
    cells = _run_cells(payloads, jobs, log)
    out: dict = {size: {} for size in RECIPES}
    for size in RECIPES:
        for method in METHODS:
            grid = settings["lrs"][method]
            rows = [{"lr": p["lr"], "val_accuracy": c["val_accuracy"], "test_accuracy": c["test_accuracy"]}
                    for p, c in zip(payloads, cells) if p["size"] == size and p["method"] == method]
            best = max(rows, key=lambda r: r["val_accuracy"])
            edge = len(grid) > 1 and best["lr"] in (min(grid), max(grid))
            if edge:
                log(f"warning: {size} {method} chose lr {best['lr']:g}, an end of its grid {grid}")
            out[size][method] = {"best_lr": best["lr"], "runs": rows, "at_grid_edge": edge}
    return out


def study_payloads(data_dir: str, settings: dict, lrs: dict, seeds: list[int], threads: int | None) -> list[dict]:
    """The accuracy table's runs (every size, method and seed; RGE's q = CGE's coordinates per step in
    the same size and seed) and the sparsity sweep's extra runs (larger model, first seed)."""
    common = {"data_dir": data_dir, "settings": settings, "threads": threads}
    payloads = []
    for size in RECIPES:
        for seed in seeds:
            q = cge_count(size, data_dir, settings, seed)
            payloads += [{**common, "size": size, "method": m, "lr": lrs[size][m], "seed": seed,
                          "q": q if m == "rge" else None, "cge_q": q} for m in METHODS]
    payloads += [{**common, "size": "cnn-3734", "method": "cge", "lr": lrs["cnn-3734"]["cge"], "seed": seeds[0],
                  "sparsity": sparsity} for sparsity in settings["sparsities"] if sparsity != SPARSITY]
    return payloads


def accuracy_rows(payloads: list[dict], cells: list[dict], log=print) -> list[dict]:
    """FO / CGE / RGE test accuracy per size: runs, mean and 95 % interval per cell."""
    rows = []
    for size in RECIPES:
        runs = {m: [] for m in METHODS}
        lrs = {}
        for p, c in zip(payloads, cells):
            if p["size"] == size and "sparsity" not in p:
                if p["method"] == "cge" and c["active_per_step"] != p["cge_q"]:
                    raise RuntimeError(f"{size} seed {p['seed']}: CGE moved {c['active_per_step']} coordinates "
                                       f"per step, but RGE was given q = {p['cge_q']}")
                runs[p["method"]].append({**c, "seed": p["seed"]})
                lrs[p["method"]] = p["lr"]
        row = {"model": size, "recipe": RECIPES[size], "params": runs["fo"][0]["params"]}
        for method, cells_m in runs.items():
            row[method] = {"lr": lrs[method], **t_interval([100 * r["test_accuracy"] for r in cells_m]),
                           "forward_passes_per_step": statistics.fmean(
                               r["active_per_step"] + 1 if method == "cge" else r["forward_passes"] / max(1, r["steps"])
                               for r in cells_m),
                           "runs": cells_m}
        log(f"{size}: " + "; ".join(f"{m} {row[m]['mean']:.2f} [{row[m]['low']:.2f}, {row[m]['high']:.2f}]"
                                    for m in METHODS))
        rows.append(row)
    return rows


def sparsity_rows(payloads: list[dict], cells: list[dict], settings: dict, seed: int) -> list[dict]:
    """Dense (0) vs sparse CGE on the larger model: test accuracy and seconds per training step (the
    accuracy table's run of the same model and seed stands for :data:`SPARSITY`)."""
    by_sparsity = {p["sparsity"]: c for p, c in zip(payloads, cells) if "sparsity" in p}
    by_sparsity[SPARSITY] = next(c for p, c in zip(payloads, cells) if p["size"] == "cnn-3734"
                                 and p["method"] == "cge" and p["seed"] == seed and "sparsity" not in p)
    return [{**by_sparsity[s], "sparsity": s} for s in settings["sparsities"]]


def goals(rows: list[dict]) -> dict:
    """``fmnist_cge_fo_gap_pp`` (largest FO − CGE mean gap), ``fmnist_cge_rge_margin_pp`` (smallest
    CGE − RGE mean margin), ``fmnist_cge_rge_separated`` (CGE's interval above RGE's on every size)."""
    gap = max(r["fo"]["mean"] - r["cge"]["mean"] for r in rows)
    margin = min(r["cge"]["mean"] - r["rge"]["mean"] for r in rows)
    separated = all(np.isfinite(r["cge"]["low"]) and r["cge"]["low"] > r["rge"]["high"] for r in rows)
    return {"fmnist_cge_fo_gap_pp": gap, "fmnist_cge_rge_margin_pp": margin, "fmnist_cge_rge_separated": separated}


def run_fmnist(data_dir: str, mode: str, *, seed: int = 0, settings: dict | None = None, log=print,
               jobs: int = 1, threads: int | None = None) -> dict:
    """The whole Fashion-MNIST part: lr sweep, accuracy table, sparsity sweep, goals.

    ``settings`` replaces :data:`SETTINGS` ``[mode]`` (tests shrink the problem further); ``jobs``
    training runs go at a time, each in its own spawned process with ``threads`` torch threads.
    """
    settings = dict(settings or SETTINGS[mode])
    seeds = [seed + k for k in range(settings["seeds"])]
    sweep = lr_sweep(data_dir, settings, jobs=jobs, threads=threads, log=log)
    lrs = {size: {m: sweep[size][m]["best_lr"] for m in METHODS} for size in RECIPES}
    payloads = study_payloads(data_dir, settings, lrs, seeds, threads)
    cells = _run_cells(payloads, jobs, log)
    rows = accuracy_rows(payloads, cells, log=log)
    return {"settings": settings, "seeds": seeds, "mu": MU, "cge_sparsity": SPARSITY, "lr_sweep": sweep,
            "rows": rows, "sparsity": sparsity_rows(payloads, cells, settings, seeds[0]), "goals": goals(rows),
            "jobs": jobs}


def plot_fmnist(result: dict, axes) -> None:
    """Three panels: accuracy with 95 % intervals; CGE step time vs parameters (log-log, fitted
    exponents); dense vs sparse CGE accuracy and step time."""
    part, timing = result["fmnist"], result["fmnist_timing"]
    ax = axes[0]
    rows = part["rows"]
    for k, method in enumerate(METHODS):
        xs = [i + (k - 1) * 0.25 for i in range(len(rows))]
        means = [r[method]["mean"] for r in rows]
        errs = [[r[method]["mean"] - r[method]["low"] for r in rows],
                [r[method]["high"] - r[method]["mean"] for r in rows]]
        ax.bar(xs, means, 0.25, yerr=errs, capsize=3, label=method.upper())
    ax.set_xticks(range(len(rows)), [f"{r['params']:,} params\nlr " + " / ".join(f"{r[m]['lr']:g}" for m in METHODS)
                                     for r in rows], fontsize=8)
    low = min(r[m]["mean"] for r in rows for m in METHODS)
    ax.set_ylim(max(0.0, low - 10), 100)
    ax.set_ylabel("test accuracy (%), 10k images")
    g = part["goals"]
    ax.set_title(f"Fashion-MNIST, {len(part['seeds'])} seeds, 95% t-intervals: FO−CGE ≤ "
                 f"{g['fmnist_cge_fo_gap_pp']:.2f} pt, CGE−RGE ≥ {g['fmnist_cge_rge_margin_pp']:.2f} pt", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    sizes = timing["sizes"]
    for variant, fit in timing["fits"].items():
        ax.plot([s["params"] for s in sizes], [s["step_s"][variant] for s in sizes], "o-",
                label=f"{variant.replace('_', ' + ')}: d^{fit['exponent']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters d")
    ax.set_ylabel("seconds per dense CGE step")
    ax.set_title(f"28×28 inputs, batch {timing['batch']}", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[2]
    sweep = part["sparsity"]
    labels = [f"{100 * s['sparsity']:.0f}%" for s in sweep]
    ax.bar(range(len(sweep)), [100 * s["test_accuracy"] for s in sweep], color="tab:blue")
    ax.set_xticks(range(len(sweep)), labels)
    ax.set_xlabel("gradient sparsity (0% = dense CGE), larger model")
    ax.set_ylabel("test accuracy (%)", color="tab:blue")
    ax.set_ylim(max(0.0, min(100 * s["test_accuracy"] for s in sweep) - 10), 100)
    twin = ax.twinx()
    twin.plot(range(len(sweep)), [s["step_s"] for s in sweep], "o-", color="tab:red")
    twin.set_ylabel("seconds per training step", color="tab:red")
    ax.set_title("dense vs sparse CGE (ZO-GraSP ratios)", fontsize=9)
