"""TVMOracle: the exported loss graph compiled by Apache TVM (Relax) for the host CPU.

The ONNX graph of ``edgezo.export.onnx`` is imported with
``tvm.relax.frontend.onnx.from_onnx(model, keep_params_in_input=True)`` — so the
parameters stay function inputs — compiled with ``tvm.compile(mod,
target={"kind": "llvm", "mcpu": <this CPU>})`` (:func:`host_target`; the plain
``"llvm"`` target is generic x86-64 without AVX and ran the default recipe's
CGE step in 74 ms instead of 45 ms at batch 64 on an AVX-512 Xeon) and run by
the Relax virtual machine. θ lives on the host as in every :class:`~edgezo.oracles.onnxruntime.GraphOracle`; the perturbed
points are formed on the host and passed as inputs (TVM's importer has no
random operators, METHODS.md §6).

Paths: ``"sequential"`` (one VM call per point) and ``"stacked"`` /
``"stacked-nt"`` (one call of the graph with a leading perturbation axis,
lowered two ways). Kernels get a simple CPU schedule (:func:`host_pipeline`).
Shapes stay symbolic (batch, q), so each graph compiles once per process
(executables are cached by the hash of the ONNX bytes).

TVM is an optional extra: without it, constructing the oracle raises an
ImportError that says ``pip install edgezo[tvm]``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np
import torch

from ..params import ParamLayout
from .onnxruntime import GraphOracle
from edgezo.errors import MissingDependency

__all__ = ["TVMOracle", "host_target", "import_tvm", "tvm_available", "TVM_INSTALL_HINT", "compile_onnx"]

TVM_INSTALL_HINT = "pip install edgezo[tvm]  (Apache TVM >= 0.20 with Relax, e.g. apache-tvm 0.27)"


def tvm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tvm") is not None


def import_tvm():
    """``import tvm`` (with Relax), or an ImportError naming the extra to install."""
    try:
        import tvm
        from tvm import relax  # noqa: F401
        from tvm.relax.frontend.onnx import from_onnx  # noqa: F401
    except ImportError as err:
        raise MissingDependency(f"the TVM backend needs Apache TVM with Relax, which is not installed ({err}); "
                          f"install it with: {TVM_INSTALL_HINT}") from None
    return tvm


def _onnx_proto(model: Any):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    return onnx.load(str(model))


def _matmul_like_block(func, target):
    """(schedule, block infos, the reduction block) of a host kernel with one trailing reduction, else None."""
    from tvm import s_tir, tirx
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline_contiguous_spatial

    if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
        return None
    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if infos is None or sum(b.is_reduction() for b in infos) != 1:
        return None
    infos = try_inline_contiguous_spatial(sch, infos)
    main = next(b for b in infos if b.is_reduction())
    kinds = main.dom_kind()
    if len(kinds) < 3 or kinds[-1] != "R" or "R" in kinds[:-1]:
        return None
    return sch, infos, main


def _attach_consumers(sch, infos, main, loop) -> None:
    for b in infos:
        if b is not main:
            try:
                sch.reverse_compute_at(b.block_rv, loop)
            except Exception:  # a consumer that cannot move stays a separate loop nest
                pass


def _matmul_rule():
    """A CPU schedule for (batched) matmul-like kernels: vectorized inner axis, parallel outer axis.

    TVM's default CPU lowering of ``C[..., i, j] = Σ_k A[..., i, k] B[..., k, j]``
    keeps the reduction innermost, which LLVM cannot vectorize without
    reassociating float sums. This rule inlines the elementwise producers and
    consumers (bias add, ReLU, …), moves the reduction loop outside the last
    spatial loop ``j`` (contiguous in ``B`` and ``C``), vectorizes ``j`` and
    runs the outermost spatial loop (the perturbation axis q) in parallel.
    Summation order per output is unchanged (k ascending), so results equal
    the unscheduled kernel's bit for bit.
    """
    from tvm.s_tir.dlight.base import ScheduleRule, get_extent

    class MatmulCPU(ScheduleRule):
        def apply(self, func, target, tunable):
            found = _matmul_like_block(func, target)
            if found is None:
                return None
            sch, infos, main = found
            *outer, inner, red = sch.get_loops(main.block_rv)
            extent = get_extent(sch, inner)
            if not isinstance(extent, int) or extent < 2:
                return None
            sch.reorder(red, inner)
            _attach_consumers(sch, infos, main, outer[-1])
            sch.parallel(outer[0])
            sch.vectorize(inner)
            sch.decompose_reduction(main.block_rv, red)
            return sch

    return MatmulCPU()


def _dot_rule():
    """A CPU schedule for ``C[..., n] = Σ_k A[..., k] W[..., n, k]`` (a matmul fused with its weight transpose).

    Both operands are contiguous along the reduction axis k, so k is split
    into 8 vector lanes that accumulate partial sums (``rfactor``) and are
    added at the end; the outermost spatial axis (q) runs in parallel. The
    summation order differs from the unscheduled kernel (partial sums of 8
    lanes), so results agree to float rounding, not bit for bit.
    """
    from tvm.s_tir.dlight.base import ScheduleRule, get_extent

    lanes = 8

    class DotCPU(ScheduleRule):
        def apply(self, func, target, tunable):
            found = _matmul_like_block(func, target)
            if found is None:
                return None
            sch, infos, main = found
            if "NT_matmul" not in sch.get(main.block_rv).name_hint:
                return None
            *outer, _inner, red = sch.get_loops(main.block_rv)
            extent = get_extent(sch, red)
            if not isinstance(extent, int) or extent % lanes:
                return None
            _, lane = sch.split(red, factors=[None, lanes])
            rf = sch.rfactor(lane, factor_axis=len(outer) + 1)
            rf_loops = sch.get_loops(rf)
            sch.vectorize(rf_loops[-1])
            sch.decompose_reduction(rf, rf_loops[-2])
            _attach_consumers(sch, infos, main, outer[-1])
            sch.parallel(outer[0])
            return sch

    return DotCPU()


def host_pipeline(target, *, fuse_transpose: bool = False):
    """Relax's default CPU pipeline plus :func:`_matmul_rule` and dlight's CPU reduction rule.

    ``fuse_transpose`` first rewrites ``matmul(A, permute_dims(W))`` into one
    kernel reading ``W`` in place (Relax's ``FuseTransposeMatmul``, scheduled
    by :func:`_dot_rule`): no transposed copy of the stacked weights — faster
    at small batches, slower at large ones, so the oracle times both.
    """
    tvm = import_tvm()
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    from tvm.s_tir import dlight

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod, _ctx):
        with target:
            if fuse_transpose:
                mod = relax.transform.FuseTransposeMatmul()(mod)
            mod = tvm.transform.Sequential(cpu.library_dispatch_passes(target) + cpu.legalize_passes(target))(mod)
            rules = ([_dot_rule()] if fuse_transpose else []) + [_matmul_rule(), dlight.cpu.Reduction()]
            mod = dlight.ApplyDefaultSchedule(*rules)(mod)
            mod = tvm.transform.Sequential(cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target))(mod)
        return mod

    return _pipeline


_EXECUTABLES: dict[tuple, Any] = {}


def host_target() -> dict:
    """This machine's CPU as a TVM llvm target (``mcpu`` = LLVM's host CPU name, so AVX2/AVX-512 are used)."""
    tvm = import_tvm()
    return {"kind": "llvm", "mcpu": str(tvm.target.codegen.llvm_get_system_cpu())}


def compile_onnx(model: Any, target: Any = "llvm", shape_dict: Mapping[str, list] | None = None, *,
                 schedule: bool = True, fuse_transpose: bool = False):
    """Import an ONNX graph (parameters kept as inputs) and compile it for ``target``.

    ``schedule`` applies :func:`host_pipeline` (host CPU targets only; cross
    targets and C source keep TVM's default lowering, which needs no thread
    pool). Executables are cached per process by (ONNX bytes, target, shapes,
    options).
    """
    tvm = import_tvm()
    from tvm.relax.frontend.onnx import from_onnx

    proto = _onnx_proto(model)
    key = (hashlib.sha256(proto.SerializeToString()).hexdigest(), repr(target),
           repr(sorted((shape_dict or {}).items())), schedule, fuse_transpose)
    if key in _EXECUTABLES:
        return _EXECUTABLES[key]
    mod = from_onnx(proto, shape_dict=dict(shape_dict) if shape_dict else None, keep_params_in_input=True)
    tgt = tvm.target.Target(target)
    host = tgt.kind.name == "llvm" and "mtriple" not in (target if isinstance(target, dict) else {})
    if schedule and host:
        ex = tvm.compile(mod, target=tgt, relax_pipeline=host_pipeline(tgt, fuse_transpose=fuse_transpose))
    else:
        ex = tvm.compile(mod, target=tgt)
    _EXECUTABLES[key] = ex
    return ex


class TVMOracle(GraphOracle):
    """The loss graph compiled by TVM for the host (llvm) and run by the Relax VM.

    Args:
        model: the single-point ONNX graph (bytes, path or ModelProto).
        layout, param_inputs, theta: see :class:`~edgezo.oracles.onnxruntime.GraphOracle`.
        stacked: the graph with a leading perturbation axis (optional).
        target: the TVM host target (default :func:`host_target`: llvm for this CPU).

    Paths: ``"sequential"`` (single-point graph, one call per point),
    ``"stacked"`` and ``"stacked-nt"`` (the stacked graph compiled with and
    without fusing the weight transposes into the matmuls, see
    :func:`host_pipeline`). Each executable is compiled on first use.
    """

    backend = "tvm"
    PATHS = ("sequential", "stacked", "stacked-nt")

    def __init__(self, model: Any, layout: ParamLayout, param_inputs: Mapping[str, str], theta: torch.Tensor, *,
                 stacked: Any = None, target: Any = None, **options):
        super().__init__(layout, param_inputs, theta, **options)
        tvm = import_tvm()
        import onnx

        self._tvm = tvm
        self.device = tvm.cpu()
        self.target = host_target() if target is None else target
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
            ex = compile_onnx(proto, self.target, fuse_transpose=variant == "stacked-nt")
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
