"""The ``edgezo`` command line.

    edgezo train [--recipe NAME|FILE] [--out DIR] [--resume] [--estimator fo|rge|cge|...]
    edgezo recipes
    edgezo bench NAME [--out DIR] [--quick]

Other folders add sub-commands through :data:`EXTRA_COMMANDS` (a module path to
a ``register(subparsers)`` function), imported only when the CLI starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from .commands import CLIError
from .errors import EdgezoError
from .registry import Registry

# Sub-commands that live in edgezo/commands/ (the CLI layer may import every folder);
# other packages add theirs through the ``edgezo.commands`` entry points.
EXTRA_COMMANDS: dict[str, str] = {
    "export": "edgezo.commands.export:register",
    "targets": "edgezo.commands.targets:register",
    "device": "edgezo.commands.device:register",
    "serve": "edgezo.commands.serve:register",
    "robustify": "edgezo.commands.robustify:register",
}


COMMANDS: Registry = Registry("command", group="edgezo.commands")
for _name, _target in EXTRA_COMMANDS.items():
    COMMANDS.register(_name, _target)


def _known_errors() -> tuple[type[BaseException], ...]:
    """The errors the CLI prints as one line: every :class:`~edgezo.errors.EdgezoError` (nothing else)."""
    return (EdgezoError,)


def _default_out(recipe: str) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{recipe}"


def cmd_train(args) -> int:
    from . import io
    from .overrides import parse_set
    from .recipes import DEFAULT_RECIPE, apply_overrides, build_trainer, get_recipe, with_estimator_and_overrides

    recipe = get_recipe(args.recipe or DEFAULT_RECIPE)
    overrides = parse_set(args.set or [])
    for flag, key in (("epochs", "train.epochs"), ("seed", "train.seed"), ("batch_size", "train.batch_size"),
                      ("max_steps", "train.max_steps")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    if args.estimator:
        recipe, overrides = with_estimator_and_overrides(recipe, args.estimator, overrides)
    recipe = apply_overrides(recipe, overrides)
    if args.resume and not args.out:
        raise CLIError("--resume needs --out DIR pointing at the interrupted run")
    out = io.out_dir(args.out) if args.out else _default_out(recipe.name)
    check_device(args.device)
    if not args.resume and (out / "checkpoint.pt").exists() and not args.force:
        raise CLIError(f"{out} already holds a run (checkpoint.pt); use --resume to continue it, "
                       "--force to start over, or another --out")
    if args.onnx:
        return _train_onnx(args, recipe, out)
    from . import distributed
    from .oracles.backends import oracle_factory

    if distributed.should_launch(args):  # --workers N: spawn N ranks, each re-entering this command
        return distributed.launch_workers(args, out, entry=train_rank)
    session = distributed.session(args)  # this rank under torchrun / --workers; a no-op in one process
    trainer = build_trainer(recipe, data_path=args.data, device=session.device(args.device), out_dir=out,
                            progress=not args.no_progress and session.is_main,
                            oracle_factory=session.wrap(oracle_factory(args.backend, recipe)))
    session.prepare(trainer)
    if session.is_main:
        trainer.loggers = _loggers(args, recipe, out)
        print(f"edgezo: training {recipe.name} ({trainer.phases[0].estimator!r}, {trainer.oracle.dim} parameters, "
              f"{trainer.total_steps} steps{session.describe()}) -> {out}", file=sys.stderr)
    metrics = _run(trainer, lambda: session.run(trainer, resume=args.resume), out, write=session.is_main)
    if not session.is_main:  # rank 0 writes the outputs
        return 0
    _report(trainer, metrics, recipe, out)
    return 0


def _loggers(args, recipe, out: Path) -> list:
    from .tracking import build_loggers, hparams_of

    kinds = [k.strip() for item in (args.log or []) for k in item.split(",") if k.strip()]
    return build_loggers(kinds, out, hparams=hparams_of(recipe.config), resume=args.resume)


def _run(trainer, run, out: Path, *, write: bool = True) -> dict:
    """``run()`` with the loggers finished and a diverged run's partial metrics written."""
    from . import io
    from .trainer import TrainingDiverged

    try:
        metrics = run()
    except TrainingDiverged as err:
        if write:
            partial = trainer.metrics()
            partial.update(status="diverged", error=str(err))
            io.write_json(out / "metrics.json", partial)
            for log in trainer.loggers:
                log.finish(partial)
        raise
    metrics["status"] = "completed"
    for log in trainer.loggers:
        log.finish(metrics)
    return metrics


def _report(trainer, metrics: dict, recipe, out: Path) -> None:
    from . import io
    from .plots import plot_training

    io.write_json(out / "metrics.json", metrics)
    metric = trainer.primary_metric
    plot_training(trainer.state.losses, trainer.state.evals, out / "curves.png",
                  title=f"{recipe.name} · {metrics['estimator']}", metric=metric)
    value = metrics.get(metric)
    shown = f"{metric} {value:.4f}" if isinstance(value, float) else f"{metric} {value}"
    print(f"{recipe.name}: {shown} · {metrics['estimator']} · {metrics['forward_passes']} forward passes · "
          f"{metrics['wall_s']:.1f} s · {metrics['peak_rss_mb']:.0f} MB peak · {out}")


