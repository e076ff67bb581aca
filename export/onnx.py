"""ONNX export of a model's forward *and loss*, every trainable parameter a graph input.

A forward-only trainer needs nothing but a loss function it can evaluate at
arbitrary parameters, so the exported graph takes the parameters as inputs
instead of baking them in as initializers::

    inputs:  x (B, *input_shape), y (B,) int64 class ids | (B, ...) targets,
             one input per trainable parameter (names are valid C identifiers)
    outputs: loss () — the batch mean — and logits (B, ...)

Two graphs are produced:

* ``model`` — one parameter point, traced from the model's own ``forward``;
* ``stacked`` (models with ``forward_stacked``) — q parameter points at once:
  every parameter input carries a leading perturbation axis, shape
  ``(q, *shape)``; outputs ``loss (q,)`` and ``logits (q, B, ...)``. One run
  of this graph evaluates all q queries of a ZO step (the same trick as the
  TorchOracle's stacked path, inside ONNX Runtime or TVM).

The loss is exported *decomposed*: cross-entropy as
``−mean_b Σ_c onehot(y_b)_c · log_softmax(o_b)_c`` with the one-hot formed by
comparing ``y`` with a constant ``arange(C)``, because TVM's ONNX importer has
no ``SoftmaxCrossEntropyLoss`` (docs/methods/zo-basics.md, "Forward-only backends"); mean squared error as
``mean((o − t)²)``. Both equal :mod:`edgezo.losses` to float rounding.

Directions are never part of the graph (the importers have no random
operators); the runtime around the graph adds them to the parameters.

Export uses PyTorch's TorchScript-based exporter (``dynamo=False``), which
needs no extra package; it runs the model in eval mode.
"""

from __future__ import annotations

import io
import keyword
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgezo.models.protocols import StackedForward
from torch import nn

from edgezo.errors import ConfigError
from edgezo.params import GroupSpec, ParamLayout, ParamSpace

__all__ = ["OnnxExport", "export_onnx", "c_identifier", "LOSSES", "DATA_INPUTS", "OUTPUTS", "DEFAULT_OPSET",
           "load_onnx"]

LOSSES = ("cross_entropy", "mse")
DATA_INPUTS = ("x", "y")
OUTPUTS = ("loss", "logits")
DEFAULT_OPSET = 17
_RESERVED = set(DATA_INPUTS) | set(OUTPUTS)


def c_identifier(name: str, taken: set[str] | None = None) -> str:
    """``name`` as a valid, unused C identifier: ``layers.0.weight`` → ``layers_0_weight``.

    Characters outside ``[A-Za-z0-9_]`` become ``_``; a leading digit, a C or
    Python keyword or a data/output name gets a ``p_`` prefix; a clash with
    ``taken`` gets a numeric suffix. The result is added to ``taken``.
    """
    taken = set() if taken is None else taken
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name) or "p"
    if ident[0].isdigit() or keyword.iskeyword(ident) or ident in _C_KEYWORDS or ident in _RESERVED:
        ident = "p_" + ident
    base, k = ident, 1
    while ident in taken:
        ident = f"{base}_{k}"
        k += 1
    taken.add(ident)
    return ident


_C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "_Bool",
}


class _DecomposedLoss(nn.Module):
    """The batch-mean loss over a leading perturbation axis, in ONNX ops TVM imports."""

    def __init__(self, kind: str, num_classes: int | None):
        super().__init__()
        if kind not in LOSSES:
            raise ConfigError(f"cannot export the loss {kind!r}; exportable losses: {', '.join(LOSSES)}")
        self.kind = kind
        if kind == "cross_entropy":
            self.register_buffer("classes", torch.arange(int(num_classes)), persistent=False)

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "cross_entropy":
            logp = torch.log_softmax(out, dim=-1)
            onehot = (y.unsqueeze(-1) == self.classes).to(out.dtype)
            return -(logp * onehot).sum(-1).mean(-1)
        err = out - y
        return (err * err).flatten(start_dim=out.dim() - y.dim() + 1).mean(-1).mean(-1)


class _Single(nn.Module):
    def __init__(self, model: nn.Module, loss: _DecomposedLoss):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, x, y):
        out = self.model(x)
        return self.loss(out, y), out


