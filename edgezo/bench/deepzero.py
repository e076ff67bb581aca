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
    quick 410 / 484 / 826 parameters, 10 epochs; full 484 / 786 / 1,386,
    20 epochs. Test accuracy on 450 images moves by ~1 point across seeds, so
    ``--seeds`` averages several.

Goals: ``reuse_batched_speedup`` (naive / reuse_batched step time, largest
model; target ≥ 3), ``reuse_speedup`` (naive / reuse; DeepZero reports ~2.4×
in training time), ``cge_fo_gap_pp`` (largest FO − CGE accuracy gap over the
sizes, points; ≤ 1), ``cge_rge_margin_pp`` (smallest CGE − RGE margin, points; > 0).
"""

from __future__ import annotations

import statistics
import time

import torch

from ..estimators import CGE
from ..losses import cross_entropy
from ..oracles.staged import StagedOracle
from ..oracles.torch_oracle import TorchOracle

VARIANTS = ("naive", "reuse", "reuse_batched", "batched")
TIMING_SIZES = {"quick": [(1, 18), (2, 12), (2, 18)], "full": [(1, 18), (3, 18), (5, 18)]}
TABLE_SIZES = {"quick": [(3, 4), (2, 6), (3, 6)], "full": [(2, 6), (2, 8), (3, 8)]}
EPOCHS = {"quick": 10, "full": 20}
MU = 5e-3


def add_arguments(parser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is steadier on a busy host)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every accuracy run")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per accuracy cell (mean reported)")
    parser.add_argument("--skip-table", action="store_true", help="only the step timings")


def _digits_model(depth: int, width: int, seed: int):
    from ..models import build_model

    torch.manual_seed(seed)
    return build_model({"kind": "cnn", "depth": depth, "width": width, "in_channels": 1, "image_size": 8,
                        "min_size": 2})


def _oracle(variant: str, model):
    if variant == "naive":
        return TorchOracle(model, cross_entropy, path="loop")
    if variant == "batched":
        return TorchOracle(model, cross_entropy, path="stacked")
    return StagedOracle(model, cross_entropy, path="loop" if variant == "reuse" else "auto")


def time_cge_steps(depth: int, width: int, batch, reps: int, seed: int) -> dict:
    """Median wall time of one dense CGE step per variant (interleaved repetitions)."""
    model = _digits_model(depth, width, seed)
    oracles = {v: _oracle(v, model) for v in VARIANTS}
    dim = oracles["naive"].dim
    est = CGE(mu=MU)
    warm = CGE(mu=MU, coords=list(range(min(dim, 64))))
    for v, o in oracles.items():  # warm-up; the auto path also picks its evaluation paths here
        (est if v == "reuse_batched" else warm).estimate(o, batch, step=0, seed=seed)
    times = {v: [] for v in VARIANTS}
    grads = {}
    for r in range(reps):
        for v, o in oracles.items():
            t0 = time.perf_counter()
            g = est.estimate(o, batch, step=r, seed=seed)
            times[v].append(time.perf_counter() - t0)
            grads[v] = g.coord_terms[0][1]
    med = {v: statistics.median(ts) for v, ts in times.items()}
    agree = max(float((grads[v] - grads["naive"]).abs().max()) for v in VARIANTS)
    chosen = {}
    for key, path in oracles["reuse_batched"].choices.items():
        if key.startswith("coord:"):
            chosen[path] = chosen.get(path, 0) + 1
    return {"depth": depth, "width": width, "params": dim, "coords_per_step": dim, "reps": reps,
            "step_s": med, "all_s": times,
            "speedup_vs_naive": {v: med["naive"] / med[v] for v in VARIANTS},
            "max_abs_grad_difference": agree, "reuse_batched_paths": chosen}


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
                    dim = sum(p.numel() for p in _digits_model(depth, width, seed).parameters())
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
    if not getattr(args, "skip_table", False):
        epochs = getattr(args, "epochs", None) or EPOCHS[mode]
        seeds = [args.seed + k for k in range(max(1, getattr(args, "seeds", 1) or 1))]
        table = accuracy_table(TABLE_SIZES[mode], epochs, seeds)
        goals["cge_fo_gap_pp"] = max(100 * (r["fo"]["test_accuracy"] - r["cge"]["test_accuracy"]) for r in table)
        goals["cge_rge_margin_pp"] = min(100 * (r["cge"]["test_accuracy"] - r["rge"]["test_accuracy"]) for r in table)
        result["table"] = {"dataset": "digits (1,347 train / 450 test, 8x8)", "epochs": epochs, "seeds": seeds,
                           "recipe": "digits-cnn", "mu": MU, "rows": table}
    result["goals"] = goals
    return result


def plot(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    has_table = "table" in result
    fig, axes = plt.subplots(1, 2 if has_table else 1, figsize=(13 if has_table else 7, 4.4), squeeze=False)
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
