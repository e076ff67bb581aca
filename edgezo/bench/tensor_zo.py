"""``edgezo bench tensor-zo``: tensor-compressed ZO training (Zhao et al. 2023, arXiv:2308.09858).

Five configurations trained with the same epochs, batches and seeds:

==============  ===========================  ==============================================
configuration   model                        estimator schedule
==============  ===========================  ==============================================
fo-dense        dense MLP (the TT's twin)    autograd + the recipe's ``fo_optimizer``
fo-tt           the recipe's TT-MLP          autograd + the recipe's ``fo_optimizer``
zo-rge-dense    dense MLP                    the recipe's first phase (RGE) for the whole run
zo-rge-tt       TT-MLP                       the recipe's first phase (RGE) for the whole run
zo-hybrid-tt    TT-MLP                       the recipe's own schedule (phases / hybrid)
==============  ===========================  ==============================================

Tasks: ``digits`` (recipe ``digits-tt``: 64→512→10 with TT layers, 1,722
trainable parameters, against a dense 64→512→10 MLP with 38,410) and, with
``--mnist DIR`` (Fashion-MNIST / MNIST IDX files, 60k/10k), ``mnist`` (recipe
``mnist-tt``: the authors' 784→256→10 net, rank 4, 1,770 trainable against a dense
784→256→10 with 203,530), ``mnist1024`` (``mnist-tt-1024``: 784→1024→10, rank 6,
3,962 against 814,090) and ``ranks`` (the 784→256→10 net at ranks 2, 4, 6, 8: FO and
the ZO schedule, one seed, 6 epochs). ``--tasks`` picks a subset; ``--dense-lrs`` and
``--tt-lrs`` add learning-rate sweeps of ZO-RGE-dense and ZO-RGE-TT (the forward-pass
ratio takes each side at its best setting). Every run also records test accuracy
against wall time.

The MNIST recipes' schedule is one epoch of RGE, then CGE on every coordinate
(``coord_path = "delta"``: each coordinate's loss from the exact change of one core
entry, docs/methods/tensor-train-zo.md). That is what makes the ZO schedule converge like
first-order training, at 1 + d forward passes a step.

CPU budget (2 cores, torch 2.13, ``--jobs 2 --threads 1``: two runs at a time, one core
each): every MNIST run is capped at ``--max-run-s`` (default 1,800 s; it stops after the
step that crosses the cap and says so through its step count). All runs of all tasks share
one pool of ``--jobs`` processes, the coordinate-wise runs (the long ones) first. Measured
one-core step times at batch 250: the CGE step of the 784→256→10 rank-4 net 0.23 s (its
11 CGE epochs ~11 min), 784→1024→10 rank 6 1.1 s (4 CGE epochs, 19 min), rank 8 0.68 s;
RGE steps 0.02-0.15 s, FO steps 0.01-0.1 s. The full run (digits with 3 seeds, mnist with
the two learning-rate sweeps, mnist1024, ranks) took 40 min 40 s on 2026-12-06
(docs/methods/tensor-train-zo.md). ``--quick``:
digits and, with ``--mnist``, only the 784→256→10 task (unless ``--tasks`` says
otherwise), two epochs per MNIST run, each capped at 20 s (a smoke run, ~1.5 min; its
MNIST accuracies mean little).

Reported per configuration: final test accuracy, forward passes (loss
evaluations; FO also counts its backward passes separately), samples forwarded,
trainable parameters, wall time and peak RSS. **Peak RSS**: every
configuration runs in its own spawned process (``multiprocessing`` "spawn"),
so ``peak_rss_mb`` is that process's high-water mark (``rss_start_mb`` is the RSS
after loading data and model). ``--in-process`` runs everything in this process
instead; then only the RSS growth during each run is reported.

Goals: digits ``hybrid_tt_gap_pp`` = FO-TT − ZO-hybrid-TT test accuracy in points
(≤ 1.0), ``tt_compression`` = dense / TT trainable parameters (≥ 20), ``tt_fo_loss_pp``
= FO-dense − FO-TT (≤ 1.0), ``tt_forward_pass_ratio`` = forward passes ZO-RGE-dense
needs to first reach its final accuracy over those ZO-RGE-TT needs to reach it
(> 1; ``None`` if ZO-TT never does); the same with prefix ``mnist_`` for
784→256→10 (gap ≤ 2, ratio ≥ 3, compression ≥ 100, FO loss ≤ 3) and
``mnist1024_hybrid_tt_gap_pp`` (≤ 3). ``stacked_forward`` (:mod:`.tt_forward`) times
the stacked TT forward of q = 11 copies at batch 2,000 against the dense stacked
forward and the matmul peak; with ``--mnist``, ``coordinate_queries`` (:mod:`.tt_coordinates`)
times CGE's coordinate queries on both MNIST nets with one forward per coordinate and with
the exact single-entry change (``coord_path = "delta"``).
"""