class _Stacked(nn.Module):
    def __init__(self, model: nn.Module, loss: _DecomposedLoss, names: Sequence[str]):
        super().__init__()
        self.model, self.loss, self.names = model, loss, list(names)

    def forward(self, x, y, *params):
        out = self.model.forward_stacked(dict(zip(self.names, params)), x)
        return self.loss(out, y), out


@dataclass
class OnnxExport:
    """The exported graphs and how their inputs map onto the engine's flat θ.

    ``param_inputs`` maps each trainable parameter (torch name, flat order of
    ``layout``) to its ONNX input name.
    """

    model: Any  # onnx.ModelProto
    stacked: Any | None  # onnx.ModelProto with a leading q axis, or None
    layout: ParamLayout
    param_inputs: dict[str, str]
    loss: str
    input_shape: tuple[int, ...]
    input_dtype: str
    target_shape: tuple[int, ...]
    target_dtype: str
    output_shape: tuple[int, ...]
    opset: int = DEFAULT_OPSET
    info: dict = field(default_factory=dict)

    def model_bytes(self) -> bytes:
        return self.model.SerializeToString()

    def stacked_bytes(self) -> bytes | None:
        return None if self.stacked is None else self.stacked.SerializeToString()

    def feed(self, theta: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """``{onnx input name: array}`` for a flat vector ``(dim,)`` or a block ``(q, dim)`` (stacked graph)."""
        flat = torch.as_tensor(theta).detach().cpu()
        return {self.param_inputs[k]: v.contiguous().numpy() for k, v in self.layout.split(flat).items()}

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``model.onnx`` (and ``model_stacked.onnx``) atomically; return the paths."""
        from edgezo import io as eio

        out = Path(out_dir)
        paths = {"model": out / "model.onnx"}
        eio.write_bytes(paths["model"], self.model_bytes())
        if self.stacked is not None:
            paths["stacked"] = out / "model_stacked.onnx"
            eio.write_bytes(paths["stacked"], self.stacked_bytes())
        return paths


def load_onnx(model: Any):
    """An ``onnx.ModelProto`` from a ModelProto, serialized bytes or a path."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    return onnx.load(str(model))


def _trace(module: nn.Module, args: tuple, input_names: list[str], dynamic_axes: dict, opset: int,
           keep_initializers: bool):
    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo (which needs onnxscript)
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, input_names=input_names, output_names=list(OUTPUTS),
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=False,
                          keep_initializers_as_inputs=keep_initializers)
    return onnx.load_from_string(buf.getvalue())


def _value_info(name: str, tensor: torch.Tensor, lead: Sequence[str] = ()):
    from onnx import helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(str(tensor.dtype).replace("torch.", "")))
    return helper.make_tensor_value_info(name, elem, [*lead, *tensor.shape])


def _rename_params(proto, mapping: dict[str, str], params: dict[str, torch.Tensor], lead: Sequence[str] = ()):
    """Turn exported parameter initializers into plain, C-named graph inputs."""
    graph = proto.graph
    init_names = {i.name for i in graph.initializer}
    keep = [i for i in graph.initializer if i.name not in mapping]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    present = {i.name for i in graph.input}
    for inp in graph.input:
        if inp.name in mapping:
            inp.name = mapping[inp.name]
    for node in graph.node:
        for k, v in enumerate(node.input):
            if v in mapping:
                node.input[k] = mapping[v]
    # a parameter the forward never reads still gets its input (the contract: every parameter is an input)
    for exported, ident in mapping.items():
        if exported not in present and exported not in init_names:
            graph.input.append(_value_info(ident, params[exported], lead))


def _export_stacked(model: nn.Module, loss_mod, batch, names, params, param_inputs, opset: int, *, auto: bool,
                    info: dict):
    """The graph with a leading perturbation axis q on every parameter (None when ``auto`` and it does not trace)."""
    x, y = batch
    stacked_proto = None
    q_axes = {"x": {0: "batch"}, "y": {0: "batch"}, "logits": {0: "q", 1: "batch"}, "loss": {0: "q"}}
    q_axes.update({param_inputs[n]: {0: "q"} for n in names})
    example = tuple(params[n].unsqueeze(0).expand(2, *params[n].shape).contiguous() for n in names)
    try:
        stacked_proto = _trace(_Stacked(model, loss_mod, names), (x, y, *example),
                               list(DATA_INPUTS) + [param_inputs[n] for n in names], q_axes, opset, False)
    except Exception as err:
        if not auto:
            raise ValueError(f"could not export {type(model).__name__}.forward_stacked to ONNX "
                             f"({type(err).__name__}: {err}); export with stacked=False") from err
        info["stacked_skipped"] = f"forward_stacked did not trace ({type(err).__name__}: {err})"
    if stacked_proto is not None:
        missing = set(param_inputs.values()) - {i.name for i in stacked_proto.graph.input}
        for n in names:
            if param_inputs[n] in missing:
                stacked_proto.graph.input.append(_value_info(param_inputs[n], params[n], ("q",)))
    return stacked_proto


