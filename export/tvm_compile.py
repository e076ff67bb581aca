"""TVM compilation of the exported ONNX graphs (ahead of time; the runtime is :mod:`edgezo.oracles.tvm`).

:func:`compile_onnx` imports an ONNX graph with
``tvm.relax.frontend.onnx.from_onnx(model, keep_params_in_input=True)`` — so the
parameters stay function inputs — and compiles it with ``tvm.compile``; for
the host CPU (:func:`host_target`: ``llvm`` with ``mcpu`` set to this CPU; the
plain ``"llvm"`` target is generic x86-64 without AVX and ran the default
recipe's CGE step in 74 ms instead of 45 ms at batch 64 on an AVX-512 Xeon)
kernels get a simple CPU schedule (:func:`host_pipeline`). Shapes stay
symbolic (batch, q), so each graph compiles once per process (executables are
cached by the hash of the ONNX bytes). :class:`HostCompiler` is what
:class:`~edgezo.oracles.tvm.TVMOracle` is handed to compile its graphs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from edgezo.extras import import_tvm

from .onnx import load_onnx

__all__ = ["compile_onnx", "host_pipeline", "host_target", "HostCompiler"]

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

    proto = load_onnx(model)
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




class HostCompiler:
    """``compiler(proto, fuse_transpose=False)``: :func:`compile_onnx` for ``target`` (default: this CPU)."""

    def __init__(self, target: Any = None):
        self.target = host_target() if target is None else target

    def __call__(self, proto: Any, *, fuse_transpose: bool = False):
        return compile_onnx(proto, self.target, fuse_transpose=fuse_transpose)