from __future__ import annotations

import copy
import math
import os
import statistics
from dataclasses import dataclass
from typing import Any

from edgezo.errors import ConfigError

from .processes import run_in_processes
from .tensor_zo_goals import all_goals, passes_to_reach, task_goals

CONFIGS = ("fo-dense", "fo-tt", "zo-rge-dense", "zo-rge-tt", "zo-hybrid-tt")
REACH_LEVELS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class Task:
    """One data set: the TT recipe, its dense twin and the length of a ``--quick`` run."""

    name: str
    recipe: str
    dense: dict[str, Any]
    quick_epochs: int


DIGITS = Task(name="digits", recipe="digits-tt", dense={"kind": "mlp", "sizes": [64, 512, 10], "activation": "relu"},
              quick_epochs=12)
MNIST = Task(name="mnist", recipe="mnist-tt", dense={"kind": "mlp", "sizes": [784, 256, 10], "activation": "relu"},
             quick_epochs=2)
MNIST1024 = Task(name="mnist1024", recipe="mnist-tt-1024",
                 dense={"kind": "mlp", "sizes": [784, 1024, 10], "activation": "relu"}, quick_epochs=2)
TASKS = {"digits": DIGITS, "mnist": MNIST, "mnist1024": MNIST1024}
RANKS = (2, 4, 6, 8)
# Epochs of the rank study's runs in the full benchmark: CGE at rank 8 (5,034 coordinates) costs
# ~3x rank 4 per step, so 12 epochs would not fit the 30-minute cap per run.
RANK_EPOCHS = 6
# Wall-time cap per training run (seconds) of the full benchmark; --quick caps every run at QUICK_CAP_S.
ZO_CAP_S = 1800
QUICK_CAP_S = 20


def add_arguments(parser) -> None:
    parser.add_argument("--mnist", metavar="DIR",
                        help="also run the MNIST-size tasks (784-256-10 rank 4, 784-1024-10 rank 6 and the rank "
                             "study) on MNIST-format IDX data in DIR (e.g. /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--tasks", help="comma-separated subset of digits, mnist, mnist1024, ranks "
                                        "(default: digits, plus the other three with --mnist)")
    parser.add_argument("--ranks", default=",".join(map(str, RANKS)),
                        help="TT ranks of the 784-256-10 rank study (FO and the ZO schedule, one seed)")
    parser.add_argument("--dense-lrs", default="",
                        help="comma-separated Adam learning rates for a zo-rge-dense sweep (point 3: the dense "
                             "baseline at its best setting); the best one enters mnist_tt_forward_pass_ratio")
    parser.add_argument("--tt-lrs", default="",
                        help="the same sweep for zo-rge-tt (the TT side tuned as well as the dense one); the best "
                             "setting of each side enters mnist_tt_forward_pass_ratio")
    parser.add_argument("--seeds", type=int,
                        help="seeds per configuration (default: 3 on digits, whose test accuracies move by ~1 "
                             "point from seed to seed on 450 test images; 1 on the MNIST tasks and with --quick); "
                             "the rank study always runs one seed")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--epochs", type=int, help="override the epochs of every run")
    parser.add_argument("--max-run-s", type=float,
                        help=f"wall-time cap per training run (default {ZO_CAP_S} s, {QUICK_CAP_S} s with --quick "
                             "on the MNIST tasks); a capped run stops after the step that crosses it")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's choice)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time, each in its own process (default 1; 2 with --threads 1 uses both "
                             "cores of a 2-core host, at the price of shared memory bandwidth in the wall times)")
    parser.add_argument("--in-process", action="store_true",
                        help="run every configuration in this process (peak RSS then not per configuration)")