def _finish(proto, check: bool) -> None:
    """Stamp the producer, run the ONNX checker and insist on C-identifier input names."""
    import onnx

    proto.producer_name = "edgezo"
    if check:
        onnx.checker.check_model(proto, full_check=True)
    inputs = [i.name for i in proto.graph.input]
    bad = [n for n in inputs if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
    if bad:
        raise ValueError(f"exported graph has input names that are not C identifiers: {bad}")


def export_onnx(model: nn.Module, example_batch: Sequence[torch.Tensor], *, loss: str = "cross_entropy",
                groups: GroupSpec = None, stacked: bool | None = None, opset: int = DEFAULT_OPSET,
                check: bool = True) -> OnnxExport:
    """Export ``model``'s forward and ``loss`` with the trainable parameters as graph inputs.

    Args:
        model: a torch module (float32 or float64); it is not modified.
        example_batch: ``(x, y)`` giving the input and target shapes/dtypes
            (the batch dimension is exported as dynamic).
        loss: ``"cross_entropy"`` (y: int64 class ids) or ``"mse"``.
        groups: the parameter grouping of the engine's :class:`ParamSpace`
            (fixes the flat order recorded in ``layout``).
        stacked: also export the graph with a leading perturbation axis
            (None: when the model has ``forward_stacked``).
        check: run ``onnx.checker.check_model(full_check=True)`` on both graphs.
    """

    x, y = example_batch[0], example_batch[1]
    space = ParamSpace(model, groups)
    layout = space.layout
    taken: set[str] = set()
    param_inputs = {e.name: c_identifier(e.name, taken) for e in layout.entries}
    names = [e.name for e in layout.entries]
    params = {n: p.detach() for n, p in space.named_parameters()}

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
        if loss == "cross_entropy":
            if y.dtype != torch.int64:
                raise ValueError(f"cross_entropy export needs int64 class ids as y, got {y.dtype}")
            num_classes = int(out.shape[-1])
        else:
            num_classes = None
        loss_mod = _DecomposedLoss(loss, num_classes)
        batch_axes = {"x": {0: "batch"}, "y": {0: "batch"}, "logits": {0: "batch"}}
        try:
            single = _trace(_Single(model, loss_mod), (x, y), list(DATA_INPUTS), batch_axes, opset, True)
        except Exception as err:
            raise ValueError(f"could not export {type(model).__name__} to ONNX: tracing its forward failed "
                             f"({type(err).__name__}: {err}). The exporter traces forward() once; code that "
                             "branches on tensor shapes or values does not trace (for TT layers use "
                             "mode='dense')") from err
        _rename_params(single, {f"model.{n}": param_inputs[n] for n in names},
                       {f"model.{n}": params[n] for n in names})
        stacked_proto = None
        info = {}
        auto = stacked is None
        if auto:
            stacked = isinstance(model, StackedForward)
        if stacked:
            if not isinstance(model, StackedForward):
                raise ValueError(f"{type(model).__name__} has no forward_stacked(); export with stacked=False")
            stacked_proto = _export_stacked(model, loss_mod, (x, y), names, params, param_inputs, opset,
                                            auto=auto, info=info)
    finally:
        model.train(was_training)

    for proto in (single, stacked_proto):
        if proto is not None:
            _finish(proto, check)
    return OnnxExport(
        model=single, stacked=stacked_proto, layout=layout, param_inputs=param_inputs, loss=loss,
        input_shape=tuple(int(d) for d in x.shape[1:]), input_dtype=str(x.dtype).replace("torch.", ""),
        target_shape=tuple(int(d) for d in y.shape[1:]), target_dtype=str(y.dtype).replace("torch.", ""),
        output_shape=tuple(int(d) for d in out.shape[1:]), opset=opset, info=info)
