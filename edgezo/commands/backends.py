"""Oracle backends for ``edgezo train --backend X`` (registered in ``edgezo.cli.BACKENDS``).

Each ``<x>_factory(recipe)`` returns
``oracle_factory(model, loss_fn, *, groups, example_batch, **options) -> Oracle``:

* ``onnxruntime`` / ``tvm`` — export the model's forward and loss to ONNX
  (``edgezo.export.onnx``) and train through an ONNX Runtime session or a
  TVM-compiled module (:class:`~edgezo.oracles.onnxruntime.ORTOracle`,
  :class:`~edgezo.oracles.tvm.TVMOracle`);
* ``int8`` / ``photonic`` — the torch model evaluated on a simulated target
  datapath (``edgezo.targets.numerics.SimulatedForward`` with the
  ``fpga-int8`` or ``photonic-noisy`` profile). Zeroth-order training runs
  straight through the non-differentiable forward: the estimator only ever
  asks for losses, so no straight-through gradient is involved.

This module is CLI wiring: the engine never imports ``edgezo.export`` or
``edgezo.targets``.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..losses import LOSSES
from ..oracle import OracleError
from ..oracles.torch_oracle import TorchOracle
from edgezo.errors import ConfigError

__all__ = ["onnxruntime_factory", "tvm_factory", "int8_factory", "photonic_factory", "SimulatedOracle",
           "graph_oracle", "simulated_oracle"]


def _loss_name(loss_fn, recipe=None) -> str:
    for name, fn in LOSSES.items():
        if fn is loss_fn:
            return name
    if recipe is not None:
        return recipe.config.get("loss", "cross_entropy")
    raise ConfigError(f"cannot export the loss function {getattr(loss_fn, '__name__', loss_fn)!r}; "
                     f"exportable losses: {', '.join(LOSSES)}")


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
    from ..export.onnx import export_onnx

    if example_batch is None:
        raise ConfigError(f"the {backend} backend needs an example batch to export the model")
    if backend == "tvm":  # fail before exporting when the extra is missing
        from ..oracles.tvm import import_tvm

        import_tvm()
    cpu_model = copy.deepcopy(model).cpu()
    batch = tuple(t.detach().cpu() for t in example_batch[:2])
    exported = export_onnx(cpu_model, batch, loss=loss or _loss_name(loss_fn), groups=groups)
    theta = torch.cat([p.detach().reshape(-1) for p in _flat_params(cpu_model, exported.layout)])
    if backend == "onnxruntime":
        from ..oracles.onnxruntime import ORTOracle

        return ORTOracle(exported.model_bytes(), exported.layout, exported.param_inputs, theta,
                         stacked=exported.stacked_bytes(), **_graph_options(options, ORTOracle.PATHS))
    if backend == "tvm":
        from ..oracles.tvm import TVMOracle

        return TVMOracle(exported.model, exported.layout, exported.param_inputs, theta, stacked=exported.stacked,
                         **_graph_options(options, TVMOracle.PATHS))
    raise ConfigError(f"unknown graph backend {backend!r}")


def _flat_params(model: torch.nn.Module, layout):
    params = dict(model.named_parameters())
    return [params[e.name] for e in layout.entries]


def onnxruntime_factory(recipe) -> Callable[..., Any]:
    """``--backend onnxruntime``: train through ONNX Runtime sessions."""

    def factory(model, loss_fn, *, groups=None, example_batch=None, **options):
        return graph_oracle("onnxruntime", model, loss_fn, groups=groups, example_batch=example_batch,
                            loss=_loss_name(loss_fn, recipe), **options)

    return factory


def tvm_factory(recipe) -> Callable[..., Any]:
    """``--backend tvm``: train through a TVM (Relax, llvm) compiled module."""
    from ..oracles.tvm import import_tvm

    import_tvm()  # a clear "pip install edgezo[tvm]" before any data is loaded

    def factory(model, loss_fn, *, groups=None, example_batch=None, **options):
        return graph_oracle("tvm", model, loss_fn, groups=groups, example_batch=example_batch,
                            loss=_loss_name(loss_fn, recipe), **options)

    return factory


class SimulatedOracle(TorchOracle):
    """A TorchOracle over ``SimulatedForward(model, profile)``: losses on a target's datapath.

    Every loss and prediction is computed the way the target computes it (int8
    weights/activations with int32 accumulation, or noisy analog MACs); the
    parameters stay float32 master copies on the host, which is what the
    optimizer steps. Evaluation is one simulated forward per point (the
    simulator quantizes each parameter set separately). For a noisy profile
    the noise generator's state is part of :meth:`state_dict`, so a resumed
    run draws the same noise.
    """

    def __init__(self, simulated, loss_fn, *, backend: str, groups=None, **options):
        options.pop("path", None)
        super().__init__(simulated, loss_fn, groups=_prefixed(groups), path="loop", **options)
        self.backend = backend
        self.profile = simulated.profile

    def autograd(self, batch):
        raise OracleError(f"the {self.backend} backend simulates a non-differentiable datapath "
                          f"({self.profile.name}); train it with a zeroth-order estimator, not fo")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        gen = self.model.generator
        if gen is not None:
            state["generator"] = gen.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" in state and self.model.generator is not None:
            self.model.generator.set_state(state["generator"])


def _prefixed(groups):
    """Group patterns of the bare model, applied to the wrapper's ``model.`` parameter names."""
    if groups is None or isinstance(groups, str):
        return groups
    return {g: ([f"model.{p}" for p in pats] if not isinstance(pats, str) else f"model.{pats}")
            for g, pats in groups.items()}


def simulated_oracle(profile: str, backend: str, model, loss_fn, *, groups=None, seed: int = 0, **options):
    """A :class:`SimulatedOracle` of ``model`` on ``profile`` (noise seeded by ``seed``)."""
    from ..targets.numerics import SimulatedForward
    from ..targets.profile import load_profile

    prof = load_profile(profile)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed)) if prof.has_noise else None
    return SimulatedOracle(SimulatedForward(model, prof, generator=generator), loss_fn, backend=backend,
                           groups=groups, **options)


def _simulated_factory(profile: str, backend: str, recipe) -> Callable[..., Any]:
    seed = int(recipe.config.get("train", {}).get("seed", 0)) if recipe is not None else 0

    def factory(model, loss_fn, *, groups=None, example_batch=None, **options):
        return simulated_oracle(profile, backend, model, loss_fn, groups=groups, seed=seed, **options)

    return factory


def int8_factory(recipe) -> Callable[..., Any]:
    """``--backend int8``: losses on the ``fpga-int8`` integer datapath (int8 weights, Q3.4 activations)."""
    return _simulated_factory("fpga-int8", "int8", recipe)


def photonic_factory(recipe) -> Callable[..., Any]:
    """``--backend photonic``: losses with the ``photonic-noisy`` multiplicative MAC noise."""
    return _simulated_factory("photonic-noisy", "photonic", recipe)
