"""``edgezo bench deepzero``: feature reuse + batching for CGE, and CGE vs RGE vs FO (DeepZero).

(a) Time of one dense CGE step (all d coordinates, forward difference, batch
    64 of the 8×8 digits) for three sizes of DeepZero's CNN family, four ways,
    interleaved in one process:

    * ``naive`` — a full forward per coordinate, one at a time
      (``TorchOracle(path="loop")``);
    * ``reuse`` — a forward from the coordinate's stage, one at a time
      (``StagedOracle(path="loop")``; DeepZero's feature reuse);
    * ``reuse_batched`` — reuse plus q coordinates of a tensor per call
      (``StagedOracle(path="auto")``: the fastest of stacked copies, rank-one
      coordinate deltas and vmap, chosen per tensor);
    * ``batched`` — full forwards, q per call, no reuse (``TorchOracle(path="stacked")``).

    Each step is timed ``reps`` times after a warm-up; the median is kept.

(b) Test accuracy of FO, ZO-CGE (dense, μ = 5e-3) and ZO-RGE (Gaussian, forward
    difference, q = d so that a step costs the same d + 1 forward passes) for
    three CNN sizes on digits, trained with the same recipe (``digits-cnn``'s
    SGD + momentum, cosine schedule), seeds and number of epochs — the shape of
    DeepZero's Table/Fig. "CGE vs RGE from scratch". Forward passes per run are
    recorded. RGE at q = d costs d + 1 full forwards per step (no reuse is
    possible when every weight moves), which bounds the sizes on a CPU:
    quick 410 / 484 parameters, 5 epochs (``--quick --mnist`` skips this table to stay
    under 5 minutes: the Fashion-MNIST table stands in for it); full 484 / 786 / 1,386,
    20 epochs. Test accuracy on 450 images moves by ~1 point across seeds, so
    ``--seeds`` averages several.

Goals: ``reuse_batched_speedup`` (naive / reuse_batched step time, largest
model; target ≥ 3), ``reuse_speedup`` (naive / reuse; DeepZero reports ~2.4×
in training time), ``cge_fo_gap_pp`` (largest FO − CGE accuracy gap over the
sizes, points; ≤ 1), ``cge_rge_margin_pp`` (smallest CGE − RGE margin, points; > 0).
"""

from __future__ import annotations

import statistics
import sys

import torch

from .deepzero_timing import VARIANTS, cnn_model, time_cge_steps

TIMING_SIZES = {"quick": [(1, 18), (2, 12), (2, 18)], "full": [(1, 18), (3, 18), (5, 18)]}
TABLE_SIZES = {"quick": [(3, 4), (2, 6)], "full": [(2, 6), (2, 8), (3, 8)]}
EPOCHS = {"quick": 5, "full": 20}
MU = 5e-3


def add_arguments(parser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is steadier on a busy host)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every accuracy run")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per accuracy cell (mean reported)")
    parser.add_argument("--skip-table", action="store_true", help="only the step timings")
    parser.add_argument("--jobs", type=int, default=1,
                        help="Fashion-MNIST training runs at a time, each in its own process with --threads "
                             "threads (2 on a 2-core machine with --threads 1)")
    parser.add_argument("--mnist", metavar="DIR", default=None,
                        help="also run the Fashion-MNIST part (IDX files in DIR, e.g. "
                             "/usr/share/datasets/fashion-mnist)")


def accuracy_table(sizes, epochs: int, seeds: list[int]) -> list[dict]:
    from ..recipes import apply_overrides, build_trainer, get_recipe, with_estimator

    base = get_recipe("digits-cnn")
    rows = []
    for depth, width in sizes:
        row = {"depth": depth, "width": width}
        for method in ("fo", "cge", "rge"):
            runs = []
            for seed in seeds:
                recipe = with_estimator(base, "fo" if method == "fo" else "cge")
                overrides = {"model.depth": depth, "model.width": width, "train.epochs": epochs, "train.seed": seed}
                if method == "cge":
                    overrides.update({"estimator.mu": MU, "estimator.difference": "forward"})
                recipe = apply_overrides(recipe, overrides)
                if method == "rge":
                    dim = sum(p.numel() for p in cnn_model(depth, width, seed).parameters())
                    recipe = apply_overrides(recipe, {"estimator": {"kind": "rge", "q": dim, "mu": MU,
                                                                    "difference": "forward", "direction": "gaussian"}})
                m = build_trainer(recipe, progress=False).run()
                row["params"] = m["params"]
                runs.append({"seed": seed, "test_accuracy": m["test_accuracy"], "forward_passes": m["forward_passes"],
                             "wall_s": m["wall_s"], "final_train_loss": m["final_train_loss"],
                             "curve": [(e["step"], e["test_accuracy"]) for e in m["history"]]})
            row[method] = {"test_accuracy": statistics.fmean(r["test_accuracy"] for r in runs),
                           "forward_passes": runs[0]["forward_passes"],
                           "wall_s": sum(r["wall_s"] for r in runs), "runs": runs}
        rows.append(row)
    return rows


