"""``edgezo export``: the recipe's model as ONNX (+ TVM artifacts) for a target profile.

    edgezo export [--recipe NAME|FILE] [--checkpoint RUN_DIR|checkpoint.pt] [--target PROFILE]
                  --out DIR [--batch-size N] [--set SECTION.KEY=VALUE] [--no-tvm]

Writes ``DIR/model_inference.onnx`` (the deployable model: x → logits, or → u for a
PINN; trained weights as initializers, batch norm folded — ``edgezo.export.inference``),
and, where the model traces with its parameters as inputs, ``DIR/model.onnx``
(forward + loss, parameters as inputs), ``model_stacked.onnx``
(a leading perturbation axis), ``manifest.json``, ``README.md`` and — when
Apache TVM is installed — the kernels as C source and, for a profile with a
cross triple (``cortex-m4-256k``), an object file for that CPU.

Before writing anything it estimates the SRAM one zeroth-order training step
of the recipe needs on the target (``edgezo.targets.memory.check_fits``) and
refuses a model that does not fit, printing the breakdown and what to shrink.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from ..io import out_dir
from . import CLIError

DEFAULT_TARGET = "host-cpu"
TASKS = ("classification", "deepzero", "pinn")
CALIBRATION_SAMPLES = 4096


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a recipe's model (ONNX, TVM C source / objects) for a target")
    p.add_argument("--recipe", help="recipe name or .toml path (default: digits-mlp)")
    p.add_argument("--checkpoint", help="a training run directory or its checkpoint.pt (default: initial weights)")
    p.add_argument("--target", default=DEFAULT_TARGET,
                   help=f"target profile name or .toml path (see `edgezo targets`; default {DEFAULT_TARGET})")
    p.add_argument("--out", required=True, help="artifact directory")
    p.add_argument("--batch-size", type=int, help="training batch on the target (default: the recipe's)")
    p.add_argument("--data", help="data path for recipes that need one (MNIST, CIFAR-10)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe field")
    p.add_argument("--no-tvm", action="store_true", help="write the ONNX artifacts only")
    p.add_argument("--calibration-samples", type=int, default=CALIBRATION_SAMPLES,
                   help="training samples for the population batch-norm statistics of DeepZero CNNs "
                        f"(default {CALIBRATION_SAMPLES})")
    p.set_defaults(func=cmd_export)


# --- the memory model's view of a recipe ---------------------------------------------------------

def _estimator_name(spec: dict) -> tuple[str, int]:
    kind = spec.get("kind", "rge")
    if kind == "cge":
        return "cge", 1
    q = int(spec.get("q", 20))
    return ("rge-central" if spec.get("difference", "central") == "central" else "rge"), q


def _optimizer_name(spec: dict) -> str:
    kind = spec.get("kind", "adam")
    momentum = float(spec.get("momentum", 0.0) or 0.0)
    if kind in ("adam", "adamw"):
        return "adam"
    if kind in ("sgd", "sign-sgd"):
        return "sgd-momentum" if momentum else kind
    if kind == "seed-sgd":
        return "seed-sgd"
    return "adam"  # unknown optimizer: assume the largest state


def training_steps(recipe) -> list[tuple[str, str, int]]:
    """(estimator, optimizer, q) of each phase of a recipe, as the memory model names them."""
    phases = recipe.config.get("phases") or [{"estimator": recipe.section("estimator"),
                                              "optimizer": recipe.section("optimizer") or {"kind": "adam"}}]
    out = []
    for p in phases:
        est, q = _estimator_name(p.get("estimator", {}))
        out.append((est, _optimizer_name(p.get("optimizer", {})), q))
    return out


def memory_check(model, profile, *, input_shape, batch_size: int, recipe):
    """The largest per-phase breakdown; raises BudgetError when a phase does not fit."""
    from ..targets.memory import check_fits, memory_breakdown

    worst = None
    for estimator, optimizer, q in training_steps(recipe):
        bd = memory_breakdown(model, profile, input_shape=input_shape, batch_size=batch_size,
                              queries_per_step=q, estimator=estimator, optimizer=optimizer)
        if worst is None or bd.total > worst.total:
            worst = bd
    if not worst.fits:
        check_fits(model, profile, input_shape=input_shape, batch_size=batch_size,
                   queries_per_step=worst.queries_per_step, estimator=worst.estimator, optimizer=worst.optimizer)
    return worst


# --- the command ---------------------------------------------------------------------------------

def _load_checkpoint(path: str, model, groups):
    import torch

    from ..params import ParamSpace

    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.exists():
        raise CLIError(f"no checkpoint at {p}; pass a training run directory (edgezo train --out DIR) "
                       "or its checkpoint.pt")
    from ..checkpoint import load
    from ..trainer import CHECKPOINT_KIND

    flat = load(p, CHECKPOINT_KIND, required=("params",))["params"]
    if not isinstance(flat, torch.Tensor) or flat.ndim != 1:
        raise CLIError(f"{p}: incomplete checkpoint, its 'params' is not a flat tensor")
    space = ParamSpace(model, groups)
    if flat.numel() != space.dim:
        raise CLIError(f"{p} holds {flat.numel()} parameters but the recipe's model has {space.dim}; "
                       "export with the recipe (and --set overrides) the run was trained with")
    space.set_flat(flat)
    return p


def _task_model(recipe, args, config, batch_size: int) -> dict:
    """The recipe's model (trained weights loaded) and the data its exports need, per task."""
    import torch

    from ..data import load_dataset
    from ..models import build_model

    if recipe.task not in TASKS:
        raise CLIError(f"edgezo export handles {', '.join(TASKS)} recipes; {recipe.name} has task {recipe.task!r}")
    torch.manual_seed(config.seed)
    groups = recipe.config.get("groups")
    if recipe.task == "pinn":
        from ..adapters.pinn.task import CollocationBatches, build_pinn_model, test_points

        model, opts = build_pinn_model(recipe)
        x, y = CollocationBatches(model.pde, batch_size, config.seed).get(0, 0, 0)
        check_x = test_points(model.pde, min(1000, int(opts["test_points"])), int(opts["test_seed"]))
        task = {"model": model, "example": (x, y), "loss": "mse", "calibration": None, "check_x": check_x,
                "check_y": None, "input_shape": tuple(x.shape[1:]),
                # one loss evaluation runs the inner network on every Stein node of every collocation point
                "memory_model": copy.deepcopy(model.net).float(),
                "memory_batch": batch_size * model.stein.evaluations_per_point}
    else:
        data_spec = recipe.section("data")
        data = load_dataset(data_spec.pop("name", "digits"), args.data or data_spec.pop("path", None), **data_spec)
        model = build_model(recipe.section("model")).cpu()
        task = {"model": model, "example": (data.x_train[:batch_size], data.y_train[:batch_size]),
                "loss": recipe.config.get("loss", "cross_entropy"),
                "calibration": data.x_train[: args.calibration_samples], "check_x": data.x_test,
                "check_y": data.y_test, "input_shape": data.input_shape}
    task["source"] = _load_checkpoint(args.checkpoint, task["model"], groups) if args.checkpoint else None
    return task