def _train_onnx(args, recipe, out: Path) -> int:
    """``train --onnx MODEL``: the ONNX model in place of the recipe's, trained through ONNX Runtime."""
    from .export.onnx_model import build_onnx_trainer, save_trained_onnx

    if args.workers != 1 or args.backend not in ("torch", "onnxruntime") or args.device != "cpu":
        raise CLIError("--onnx trains through ONNX Runtime on the CPU in one process; drop --workers, "
                       "--backend and --device")
    trainer, graphs = build_onnx_trainer(args.onnx, recipe, trainable=args.trainable, data_path=args.data,
                                         out_dir=out, progress=not args.no_progress)
    trainer.loggers = _loggers(args, recipe, out)
    print(f"edgezo: training {args.onnx} ({len(graphs.names)} initializers, {trainer.oracle.dim} parameters) with "
          f"{recipe.name}'s data and {trainer.phases[0].estimator!r}, {trainer.total_steps} steps -> {out}",
          file=sys.stderr)
    metrics = _run(trainer, lambda: trainer.run(resume=args.resume), out)
    metrics["onnx_out"] = str(save_trained_onnx(trainer, graphs, args.onnx, out / "model.onnx"))
    _report(trainer, metrics, recipe, out)
    return 0


def train_rank(args) -> int:
    """One rank of ``edgezo train --workers N``: the command, its errors printed with the rank."""
    import os

    try:
        return cmd_train(args)
    except _known_errors() as err:
        print(f"edgezo: error: [rank {os.environ.get('RANK', '?')}] {err}", file=sys.stderr)
        return 2


def check_device(device: str) -> None:
    """Refuse a ``--device`` that this torch cannot use (e.g. cuda on a CPU-only build) with one line."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise CLIError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {device}: this torch ({torch.__version__}) has no usable CUDA device; "
                           "use --device cpu or install a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CLIError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type not in ("cpu", "mps"):
        raise CLIError(f"--device {device}: edgezo trains on cpu or cuda")


def cmd_recipes(args) -> int:
    from .recipes import recipes

    if args.schema:
        import json

        from .recipe_schema import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0

    for r in sorted(recipes().values(), key=lambda r: r.name):
        print(r.summary())
    return 0


def cmd_bench(args) -> int:
    from .bench import run_benchmark

    result = run_benchmark(args.name, args)
    goals = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result["goals"].items())
    print(f"bench {args.name}: {goals} -> {Path(args.out) / (args.name + '.json')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="edgezo", description="Forward-only (zeroth-order) training.")
    parser.add_argument("--version", action="version", version=f"edgezo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a recipe (default: digits-mlp)")
    train.add_argument("--recipe", help="recipe name (see `edgezo recipes`) or path to a .toml file")
    train.add_argument("--out", help="output directory (default: runs/<timestamp>-<recipe>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--force", action="store_true", help="start over even if --out holds a run")
    train.add_argument("--estimator", help="replace the recipe's estimator schedule (fo = autograd baseline)")
    train.add_argument("--data", help="data path for recipes that need one (MNIST, CIFAR-10)")
    train.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    train.add_argument("--backend", default="torch", help="oracle backend (torch; others when installed)")
    train.add_argument("--workers", type=int, default=1,
                       help="share each step's queries among N processes (gloo on CPU, NCCL with --device cuda)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--max-steps", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="override any recipe field (value: a TOML literal), e.g. --set estimator.q=64")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (nor per-epoch lines)")
    train.add_argument("--onnx", metavar="MODEL.onnx",
                       help="train this ONNX classifier instead of the recipe's model (the recipe gives data, loss, "
                            "estimator and schedule); writes OUT/model.onnx")
    train.add_argument("--trainable", action="append", metavar="PATTERN",
                       help="with --onnx: fnmatch pattern of the initializers to train (repeatable; default: every "
                            "float weight except batch-norm statistics)")
    train.add_argument("--log", action="append", metavar="tensorboard|csv",
                       help="also log to TensorBoard (OUT/tensorboard) and/or CSV (OUT/steps.csv, OUT/evals.csv)")
    train.set_defaults(func=cmd_train)

    rec = sub.add_parser("recipes", help="list the recipes")
    rec.add_argument("--schema", action="store_true", help="print the recipe schema (JSON Schema) instead")
    rec.set_defaults(func=cmd_recipes)

    from .bench import available, load

    bench = sub.add_parser("bench", help="run a benchmark, write DIR/NAME.json and DIR/NAME.png")
    bench_sub = bench.add_subparsers(dest="name", metavar="NAME")
    for name in available():
        b = bench_sub.add_parser(name)
        b.add_argument("--out", default="bench-out", help="output directory (default: bench-out)")
        b.add_argument("--quick", action="store_true", help="reduced size (a few minutes on 2 CPU cores)")
        b.add_argument("--seed", type=int, default=0)
        module = load(name)
        if hasattr(module, "add_arguments"):
            module.add_arguments(b)
        b.set_defaults(func=cmd_bench)

    for name in COMMANDS.available():
        path = COMMANDS.path(name)
        if path is not None and importlib.util.find_spec(path.partition(":")[0]) is None:
            continue  # that sub-command is not part of this checkout
        COMMANDS.get(name)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if args.command == "bench":
            from .bench import available

            parser.error("bench needs a NAME: " + ", ".join(available()))
        parser.print_help()
        return 2 if args.command else 0
    if args.command is None:
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("edgezo: interrupted; the last checkpoint (if any) is intact — continue with --resume", file=sys.stderr)
        return 130
    except EdgezoError as err:  # a user error: one line; anything else is a bug and keeps its traceback
        print(f"edgezo: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """The error's message on one line (a multi-line message joined with ' · ')."""
    return " · ".join(part.strip() for part in str(err).splitlines() if part.strip()) or type(err).__name__


if __name__ == "__main__":
    raise SystemExit(main())
