"""Graph backends for ``--backend onnxruntime|tvm`` (entry points ``edgezo.backends``).

Each ``<x>_factory(recipe)`` returns
``oracle_factory(model, loss_fn, *, groups, example_batch, **options) -> Oracle``:
the model's forward and loss are exported ahead of time to ONNX
(:mod:`edgezo.export.onnx`) and handed to a runtime in ``oracles/``
(:class:`~edgezo.oracles.onnxruntime.ORTOracle` or
:class:`~edgezo.oracles.tvm.TVMOracle`). The registry in
:mod:`edgezo.oracles.backends` finds these factories through the package's
entry points, so the engine never imports this module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError
from ..losses import LOSSES

__all__ = ["onnxruntime_factory", "tvm_factory", "graph_oracle", "loss_name"]


def loss_name(loss_fn, recipe=None) -> str:
    for name in LOSSES.available():
        if LOSSES.get(name) is loss_fn:
            return name
    if recipe is not None:
        return recipe.config.get("loss", "cross_entropy")
    raise ConfigError(f"cannot export the loss function {getattr(loss_fn, '__name__', loss_fn)!r}; "
                     f"exportable losses: {', '.join(LOSSES.available())}")


def _graph_options(options: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The recipe's ``[oracle]`` options that a graph oracle understands."""
    out = {}
    if "max_stack_elems" in options:
        out["max_stack_elems"] = options["max_stack_elems"]
    path = options.get("path", "auto")
    if path == "auto" or path in paths:
        out["path"] = path
    return out


def graph_oracle(backend: str, model: torch.nn.Module, loss_fn, *, groups=None, example_batch=None, loss=None,
                 **options):
    """Export ``model`` (a CPU copy) and build the ORT or TVM oracle over it."""
    from .onnx import export_onnx

    if example_batch is None:
        raise ConfigError(f"the {backend} backend needs an example batch to export the model")
    if backend == "tvm":  # fail before exporting when the extra is missing
        from edgezo.extras import import_tvm

        import_tvm()
    cpu_model = copy.deepcopy(model).cpu()
    batch = tuple(t.detach().cpu() for t in example_batch[:2])
    exported = export_onnx(cpu_model, batch, loss=loss or loss_name(loss_fn), groups=groups)
    theta = torch.cat([p.detach().reshape(-1) for p in _flat_params(cpu_model, exported.layout)])
    if backend == "onnxruntime":
        from ..oracles.onnxruntime import ORTOracle

        return ORTOracle(exported.model_bytes(), exported.layout, exported.param_inputs, theta,
                         stacked=exported.stacked_bytes(), **_graph_options(options, ORTOracle.PATHS))
    if backend == "tvm":
        from ..oracles.tvm import TVMOracle
        from .tvm_compile import HostCompiler

        return TVMOracle(exported.model, exported.layout, exported.param_inputs, theta, stacked=exported.stacked,
                         compiler=HostCompiler(), **_graph_options(options, TVMOracle.PATHS))
    raise ConfigError(f"unknown graph backend {backend!r}")


def _flat_params(model: torch.nn.Module, layout):
    params = dict(model.named_parameters())
    return [params[e.name] for e in layout.entries]


def onnxruntime_factory(recipe) -> Callable[..., Any]:
    """``--backend onnxruntime``: train through ONNX Runtime sessions."""

    def factory(model, loss_fn, *, groups=None, example_batch=None, **options):
        return graph_oracle("onnxruntime", model, loss_fn, groups=groups, example_batch=example_batch,
                            loss=loss_name(loss_fn, recipe), **options)

    return factory


def tvm_factory(recipe) -> Callable[..., Any]:
    """``--backend tvm``: train through a TVM (Relax, llvm) compiled module."""
    from edgezo.extras import import_tvm

    import_tvm()  # a clear "pip install edgezo[tvm]" before any data is loaded

    def factory(model, loss_fn, *, groups=None, example_batch=None, **options):
        return graph_oracle("tvm", model, loss_fn, groups=groups, example_batch=example_batch,
                            loss=loss_name(loss_fn, recipe), **options)

    return factory