def _training_graph(task: dict, groups):
    """The training export (parameters as inputs), or ``(None, reason)`` when the model does not trace."""
    from ..export.onnx import export_onnx

    try:
        return export_onnx(task["model"], task["example"], loss=task["loss"], groups=groups), None
    except ValueError as err:
        return None, str(err)


def cmd_export(args) -> int:
    from .. import io
    from ..export.manifest import build_manifest, inference_manifest, write_manifest
    from ..export.parameters import write_parameters
    from ..export.tvm import TVM_INSTALL_HINT, readme_text, tvm_available, write_tvm_artifacts
    from ..overrides import parse_set
    from ..params import ParamSpace
    from ..recipes import DEFAULT_RECIPE, apply_overrides, get_recipe, train_config
    from ..targets.profile import load_profile

    recipe = apply_overrides(get_recipe(args.recipe or DEFAULT_RECIPE), parse_set(args.set or []))
    profile = load_profile(args.target)
    config = train_config(recipe)
    batch_size = int(args.batch_size or config.batch_size)
    if batch_size < 1:
        raise CLIError(f"--batch-size must be positive, got {batch_size}")
    task = _task_model(recipe, args, config, batch_size)
    model, groups = task["model"], recipe.config.get("groups")
    breakdown = memory_check(task.get("memory_model", model), profile, input_shape=task["input_shape"],
                             batch_size=task.get("memory_batch", batch_size), recipe=recipe)

    out = out_dir(args.out)
    exported, reason = _training_graph(task, groups)
    from ..export.inference import write_checked_inference

    inference = write_checked_inference(out, task["model"], task["example"][0], check_x=task["check_x"],
                                        check_y=task["check_y"], calibration=task["calibration"])
    files = [{k: inference[k] for k in ("file", "kind", "runtime")}]
    records: list[dict] = []
    tvm_note = None
    if exported is None:
        tvm_note = f"No training graph (model.onnx) or TVM artifacts: {reason}"
        print(f"edgezo: note: {tvm_note}", file=sys.stderr)
        manifest = inference_manifest(ParamSpace(model, groups).layout, loss=task["loss"], inference=inference,
                                      reason=reason, profile=profile, files=files, recipe=recipe.name,
                                      memory=breakdown.as_dict())
    else:
        paths = exported.save(out)
        files += [{"file": p.name, "kind": "onnx", "runtime": "ONNX Runtime (InferenceSession) or any ONNX runtime"}
                  for p in paths.values()]
        files += write_parameters(out, exported, model)
        if args.no_tvm:
            tvm_note = "TVM artifacts were not requested (--no-tvm)."
        elif not tvm_available():
            tvm_note = (f"TVM artifacts (C source, {profile.cpu or 'cross'} object) were skipped: Apache TVM is not "
                        f"installed. Install it with: {TVM_INSTALL_HINT}")
            print(f"edgezo: note: {tvm_note}", file=sys.stderr)
        else:
            records = write_tvm_artifacts(exported, out, profile=profile, batch_size=batch_size)
        manifest = build_manifest(exported, profile=profile, files=files + records, recipe=recipe.name,
                                  batch_size=batch_size, memory=breakdown.as_dict(),
                                  extra={"checkpoint": str(task["source"]) if task["source"] else None,
                                         "inference": inference})
    write_manifest(out, manifest)
    io.write_text(out / "README.md", readme_text(manifest, records, tvm_note=tvm_note))
    names = sorted([f["file"] for f in files + records] + ["manifest.json", "README.md"])
    io.write_json(out / "metrics.json", {"recipe": recipe.name, "target": profile.name, "params": manifest["dim"],
                                         "memory_total": breakdown.total, "memory_budget": breakdown.budget,
                                         "fits": breakdown.fits, "files": names,
                                         "inference": {k: v for k, v in inference.items()
                                                       if k not in ("inputs", "outputs", "runtime")}})
    print(breakdown.format_table())
    shown = f", test_accuracy {inference['test_accuracy']:.4f}" if "test_accuracy" in inference else ""
    print(f"{recipe.name}: exported for {profile.name} ({manifest['dim']:,} parameters) -> {out}: {', '.join(names)}; "
          f"{inference['file']} matches torch to {inference['max_abs_diff_vs_torch']:.1e}{shown}")
    return 0
