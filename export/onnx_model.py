"""Train a model brought as ONNX: the recipe gives data, loss, estimator and schedule; the ONNX file the model.

    trainer, graphs = build_onnx_trainer("model.onnx", get_recipe("digits-mlp"), trainable=["fc*"])
    trainer.run()
    save_trained_onnx(trainer, graphs, "model.onnx", "trained.onnx")

or in one call :func:`train_onnx`. The chosen float initializers become graph
inputs (:func:`edgezo.export.trainable.make_trainable`), the loss is evaluated
by ONNX Runtime (:class:`~edgezo.oracles.onnxruntime.ORTOracle`, the stacked
path by default: all perturbed points of a step in one ``session.run``), and
the result is the original model with its initializers replaced — a normal
ONNX model any runtime loads.

Only recipes with a data set (task ``classification``) apply: the ONNX model
takes their samples, reshaped to its declared input shape when the number of
values agrees (digits' 64 features feed a ``(1, 8, 8)`` CNN input).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, MissingFile

__all__ = ["build_onnx_trainer", "save_trained_onnx", "train_onnx", "ONNX_TASKS"]

ONNX_TASKS = ("classification",)


def _fit_inputs(x: torch.Tensor, shape: tuple, source: str) -> torch.Tensor:
    """``x`` (N, *sample) reshaped to the ONNX input's sample shape when only the layout differs."""
    if not shape or any(d is None for d in shape) or tuple(x.shape[1:]) == tuple(shape):
        return x
    want = 1
    for d in shape:
        want *= int(d)
    if want != x[0].numel():
        raise ConfigError(f"{source} takes samples of shape {tuple(shape)} ({want} values) but the recipe's data has "
                         f"samples of shape {tuple(x.shape[1:])}; pick a recipe whose data fits the model")
    return x.reshape(x.shape[0], *shape)


def _oracle_options(recipe) -> dict[str, Any]:
    from ..oracles.onnxruntime import ORTOracle

    options = recipe.section("oracle")
    path = options.get("path", "stacked")
    out = {"path": path if path == "auto" or path in ORTOracle.PATHS else "stacked"}
    if "max_stack_elems" in options:
        out["max_stack_elems"] = int(options["max_stack_elems"])
    return out


def build_onnx_trainer(onnx_model: str | Path, recipe, *, trainable: Sequence[str] | None = None,
                       data_path: str | None = None, out_dir=None, progress: bool = True):
    """A :class:`~edgezo.trainer.Trainer` over ``onnx_model`` with the recipe's data, loss and schedule.

    Returns ``(trainer, graphs)``; ``graphs`` is the
    :class:`~edgezo.export.trainable.TrainableOnnx` (names, shapes, initial values).
    """
    import numpy as np

    from ..data import load_dataset
    from ..export.trainable import make_trainable
    from ..oracles.onnxruntime import ORTOracle
    from ..params import layout_from_shapes
    from ..recipes import RecipeError, phases_of, train_config
    from ..trainer import DatasetBatches, Trainer, classification_evaluator

    if recipe.task not in ONNX_TASKS:
        raise RecipeError(f"--onnx trains a classifier on a recipe's data set; {recipe.name} has task {recipe.task!r} "
                          f"(use a recipe with task {' or '.join(ONNX_TASKS)}, e.g. digits-mlp)")
    source = Path(onnx_model)
    if not source.is_file():
        raise MissingFile(f"no ONNX model at {source}")
    data_spec = recipe.section("data")
    data = load_dataset(data_spec.pop("name", "digits"), data_path or data_spec.pop("path", None), **data_spec)
    loss = recipe.config.get("loss", "cross_entropy")
    try:
        graphs = make_trainable(source, loss=loss, num_classes=data.num_classes, trainable=trainable)
    except Exception as err:
        if isinstance(err, ValueError):
            raise
        raise ConfigError(f"{source} is not an ONNX model edgezo can train ({type(err).__name__}: {err})") from None
    config = train_config(recipe)
    x_train = _fit_inputs(data.x_train, graphs.input_shape, str(source))
    x_test = _fit_inputs(data.x_test, graphs.input_shape, str(source))
    layout = layout_from_shapes(graphs.shapes, recipe.config.get("groups"))
    theta = torch.from_numpy(np.concatenate([graphs.values[e.name].reshape(-1) for e in layout.entries]))
    oracle = ORTOracle(graphs.single.SerializeToString(), layout, {n: n for n in graphs.names}, theta,
                       stacked=graphs.stacked.SerializeToString(), **_oracle_options(recipe))
    batches = DatasetBatches(x_train, data.y_train, config.batch_size, config.seed)
    evaluator = classification_evaluator(x_test, data.y_test)
    trainer = Trainer(oracle, phases_of(recipe), batches, config, evaluator=evaluator, out_dir=out_dir,
                      progress=progress, info={"recipe": recipe.name, "dataset": data.name, "onnx": str(source),
                                               "trainable": list(graphs.names)})
    return trainer, graphs


def save_trained_onnx(trainer, graphs, source: str | Path, path: str | Path) -> Path:
    """Write ``source`` with its trainable initializers set to the trainer's θ (atomic)."""
    from ..export.trainable import write_trained

    values = {name: t.numpy() for name, t in trainer.oracle.layout.split(trainer.oracle.get_flat()).items()}
    write_trained(source, values, path)
    return Path(path)


def train_onnx(onnx_model: str | Path, recipe: str = "digits-mlp", *, out: str | Path,
               trainable: Sequence[str] | None = None, overrides: dict[str, Any] | None = None,
               data_path: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Train ``onnx_model`` with a recipe (name or .toml path); write ``out/model.onnx`` and return the metrics."""
    from ..recipes import apply_overrides, get_recipe

    spec = apply_overrides(get_recipe(recipe), overrides or {})
    trainer, graphs = build_onnx_trainer(onnx_model, spec, trainable=trainable, data_path=data_path, out_dir=out,
                                         progress=progress)
    metrics = trainer.run()
    metrics["onnx_out"] = str(save_trained_onnx(trainer, graphs, onnx_model, Path(out) / "model.onnx"))
    return metrics
