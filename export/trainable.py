"""Make any ONNX classifier trainable with forward passes: chosen initializers become graph inputs.

A model brought as ONNX (``edgezo train --onnx model.onnx``) is an inference
graph ``input → logits`` with its weights as initializers. Forward-only
training needs the loss at arbitrary weights, so this module rewrites it with
onnx's own graph tools into the two graphs the ONNX Runtime oracle
(:class:`edgezo.oracles.onnxruntime.ORTOracle`) evaluates:

* ``single`` — inputs ``x``, ``y`` and every trainable initializer (now a graph
  input of the same name), outputs ``loss`` and ``logits``. The loss graph is
  the exporter's decomposed loss (:mod:`edgezo.export.onnx`: cross-entropy
  ``−mean_b Σ_c onehot(y_b)_c log_softmax(o_b)_c`` or ``mean((o − t)²)``),
  traced by torch and joined to the model with :func:`onnx.compose.merge_models`.
* ``stacked`` — the same inputs with a leading perturbation axis ``(q, *shape)``
  on every trainable input and output ``loss (q,)``: an ONNX ``Scan`` whose body
  is the single graph, so all q points of a zeroth-order step are one
  ``session.run`` (the loop runs inside the runtime).

Which initializers train: ``trainable`` fnmatch patterns over initializer names
(default: every float initializer with at least one dimension, except batch
norm running statistics — inputs 3 and 4 of ``BatchNormalization``).
"""

from __future__ import annotations

import fnmatch
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["TrainableOnnx", "make_trainable", "write_trained", "default_trainable"]

_FLOAT_TYPES = (1, 11)  # onnx.TensorProto.FLOAT, DOUBLE
_LOSS_PREFIX = "edgezo_loss_"


@dataclass
class TrainableOnnx:
    """The rewritten graphs and where each trainable initializer sits.

    ``names`` / ``shapes`` / ``values`` list the trainable initializers in graph
    order; ``input_shape`` is the model's input shape without the batch axis
    (None entries where the graph leaves a dimension free).
    """

    single: Any  # onnx.ModelProto
    stacked: Any  # onnx.ModelProto
    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    values: dict[str, np.ndarray]
    input_name: str
    output_name: str
    input_shape: tuple[int | None, ...]
    dtype: np.dtype


def _initializers(graph) -> dict[str, Any]:
    return {i.name: i for i in graph.initializer}


def default_trainable(graph) -> list[str]:
    """Float initializers with ndim ≥ 1 that are not batch-norm running statistics."""
    stats = {n.input[k] for n in graph.node if n.op_type == "BatchNormalization" for k in (3, 4) if k < len(n.input)}
    return [i.name for i in graph.initializer
            if i.data_type in _FLOAT_TYPES and len(i.dims) >= 1 and i.name not in stats]


def _select(graph, patterns: Sequence[str] | None) -> list[str]:
    inits = _initializers(graph)
    if not patterns:
        chosen = default_trainable(graph)
    else:
        chosen = [n for n in inits if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        unused = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in inits)]
        if unused:
            raise ConfigError(f"--trainable pattern(s) {unused} match no initializer; the model's initializers are: "
                             f"{', '.join(inits) or '(none)'}")
        not_float = [n for n in chosen if inits[n].data_type not in _FLOAT_TYPES]
        if not_float:
            raise ConfigError(f"initializers {not_float} are not float tensors and cannot be trained; "
                             "narrow --trainable")
    if not chosen:
        raise ConfigError("the ONNX model has no float initializers to train (are its weights graph inputs "
                         "already, or stored as Constant nodes?)")
    return chosen


def _data_io(graph) -> tuple[str, str, tuple[int | None, ...]]:
    inits = set(_initializers(graph))
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(graph.output) < 1:
        raise ConfigError(f"expected a classifier with one data input and an output (logits); the graph has inputs "
                         f"{[i.name for i in inputs]} and outputs {[o.name for o in graph.output]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in dims[1:])
    return inputs[0].name, graph.output[0].name, shape


def _loss_model(kind: str, num_classes: int | None, dtype: np.dtype, opset: int, ir_version: int):
    """The exporter's decomposed loss as its own ONNX model: inputs ``out``, ``y`` → ``loss``.

    ``y`` holds int64 class ids for cross-entropy, targets shaped like the
    output (and of its dtype) for mean squared error.
    """
    import onnx
    import torch

    from .onnx import _DecomposedLoss

    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    out = torch.zeros(2, num_classes or 1, dtype=torch_dtype)
    y = torch.zeros(2, dtype=torch.int64) if kind == "cross_entropy" else torch.zeros_like(out)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_DecomposedLoss(kind, num_classes), (out, y), buf, dynamo=False, input_names=["out", "y"],
                          output_names=["loss"], dynamic_axes={"out": {0: "batch"}, "y": {0: "batch"}},
                          opset_version=opset)
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = ir_version
    return proto


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)