def run(args) -> dict:
    mode = "quick" if args.quick else "full"
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    fmnist = {}
    if getattr(args, "mnist", None):
        fmnist = _run_fmnist(args.mnist, mode, args.seed, getattr(args, "jobs", 1), getattr(args, "threads", None))
    from ..data import load_digits

    data = load_digits(flatten=False)
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(data.x_train.shape[0], generator=g)[:64]
    batch = (data.x_train[idx], data.y_train[idx])
    reps = 2 if args.quick else 3
    timing = [time_cge_steps(d, w, batch, reps, args.seed) for d, w in TIMING_SIZES[mode]]
    largest = max(timing, key=lambda r: r["params"])
    goals = {"reuse_batched_speedup": largest["speedup_vs_naive"]["reuse_batched"],
             "reuse_speedup": largest["speedup_vs_naive"]["reuse"]}
    result = {"mode": mode, "threads": torch.get_num_threads(), "timing": {"batch": 64, "sizes": timing}}
    # --quick --mnist is a smoke run under 5 minutes: the Fashion-MNIST table stands in for the digits one
    if not getattr(args, "skip_table", False) and not (args.quick and getattr(args, "mnist", None)):
        epochs = getattr(args, "epochs", None) or EPOCHS[mode]
        seeds = [args.seed + k for k in range(max(1, getattr(args, "seeds", 1) or 1))]
        table = accuracy_table(TABLE_SIZES[mode], epochs, seeds)
        goals["cge_fo_gap_pp"] = max(100 * (r["fo"]["test_accuracy"] - r["cge"]["test_accuracy"]) for r in table)
        goals["cge_rge_margin_pp"] = min(100 * (r["cge"]["test_accuracy"] - r["rge"]["test_accuracy"]) for r in table)
        result["table"] = {"dataset": "digits (1,347 train / 450 test, 8x8)", "epochs": epochs, "seeds": seeds,
                           "recipe": "digits-cnn", "mu": MU, "rows": table}
    for key in ("fmnist_timing", "fmnist"):
        if key in fmnist:
            result[key] = fmnist[key]
    goals.update(fmnist.get("goals", {}))
    result["goals"] = goals
    return result


def _run_fmnist(data_dir: str, mode: str, seed: int, jobs: int = 1, threads: int | None = None) -> dict:
    """The Fashion-MNIST part (step-time scaling at 28×28, then the accuracy study), run first."""
    from .deepzero_fmnist import run_fmnist
    from .deepzero_scaling import run_scaling

    scaling = run_scaling(data_dir, mode, seed=seed, log=_log)
    largest = scaling["largest_table_model"]
    _log("fitted exponents of step time vs parameters: " + ", ".join(
        f"{v} {f['exponent']:.2f}" for v, f in scaling["fits"].items()))
    part = run_fmnist(data_dir, mode, seed=seed, log=_log, jobs=jobs, threads=threads)
    goals = {**part["goals"], "fmnist_reuse_batched_speedup": largest["speedup_vs_naive"]["reuse_batched"]}
    return {"fmnist_timing": scaling, "fmnist": part, "goals": goals}


def _log(line: str) -> None:
    print(f"deepzero: {line}", file=sys.stderr, flush=True)


def plot(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    has_table = "table" in result
    has_fmnist = "fmnist" in result
    rows = 2 if has_fmnist else 1
    fig, axes = plt.subplots(rows, 3 if has_fmnist else 2 if has_table else 1,
                             figsize=(19 if has_fmnist else 13 if has_table else 7, 4.4 * rows), squeeze=False)
    if has_fmnist:
        from .deepzero_fmnist import plot_fmnist

        plot_fmnist(result, axes[1])
        axes[0][2].axis("off")
    ax = axes[0][0]
    sizes = result["timing"]["sizes"]
    width = 0.2
    for k, v in enumerate(VARIANTS):
        xs = [i + (k - 1.5) * width for i in range(len(sizes))]
        ax.bar(xs, [s["step_s"][v] for s in sizes], width, label=v.replace("_", " + "))
    ax.set_xticks(range(len(sizes)), [f"{s['params']:,} params\n(depth {s['depth']}, width {s['width']})"
                                      for s in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("seconds per dense CGE step")
    g = result["goals"]
    ax.set_title(f"CGE step, digits batch 64: reuse {g['reuse_speedup']:.1f}×, "
                 f"reuse + batched {g['reuse_batched_speedup']:.1f}× vs naive", fontsize=10)
    ax.legend(fontsize=8)
    if has_table:
        ax = axes[0][1]
        rows = result["table"]["rows"]
        params = [r["params"] for r in rows]
        for method, style in (("fo", "o-"), ("cge", "s-"), ("rge", "^-")):
            ax.plot(params, [100 * r[method]["test_accuracy"] for r in rows], style, label=method.upper())
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"digits, {result['table']['epochs']} epochs: FO−CGE gap ≤ {g['cge_fo_gap_pp']:.2f} pt, "
                     f"CGE−RGE ≥ {g['cge_rge_margin_pp']:.2f} pt", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
