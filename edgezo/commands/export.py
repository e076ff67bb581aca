"""``edgezo export``: the recipe's model as ONNX (+ TVM artifacts) for a target profile.

    edgezo export [--recipe NAME|FILE] [--checkpoint RUN_DIR|checkpoint.pt] [--target PROFILE]
                  --out DIR [--batch-size N] [--set SECTION.KEY=VALUE] [--no-tvm]

Writes ``DIR/model.onnx`` (forward + loss, parameters as inputs), ``model_stacked.onnx``
(a leading perturbation axis), ``manifest.json``, ``README.md`` and — when
Apache TVM is installed — the kernels as C source and, for a profile with a
cross triple (``cortex-m4-256k``), an object file for that CPU.

Before writing anything it estimates the SRAM one zeroth-order training step
of the recipe needs on the target (``edgezo.targets.profile.check_fits``) and
refuses a model that does not fit, printing the breakdown and what to shrink.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..io import out_dir

from ..cli import CLIError

DEFAULT_TARGET = "host-cpu"


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
    from ..targets.profile import check_fits, memory_breakdown

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


def write_parameters(out: Path, exported, model) -> list[dict]:
    """θ (the graph has none: parameters are inputs) as raw float32 and as a C array."""
    import numpy as np

    from .. import io

    named = dict(model.named_parameters())
    theta = np.concatenate([named[e.name].detach().cpu().reshape(-1).numpy() for e in exported.layout.entries])
    theta = theta.astype("<f4")
    io.write_bytes(out / "params.bin", theta.tobytes())
    rows = [", ".join(f"{v!r}f" if np.isfinite(v) else "0.0f" for v in theta[i : i + 8].tolist())
            for i in range(0, theta.size, 8)]
    offsets = "\n".join(f"#define EDGEZO_OFFSET_{exported.param_inputs[e.name].upper()} {e.offset}  "
                         f"/* {e.name} {tuple(e.shape)} */" for e in exported.layout.entries)
    header = (f"/* edgezo: parameter values theta ({theta.size} float32, flat layout order). Generated. */\n"
              "#ifndef EDGEZO_MODEL_PARAMS_H\n#define EDGEZO_MODEL_PARAMS_H\n"
              f"#define EDGEZO_DIM {theta.size}\n{offsets}\n"
              f"static const float edgezo_theta[EDGEZO_DIM] = {{\n  " + ",\n  ".join(rows) + "\n};\n#endif\n")
    io.write_text(out / "model_params.h", header)
    return [{"file": "params.bin", "kind": "parameters", "dtype": "float32", "byte_order": "little",
             "runtime": "raw float32 θ in the flat order of manifest.json parameters (offset, numel)"},
            {"file": "model_params.h", "kind": "c-header",
             "runtime": "C99: static const float edgezo_theta[] and the offset of every parameter"}]


def cmd_export(args) -> int:
    import torch

    from .. import io
    from ..data import load_dataset
    from ..models import build_model
    from ..recipes import DEFAULT_RECIPE, apply_overrides, get_recipe, parse_set, train_config
    from ..export.manifest import build_manifest, write_manifest
    from ..export.onnx import export_onnx
    from ..export.tvm import readme_text, tvm_available, write_tvm_artifacts, TVM_INSTALL_HINT
    from ..targets.profile import load_profile

    recipe = apply_overrides(get_recipe(args.recipe or DEFAULT_RECIPE), parse_set(args.set or []))
    if recipe.task != "classification":
        raise CLIError(f"edgezo export handles classification recipes; {recipe.name} has task {recipe.task!r}")
    profile = load_profile(args.target)
    config = train_config(recipe)
    batch_size = int(args.batch_size or config.batch_size)
    if batch_size < 1:
        raise CLIError(f"--batch-size must be positive, got {batch_size}")

    data_spec = recipe.section("data")
    data = load_dataset(data_spec.pop("name", "digits"), args.data or data_spec.pop("path", None), **data_spec)
    torch.manual_seed(config.seed)
    model = build_model(recipe.section("model")).cpu()
    groups = recipe.config.get("groups")
    source = _load_checkpoint(args.checkpoint, model, groups) if args.checkpoint else None

    breakdown = memory_check(model, profile, input_shape=data.input_shape, batch_size=batch_size, recipe=recipe)

    out = out_dir(args.out)
    example = (data.x_train[:batch_size], data.y_train[:batch_size])
    exported = export_onnx(model, example, loss=recipe.config.get("loss", "cross_entropy"), groups=groups)
    paths = exported.save(out)
    files = [{"file": p.name, "kind": "onnx", "runtime": "ONNX Runtime (InferenceSession) or any ONNX runtime"}
             for p in paths.values()]
    files += write_parameters(out, exported, model)
    records: list[dict] = []
    tvm_note = None
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
                              extra={"checkpoint": str(source) if source else None})
    write_manifest(out, manifest)
    io.write_text(out / "README.md", readme_text(manifest, records, tvm_note=tvm_note))
    io.write_json(out / "metrics.json", {"recipe": recipe.name, "target": profile.name, "params": exported.layout.dim,
                                         "memory_total": breakdown.total, "memory_budget": breakdown.budget,
                                         "fits": breakdown.fits, "files": sorted(
                                             [f["file"] for f in files + records] + ["manifest.json", "README.md"])})
    print(breakdown.format_table())
    written = ", ".join([f["file"] for f in files + records] + ["manifest.json", "README.md"])
    print(f"{recipe.name}: exported for {profile.name} ({exported.layout.dim:,} parameters) -> {out}: {written}")
    return 0
