"""TVMOracle: the exported loss graph, compiled by Apache TVM (Relax), run by the Relax VM.

Compilation happens on the ahead-of-time side (:mod:`edgezo.export.tvm_compile`,
handed in as ``compiler``); this runtime keeps θ on the host as every
:class:`~edgezo.oracles.onnxruntime.GraphOracle` does, forms the perturbed
points on the host and passes them as inputs (TVM's importer has no random
operators; docs/methods/zo-basics.md).

Paths: ``"sequential"`` (one VM call per point) and ``"stacked"`` /
``"stacked-nt"`` (one call of the graph with a leading perturbation axis,
lowered two ways). Each executable is compiled on first use.

TVM is an optional extra: without it, constructing the oracle raises an
ImportError that says ``pip install edgezo[tvm]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..extras import TVM_INSTALL_HINT, import_tvm, tvm_available
from ..params import ParamLayout
from .onnxruntime import GraphOracle

__all__ = ["TVMOracle", "import_tvm", "tvm_available", "TVM_INSTALL_HINT"]

def _onnx_proto(model: Any):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    return onnx.load(str(model))


class TVMOracle(GraphOracle):
    """The loss graph compiled by TVM for the host (llvm) and run by the Relax VM.

    Args:
        model: the single-point ONNX graph (bytes, path or ModelProto).
        layout, param_inputs, theta: see :class:`~edgezo.oracles.onnxruntime.GraphOracle`.
        stacked: the graph with a leading perturbation axis (optional).
        compiler: ``compiler(proto, fuse_transpose=False) -> executable`` — the
            ahead-of-time side (:class:`edgezo.export.tvm_compile.HostCompiler`:
            llvm for this CPU); this runtime only loads and calls what it returns.

    Paths: ``"sequential"`` (single-point graph, one call per point),
    ``"stacked"`` and ``"stacked-nt"`` (the stacked graph compiled with and
    without fusing the weight transposes into the matmuls, see
    :func:`edgezo.export.tvm_compile.host_pipeline`). Each executable is compiled on first use.
    """

    backend = "tvm"
    PATHS = ("sequential", "stacked", "stacked-nt")

    def __init__(self, model: Any, layout: ParamLayout, param_inputs: Mapping[str, str], theta: torch.Tensor, *,
                 stacked: Any = None, compiler: Callable[..., Any], **options):
        super().__init__(layout, param_inputs, theta, **options)
        tvm = import_tvm()
        import onnx

        self._tvm = tvm
        self.device = tvm.cpu()
        self.compiler = compiler
        self._proto = _onnx_proto(model)
        self._stacked_proto = _onnx_proto(stacked) if stacked is not None else None
        self._order = _input_order(self._proto)
        need = {self.x_name, self.y_name, *self.param_inputs.values()}
        for proto, order in ((self._proto, self._order),
                             (self._stacked_proto, _input_order(self._stacked_proto) if stacked is not None else None)):
            if proto is not None and set(order) != need:
                raise ValueError(f"the graph's inputs {sorted(order)} do not match the data inputs and parameters "
                                 f"{sorted(need)}; export the model with edgezo.export.onnx.export_onnx")
        self._stacked_order = _input_order(self._stacked_proto) if stacked is not None else None
        y_info = next(i for i in self._proto.graph.input if i.name == self.y_name).type.tensor_type
        self._target_spec = (tuple(int(d.dim_value) for d in y_info.shape.dim[1:]),
                             np.dtype(onnx.helper.tensor_dtype_to_np_dtype(y_info.elem_type)))
        outputs = [o.name for o in self._proto.graph.output]
        self._out_index = {name: k for k, name in enumerate(outputs)}
        if self.loss_output not in self._out_index:
            raise ValueError(f"the graph has no output {self.loss_output!r} (outputs: {outputs})")
        self._functions: dict[str, Any] = {}
        self._theta_views: dict | None = None
        self._check_path()

    def _function(self, variant: str):
        """The VM's ``main`` of the single (``"single"``), ``"stacked"`` or ``"stacked-nt"`` executable."""
        if variant not in self._functions:
            from tvm import relax

            proto = self._proto if variant == "single" else self._stacked_proto
            ex = self.compiler(proto, fuse_transpose=variant == "stacked-nt")
            self._functions[variant] = relax.VirtualMachine(ex, self.device)["main"]
        return self._functions[variant]

    @property
    def has_stacked(self) -> bool:
        return self._stacked_proto is not None

    def available_paths(self) -> list[str]:
        return [p for p in self.PATHS if not p.startswith("stacked") or self.has_stacked]

    @property
    def target_spec(self):
        return self._target_spec

    def _tensor(self, a):
        """A TVM tensor sharing memory with ``a`` (DLPack); ``a`` is copied first unless it is an
        aligned, contiguous torch tensor (TVM requires 64-byte aligned data)."""
        t = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
        if not t.is_contiguous() or t.data_ptr() % 64:
            t = t.clone(memory_format=torch.contiguous_format)  # torch's CPU allocator aligns to 64 bytes
        return self._tvm.runtime.from_dlpack(t)

    def _call(self, fn, order, feed: dict):
        return fn(*[self._tensor(feed[name]) for name in order])

    def _theta_tensors(self) -> dict:
        """TVM views of θ's parameter slices, made once: θ is only ever updated in place."""
        if self._theta_views is None:
            views = {}
            for name, off, n, shape in self._slices:
                piece = self.theta[off : off + n].view(shape)
                views[name] = self._tvm.runtime.from_dlpack(piece) if piece.data_ptr() % 64 == 0 else None
            self._theta_views = views
        return self._theta_views

    def _outputs(self, flat, x, y, names):
        # θ itself (loss, predict): its cached views; any other vector: fresh tensors
        views = self._theta_tensors() if flat.ctypes.data == self.theta.data_ptr() else {}
        theta = torch.from_numpy(flat)
        feed = {self.x_name: self._tensor(x), self.y_name: self._tensor(y)}
        for name, off, n, shape in self._slices:
            feed[name] = views.get(name) or self._tensor(theta[off : off + n].view(shape))
        result = self._function("single")(*[feed[k] for k in self._order])
        return [result[self._out_index[n]].numpy() for n in names]

    def _run(self, path, blocks, x, y):
        loss_index = self._out_index[self.loss_output]
        if path.startswith("stacked"):
            result = self._call(self._function(path), self._stacked_order, {self.x_name: x, self.y_name: y, **blocks})
            return result[loss_index].numpy()
        main = self._function("single")
        tx, ty = self._tensor(x), self._tensor(y)
        n = next(iter(blocks.values())).shape[0]
        out = np.empty(n)
        for i in range(n):
            args = [tx if k == self.x_name else ty if k == self.y_name else self._tensor(blocks[k][i])
                    for k in self._order]
            out[i] = main(*args)[loss_index].numpy()
        return out


def _input_order(proto) -> list[str]:
    """Graph inputs that are not initializers, in order (the Relax function's parameters)."""
    inits = _initializer_names(proto)
    return [i.name for i in proto.graph.input if i.name not in inits]


def _initializer_names(proto) -> set[str]:
    return {i.name for i in proto.graph.initializer}