# --------------------------------------------------------------------------- recipes per configuration


def scaled_phases(phases: list[dict], epochs: int, new_epochs: int) -> list[dict]:
    """Phase starts scaled from ``epochs`` to ``new_epochs`` (kept strictly increasing, < new_epochs)."""
    out, last = [], -1
    for i, p in enumerate(phases):
        p = dict(p)
        scaled = round(p.get("start_epoch", 0) * new_epochs / epochs)
        start = 0 if i == 0 else max(last + 1, min(new_epochs - 1, scaled))
        if i and start >= new_epochs:
            raise ConfigError(f"{new_epochs} epochs leave no room for phase {i} (starts at epoch "
                             f"{p.get('start_epoch')} of {epochs}); use more epochs")
        p["start_epoch"] = last = start
        out.append(p)
    return out


def config_recipe(task: Task, config: str, *, epochs: int | None = None, seed: int = 0, rank: int | None = None,
                  lr: float | None = None, max_wall_s: float | None = None):
    """The recipe one configuration trains (a modified copy of the task's TT recipe).

    ``rank`` replaces every TT layer's rank, ``lr`` every ZO phase's Adam learning rate,
    ``max_wall_s`` caps the run's wall time.
    """
    from ..recipes import Recipe, get_recipe, with_estimator

    base = get_recipe(task.recipe)
    cfg = copy.deepcopy(base.config)
    if rank is not None:
        cfg["model"]["layer_specs"] = [[spec[0], spec[1], rank] for spec in cfg["model"]["layer_specs"]]
    if lr is not None:
        for phase in cfg.get("phases", [cfg]):
            phase["optimizer"] = {**phase["optimizer"], "lr": lr}
    train = cfg.setdefault("train", {})
    if max_wall_s is not None:
        train["max_wall_s"] = max_wall_s
    if task is not DIGITS:  # four test evaluations per epoch of the 60k training images: finer curves
        train.setdefault("eval_every", max(1, 60000 // int(train.get("batch_size", 64)) // 4))
    old_epochs = int(train.get("epochs", 10))
    if epochs is not None and epochs != old_epochs:
        train["epochs"] = epochs
        if "phases" in cfg:
            cfg["phases"] = scaled_phases(cfg["phases"], old_epochs, epochs)
    train["seed"] = seed
    recipe = Recipe(base.name, base.description, cfg, base.source)
    if config.startswith("fo-"):
        recipe = with_estimator(recipe, "fo")
    elif config.startswith("zo-rge-"):  # the schedule's first (randomized) phase for the whole run
        cfg = copy.deepcopy(recipe.config)
        first = cfg.pop("phases", [cfg])[0]
        if first["estimator"].get("kind") != "rge":
            raise ConfigError(f"{task.recipe}: zo-rge runs the recipe's first phase, which must be an rge estimator "
                             f"(got {first['estimator'].get('kind')!r})")
        cfg["estimator"], cfg["optimizer"] = first["estimator"], first["optimizer"]
        recipe = Recipe(recipe.name, recipe.description, cfg, recipe.source)
    elif config != "zo-hybrid-tt":
        raise ConfigError(f"unknown configuration {config!r}; choose from {', '.join(CONFIGS)}")
    if config.endswith("-dense"):
        cfg = copy.deepcopy(recipe.config)
        cfg["model"] = copy.deepcopy(task.dense)
        cfg.get("oracle", {}).pop("coord_path", None)  # a TT-MLP path; the dense twin runs no coordinate queries
        recipe = Recipe(recipe.name, recipe.description, cfg, recipe.source)
    return recipe


# --------------------------------------------------------------------------- one run


def _current_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_config(payload: dict) -> dict:
    """Train one configuration; returns a slim metrics dict (runs in a child process)."""
    import torch

    from ..recipes import Recipe, build_trainer
    from ..trainer import peak_rss_mb

    if payload.get("threads"):
        torch.set_num_threads(payload["threads"])
    recipe = Recipe(payload["name"], "", payload["config"])
    trainer = build_trainer(recipe, data_path=payload.get("data_path"), progress=False)
    rss_start = _current_rss_mb()
    before_peak = peak_rss_mb()
    m = trainer.run()
    fo = trainer.phases[0].estimator.name == "fo" and len(trainer.phases) == 1
    out = {
        "test_accuracy": m["test_accuracy"],
        "test_loss": m["test_loss"],
        "final_train_loss": m["final_train_loss"],
        "params": m["params"],
        "forward_passes": m["forward_passes"],
        "backward_passes": m["steps"] if fo else 0,
        "samples_forwarded": m["samples_forwarded"],
        "steps": m["steps"],
        "epochs": m["epochs"],
        "wall_s": m["wall_s"],
        "estimator": m["estimator"],
        "rss_start_mb": None if rss_start is None else round(rss_start, 1),
        "history": [{"step": h["step"], "forward_passes": h["forward_passes"], "wall_s": h.get("wall_s"),
                     "test_accuracy": h["test_accuracy"]} for h in m["history"]],
    }
    if payload.get("isolated"):
        out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    else:  # the process high-water mark is shared by all runs: report what this run added
        out["peak_rss_mb"] = None
        out["rss_growth_mb"] = round(max(0.0, peak_rss_mb() - before_peak), 1)
    return out


def _run_all(payloads: list[dict], in_process: bool, workers: int) -> list[dict]:
    """Every run in its own spawned process (``workers`` at a time), or all in this process."""
    if in_process:
        return [run_config({**p, "isolated": False}) for p in payloads]

    def report(payload: dict, row: dict) -> None:
        print(f"[tensor-zo] {payload['name']} seed {payload['config']['train']['seed']}: test accuracy "
              f"{row['test_accuracy']:.4f}, {row['forward_passes']} forward passes, {row['wall_s']:.0f} s", flush=True)

    return run_in_processes(run_config, [{**p, "isolated": True} for p in payloads], workers, report, isolate=True)


# --------------------------------------------------------------------------- the benchmark


def _summary(rows: list[dict]) -> dict:
    first = rows[0]
    keys = ("test_accuracy", "forward_passes", "backward_passes", "samples_forwarded", "wall_s")
    out = {k: statistics.fmean(r[k] for r in rows) for k in keys}
    out["test_accuracy_per_seed"] = [r["test_accuracy"] for r in rows]
    out["params"] = first["params"]
    out["estimator"] = first["estimator"]
    peaks = [r["peak_rss_mb"] for r in rows if r.get("peak_rss_mb") is not None]
    out["peak_rss_mb"] = max(peaks) if peaks else None
    starts = [r["rss_start_mb"] for r in rows if r.get("rss_start_mb") is not None]
    out["rss_start_mb"] = max(starts) if starts else None
    if any("rss_growth_mb" in r for r in rows):
        out["rss_growth_mb"] = max(r["rss_growth_mb"] for r in rows)
    # forward passes to first reach a few accuracy levels (median over seeds; None: not reached by all)
    reach = {}
    for level in REACH_LEVELS:
        hits = [passes_to_reach(r["history"], level) for r in rows]
        reach[f"{level:.2f}"] = statistics.median(hits) if all(h is not None for h in hits) else None
    out["passes_to_reach"] = reach
    return out


def _jobs(task: Task, args) -> list[tuple[str, str, dict]]:
    """(label, configuration, config_recipe options) of every run of one task."""
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ConfigError(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    jobs = [(c, c, {}) for c in configs]
    if task is MNIST:
        for lr in _floats(args.dense_lrs, "--dense-lrs"):
            jobs.append((f"zo-rge-dense@lr={lr:g}", "zo-rge-dense", {"lr": lr}))
        for lr in _floats(args.tt_lrs, "--tt-lrs"):
            jobs.append((f"zo-rge-tt@lr={lr:g}", "zo-rge-tt", {"lr": lr}))
    return jobs


def _rank_jobs(args) -> list[tuple[str, str, dict]]:
    ranks = [int(r) for r in _floats(args.ranks, "--ranks")]
    if any(r < 1 for r in ranks):
        raise ConfigError(f"--ranks must be positive integers, got {args.ranks!r}")
    return [(f"{c}@r={r}", c, {"rank": r}) for r in ranks for c in ("fo-tt", "zo-hybrid-tt")]


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in (text or "").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None


@dataclass
class TaskPlan:
    """The runs of one task: ``planned[i]`` = (label, seed) of ``payloads[i]``."""

    task: Task
    jobs: list[tuple[str, str, dict]]
    cap: float | None
    seeds: list[int]
    recipes: dict[str, dict]
    planned: list[tuple[str, int]]
    payloads: list[dict]


def plan_task(task: Task, args, data_path: str | None = None, *, n_seeds: int | None = None,
              jobs: list[tuple[str, str, dict]] | None = None, full_epochs: int | None = None) -> TaskPlan:
    jobs = _jobs(task, args) if jobs is None else jobs
    epochs = args.epochs or (task.quick_epochs if args.quick else full_epochs)
    cap = args.max_run_s or (QUICK_CAP_S if args.quick and task is not DIGITS else None)
    if task is not DIGITS and cap is None:
        cap = ZO_CAP_S
    if n_seeds is None:
        n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {n_seeds}")
    seeds = [args.seed + i for i in range(n_seeds)]
    plan = TaskPlan(task, jobs, cap, seeds, {}, [], [])
    for label, config, options in jobs:
        for seed in seeds:
            recipe = config_recipe(task, config, epochs=epochs, seed=seed, max_wall_s=cap, **options)
            plan.recipes[label] = recipe.config
            plan.planned.append((label, seed))
            plan.payloads.append({"name": f"{task.recipe}:{label}", "config": recipe.config,
                                  "data_path": data_path, "threads": args.threads})
    return plan


def finish_task(plan: TaskPlan, rows: list[dict]) -> dict:
    """The task's result from the rows of its runs (in ``plan.planned`` order)."""
    runs: dict[str, list[dict]] = {}
    for (label, seed), row in zip(plan.planned, rows):
        row["seed"] = seed
        runs.setdefault(label, []).append(row)
    return {
        "recipe": plan.task.recipe,
        "epochs": plan.recipes[plan.jobs[0][0]]["train"]["epochs"],
        "max_run_s": plan.cap,
        "seeds": plan.seeds,
        "goals": task_goals(runs),
        "summary": {c: _summary(rows) for c, rows in runs.items()},
        "runs": runs,
        "recipes": {c: {k: v for k, v in cfg.items() if k in ("model", "estimator", "optimizer", "phases",
                                                                "fo_optimizer", "train", "groups")}
                    for c, cfg in plan.recipes.items()},
    }


def run_task(task: Task, args, data_path: str | None = None, **options) -> dict:
    """Plan, run and summarize one task on its own."""
    plan = plan_task(task, args, data_path, **options)
    return finish_task(plan, _run_all(plan.payloads, args.in_process, args.jobs))


def run_plans(plans: dict[str, TaskPlan], args) -> dict[str, dict]:
    """Every task's runs in one pool of ``--jobs`` processes, the costliest schedules first (so the
    long coordinate-wise runs overlap the many short ones instead of ending each task alone)."""
    order = [(name, k) for name, plan in plans.items() for k in range(len(plan.payloads))]
    order.sort(key=lambda item: -_cost_rank(plans[item[0]].payloads[item[1]]["config"]))
    rows = _run_all([plans[n].payloads[k] for n, k in order], args.in_process, args.jobs)
    by_task: dict[str, list] = {name: [None] * len(plan.payloads) for name, plan in plans.items()}
    for (name, k), row in zip(order, rows):
        by_task[name][k] = row
    return {name: finish_task(plans[name], by_task[name]) for name in plans}


TRAIN_SIZES = {"digits": 1347, "mnist": 60000}  # training images per epoch (digits: its 75 % split)


def _cost_rank(config: dict) -> float:
    """A rough ordering of run costs: coordinate-wise epochs × training images × Σ M·N·rank of the TT layers."""
    phases = config.get("phases", [{**config, "start_epoch": 0}])
    epochs = int(config["train"]["epochs"])
    coordinate_epochs = 0
    for i, p in enumerate(phases):
        stop = phases[i + 1]["start_epoch"] if i + 1 < len(phases) else epochs
        if p.get("estimator", {}).get("kind") in ("cge", "hybrid"):
            coordinate_epochs += max(0, min(stop, epochs) - p.get("start_epoch", 0))
    size = 0
    for spec in config["model"].get("layer_specs", []):
        if len(spec) == 3:  # (in_modes, out_modes, rank)
            rank = spec[2] if isinstance(spec[2], int) else max(spec[2])
            size += math.prod(spec[0]) * math.prod(spec[1]) * rank
    return float(coordinate_epochs * TRAIN_SIZES.get(config.get("data", {}).get("name"), 60000) * size)


def rank_table(res: dict) -> list[dict]:
    """Rows {rank, params, fo_accuracy, zo_accuracy} of the rank study."""
    rows: dict[int, dict] = {}
    for label, s in res["summary"].items():
        config, rank = label.split("@r=")
        row = rows.setdefault(int(rank), {"rank": int(rank), "params": s["params"]})
        row["fo_accuracy" if config == "fo-tt" else "zo_accuracy"] = s["test_accuracy"]
    return [rows[r] for r in sorted(rows)]


def _selected_tasks(args) -> list[str]:
    if args.tasks:
        names = [t.strip() for t in args.tasks.split(",") if t.strip()]
        bad = [t for t in names if t not in (*TASKS, "ranks")]
        if bad:
            raise ConfigError(f"unknown task(s) {', '.join(bad)}; choose from digits, mnist, mnist1024, ranks")
    else:
        more = ["mnist"] if getattr(args, "quick", False) else ["mnist", "mnist1024", "ranks"]
        names = ["digits"] + (more if args.mnist is not None else [])
    if args.mnist is None and any(t != "digits" for t in names):
        raise ConfigError("the mnist, mnist1024 and ranks tasks need --mnist DIR (MNIST-format IDX data)")
    return names


def plan_all(args, names: list[str]) -> dict[str, TaskPlan]:
    """The plan of every selected task (digits: 3 seeds by default; MNIST tasks: 1 unless --seeds; ranks: 1)."""
    plans: dict[str, TaskPlan] = {}
    for name in names:
        if name == "ranks":
            plans[name] = plan_task(MNIST, args, data_path=args.mnist, n_seeds=1, jobs=_rank_jobs(args),
                                    full_epochs=RANK_EPOCHS)
        else:
            task = TASKS[name]
            plans[name] = plan_task(task, args, data_path=None if task is DIGITS else args.mnist,
                                    n_seeds=None if task is DIGITS or args.seeds is not None else 1)
    return plans


def run(args) -> dict:
    for key, default in (("mnist", None), ("seeds", None), ("configs", ",".join(CONFIGS)), ("epochs", None),
                         ("in_process", False), ("threads", None), ("tasks", None), ("ranks", "2,4,6,8"),
                         ("dense_lrs", ""), ("tt_lrs", ""), ("max_run_s", None), ("jobs", 1)):
        if not hasattr(args, key):
            setattr(args, key, default)
    if args.mnist is not None and not os.path.isdir(args.mnist):
        raise ConfigError(f"--mnist {args.mnist}: not a directory (give the folder with the MNIST-format IDX files)")
    names = _selected_tasks(args)
    sweeps = {flag: _floats(text, flag) for flag, text in (("--dense-lrs", args.dense_lrs), ("--tt-lrs", args.tt_lrs))}
    if any(sweeps.values()) and "mnist" not in names:
        raise ConfigError("--dense-lrs and --tt-lrs sweep the 784-256-10 task only: run it too "
                          "(--mnist DIR, and mnist in --tasks)")
    result: dict[str, Any] = {
        "rss_method": ("in-process: rss_growth_mb = growth of this process's peak RSS during each run"
                       if args.in_process else
                       "one spawned process per run: peak_rss_mb is that process's high-water mark"),
        "tasks": {},
    }
    for name, res in run_plans(plan_all(args, names), args).items():
        if name == "ranks":
            res["rank_table"] = rank_table(res)
        result["tasks"][name] = res
    from . import tt_forward

    result["stacked_forward"] = tt_forward.run(rounds=3 if args.quick else 7)
    if args.mnist is not None:
        from . import tt_coordinates

        result["coordinate_queries"] = tt_coordinates.run(per_tensor=8 if args.quick else 32,
                                                          rounds=1 if args.quick else 3)
    result["goals"], result["targets"] = all_goals(result)
    return result


def plot(result: dict, path) -> None:
    """Accuracy vs forward passes and vs wall time per task, and the rank study (see tensor_zo_plot)."""
    from .tensor_zo_plot import plot_result

    plot_result(result, path)