def make_trainable(model: Any, *, loss: str = "cross_entropy", num_classes: int | None = None,
                   trainable: Sequence[str] | None = None) -> TrainableOnnx:
    """Rewrite an ONNX classifier (ModelProto, bytes or path) into trainable single and stacked graphs."""
    import onnx
    from onnx import helper, numpy_helper

    from .onnx import load_onnx

    base = onnx.shape_inference.infer_shapes(load_onnx(model))
    graph = base.graph
    x_name, out_name, input_shape = _data_io(graph)
    names = _select(graph, trainable)
    inits = _initializers(graph)
    values = {n: numpy_helper.to_array(inits[n]).copy() for n in names}
    dtypes = {v.dtype for v in values.values()}
    if len(dtypes) != 1:
        raise ConfigError(f"the trainable initializers mix dtypes {sorted(map(str, dtypes))}; "
                          "pick one with --trainable")
    dtype = dtypes.pop()

    promoted = onnx.ModelProto()
    promoted.CopyFrom(base)
    g = promoted.graph
    keep = [i for i in g.initializer if i.name not in set(names)]
    del g.initializer[:]
    g.initializer.extend(keep)
    g.input.extend(helper.make_tensor_value_info(n, inits[n].data_type, list(values[n].shape)) for n in names)
    for inp in g.input:  # the data input is called x, as in edgezo's own graphs
        if inp.name == x_name:
            inp.name = "x"
    for node in g.node:
        node.input[:] = ["x" if v == x_name else v for v in node.input]

    opset = _opset(base)
    if opset < 13:  # the loss graph needs opset 13 (ReduceSum with axes as an input)
        import onnx.version_converter

        promoted = onnx.version_converter.convert_version(promoted, 13)
        opset = 13
    loss_proto = _loss_model(loss, num_classes, dtype, opset, promoted.ir_version)
    merged = onnx.compose.merge_models(promoted, loss_proto, io_map=[(out_name, "out")],
                                       prefix2=_LOSS_PREFIX, outputs=[_LOSS_PREFIX + "loss", out_name])
    mg = merged.graph
    _rename(mg, {_LOSS_PREFIX + "y": "y", _LOSS_PREFIX + "loss": "loss", out_name: "logits"})
    onnx.checker.check_model(merged)
    stacked = _scan_over(merged, names, values)
    onnx.checker.check_model(stacked)
    return TrainableOnnx(single=merged, stacked=stacked, names=names,
                         shapes={n: tuple(values[n].shape) for n in names}, values=values, input_name=x_name,
                         output_name=out_name, input_shape=input_shape, dtype=np.dtype(dtype))


def _rename(graph, mapping: dict[str, str]) -> None:
    """Rename values everywhere in ``graph`` (inputs, outputs, node inputs/outputs)."""
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name in mapping:
            vi.name = mapping[vi.name]
    for node in graph.node:
        node.input[:] = [mapping.get(v, v) for v in node.input]
        node.output[:] = [mapping.get(v, v) for v in node.output]


def _scan_over(single, names: list[str], values: dict[str, np.ndarray]):
    """The stacked graph: a ``Scan`` over the leading q axis of every trainable input, body = ``single``.

    The stacked graph keeps the single graph's input names (each trainable input
    now ``(q, *shape)``). The body is a copy of the single graph whose trainable
    inputs are renamed ``<name>__point`` (one slice each, no shadowing of the
    outer names); it reads ``x``, ``y`` and the frozen initializers from the
    outer scope, and its ``loss`` is collected into ``loss (q,)``.
    """
    from onnx import GraphProto, helper

    sg = single.graph
    body = GraphProto()
    body.CopyFrom(sg)
    body.name = "edgezo_point"
    _rename(body, {**{n: f"{n}__point" for n in names}, "loss": "point_loss"})
    trainable = {f"{n}__point" for n in names}
    kept_inputs = [vi for vi in body.input if vi.name in trainable]
    del body.input[:]
    body.input.extend(kept_inputs)
    loss_out = next(o for o in body.output if o.name == "point_loss")
    elem = loss_out.type.tensor_type.elem_type
    del body.output[:]
    body.output.extend([helper.make_tensor_value_info("point_loss", elem, [])])
    del body.initializer[:]
    del body.value_info[:]
    outer_inputs = []
    for vi in sg.input:
        if vi.name in set(names):
            outer_inputs.append(helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type,
                                                              ["q", *values[vi.name].shape]))
        else:
            outer_inputs.append(vi)
    scan = helper.make_node("Scan", list(names), ["loss"], num_scan_inputs=len(names), body=body)
    graph = helper.make_graph([scan], "edgezo_stacked", outer_inputs,
                              [helper.make_tensor_value_info("loss", elem, ["q"])], initializer=list(sg.initializer))
    model = helper.make_model(graph, opset_imports=list(single.opset_import), producer_name="edgezo")
    model.ir_version = single.ir_version
    return model


def write_trained(original: Any, values: dict[str, np.ndarray], path) -> None:
    """Write ``original`` with the named initializers replaced by ``values``, atomically, as a plain ONNX model."""
    import onnx
    from onnx import numpy_helper

    from edgezo import io as eio

    from .onnx import load_onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(load_onnx(original))
    inits = _initializers(proto.graph)
    for name, value in values.items():
        old = inits[name]
        arr = np.asarray(value, dtype=numpy_helper.to_array(old).dtype).reshape(tuple(old.dims))
        old.CopyFrom(numpy_helper.from_array(arr, name))
    onnx.checker.check_model(proto)
    eio.write_bytes(path, proto.SerializeToString())
