"""TVM compilation of the exported loss graph: host module, C source, cross-compiled objects.

The ONNX graph of :mod:`edgezo.export.onnx` is imported with
``tvm.relax.frontend.onnx.from_onnx(model, keep_params_in_input=True)`` (the
parameters stay inputs) at a static batch size, and compiled three ways:

* host (``target="llvm"``): what :class:`~edgezo.oracles.tvm.TVMOracle` runs;
* C source (``{"kind": "c"}``): the operator kernels as C99 functions — C code
  generation needs input names that are valid C identifiers, which the export
  guarantees (docs/methods/zo-basics.md, "Forward-only backends");
* an object file for a cross target, e.g. Cortex-M4
  (``{"kind": "llvm", "mtriple": "thumbv7em-none-eabihf", "mcpu": "cortex-m4",
  "mfloat-abi": "hard"}``): written with the LLVM module's ``write_to_file``;
  nothing is linked on the host.

Relax's VM bytecode — the order in which the kernels run and the buffers they
use — is written beside them as text. :func:`write_tvm_artifacts` also writes
a README saying what runtime each artifact needs.

TVM is the optional extra ``edgezo[tvm]``; :func:`import_tvm` raises an
ImportError naming it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgezo import io
from edgezo.extras import TVM_INSTALL_HINT, import_tvm, tvm_available

from .onnx import OnnxExport, load_onnx
from .tvm_compile import compile_onnx

__all__ = ["import_tvm", "tvm_available", "TVM_INSTALL_HINT", "relax_module", "compile_host", "cross_target",
           "emit_c_source", "cross_compile_object", "write_tvm_artifacts", "undefined_symbols"]


def static_shapes(export: OnnxExport, batch_size: int) -> dict[str, list[int]]:
    """Shapes of the data inputs at a fixed batch (parameters have static shapes already)."""
    return {"x": [int(batch_size), *export.input_shape], "y": [int(batch_size), *export.target_shape]}


def relax_module(model: Any, shape_dict: Mapping[str, list] | None = None):
    """The Relax IRModule of an ONNX graph, parameters kept as function inputs."""
    import_tvm()
    from tvm.relax.frontend.onnx import from_onnx

    return from_onnx(load_onnx(model), shape_dict=dict(shape_dict) if shape_dict else None,
                     keep_params_in_input=True)


def compile_host(model: Any, shape_dict: Mapping[str, list] | None = None):
    """The Relax executable for the host CPU (``target="llvm"``)."""
    return compile_onnx(load_onnx(model), "llvm", shape_dict)


def cross_target(profile) -> dict[str, str] | None:
    """The TVM target dict of a profile with a ``[cross]`` triple (hard-float ABI for ``*hf``)."""
    target = profile.tvm_target()
    if target is not None and target["mtriple"].endswith("hf"):
        target["mfloat-abi"] = "hard"
    return target


def _compile(model: Any, target: Mapping[str, str], shape_dict: Mapping[str, list]):
    tvm = import_tvm()
    return tvm.compile(relax_module(model, shape_dict), target=tvm.target.Target(dict(target)))


def emit_c_source(model: Any, shape_dict: Mapping[str, list]) -> tuple[str, str]:
    """(C source of the kernels, Relax VM program text) at static shapes."""
    ex = _compile(model, {"kind": "c"}, shape_dict)
    kernels = [m for m in ex.mod.imports if m.kind == "c"]
    if not kernels:
        raise RuntimeError("TVM produced no C module for target {'kind': 'c'}")
    return kernels[0].inspect_source(), ex.as_text()


def cross_compile_object(model: Any, target: Mapping[str, str], path: str | Path,
                         shape_dict: Mapping[str, list]) -> tuple[Path, str]:
    """Compile for a cross ``target`` and write the kernels' object file (no linking). Returns (path, VM text)."""
    ex = _compile(model, target, shape_dict)
    kernels = [m for m in ex.mod.imports if m.kind == "llvm"]
    if not kernels:
        raise RuntimeError(f"TVM produced no LLVM module for target {dict(target)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.o")  # TVM picks the format from the suffix
    try:
        kernels[0].write_to_file(str(partial))
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path, ex.as_text()


def undefined_symbols(obj: str | Path) -> list[str] | None:
    """Undefined symbols of an ELF object (via readelf / llvm-readelf), or None without one."""
    tool = shutil.which("readelf") or shutil.which("llvm-readelf") or shutil.which("arm-none-eabi-readelf")
    if tool is None:
        return None
    res = subprocess.run([tool, "-sW", str(obj)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return None
    names = []
    for line in res.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 8 and cols[6] == "UND" and cols[4] in ("GLOBAL", "WEAK"):
            names.append(cols[7])
    return sorted(set(names))


def _tvm_version() -> str:
    tvm = import_tvm()
    return str(getattr(tvm, "__version__", "?"))


def _kernel_names(source: str) -> list[str]:
    return sorted(set(re.findall(r"int32_t (__tvm_ffi_\w+)\(void\* self_handle", source)))


def write_tvm_artifacts(export: OnnxExport, out_dir: str | Path, *, profile, batch_size: int) -> list[dict]:
    """Write the C source, the VM program and (for a cross profile) the object file.

    Returns ``{"file", "kind", "runtime"}`` records for the manifest. The README
    is written by :func:`readme_text` from the same records.
    """
    out = Path(out_dir)
    shapes = static_shapes(export, batch_size)
    records = []
    source, program = emit_c_source(export.model, shapes)
    io.write_text(out / "model_kernels.c", source)
    io.write_text(out / "model_vm.txt", program)
    version = _tvm_version()
    records.append({
        "file": "model_kernels.c", "kind": "c-source", "target": {"kind": "c"}, "batch_size": batch_size,
        "kernels": _kernel_names(source),
        "runtime": f"C99 compiler; the TVM FFI headers of apache-tvm {version} (tvm/ffi/c_api.h, "
                   "tvm/ffi/extra/c_env_api.h, tvm/runtime/c_backend_api.h); libm (expf, logf); "
                   "a driver that calls the kernels in the order of model_vm.txt"})
    records.append({"file": "model_vm.txt", "kind": "relax-vm-program", "batch_size": batch_size,
                    "runtime": "documentation of the kernel call order and buffer sizes (the Relax VM "
                               "bytecode, which needs libtvm_runtime to execute)"})
    target = cross_target(profile) if profile is not None else None
    if target is not None:
        name = f"model_{profile.cpu or target['mtriple'].split('-')[0]}.o"
        path, _ = cross_compile_object(export.model, target, out / name, shapes)
        undefined = undefined_symbols(path)
        records.append({
            "file": name, "kind": "object", "target": target, "batch_size": batch_size,
            "undefined_symbols": undefined,
            "runtime": f"ELF relocatable object for {target['mtriple']} ({target.get('mcpu', '')}); link with "
                       "the target's toolchain (e.g. arm-none-eabi-gcc with newlib for libm/memcpy) and "
                       "provide the TVM FFI error hook TVMFFIErrorSetRaisedFromCStr; the kernels follow the "
                       "TVM FFI packed-function ABI and are sequenced as in model_vm.txt"})
    return records


def readme_text(manifest: dict, records: list[dict], *, tvm_note: str | None = None) -> str:
    """README.md of an artifact directory: each file and the runtime it needs."""
    if manifest.get("onnx") is None:
        return _inference_only_readme(manifest, tvm_note)
    target = manifest.get("target") or {}
    b = manifest.get("batch_size")
    params = ", ".join(f"{p['name']} {tuple(p['shape'])}" for p in manifest["parameters"])
    lines = [
        f"# edgezo export — {manifest.get('recipe') or 'model'} for {target.get('name', 'host')}",
        "",
        f"Exported by edgezo {manifest['edgezo_version']}. Every trainable parameter is a graph input, so any "
        "runtime that can evaluate the graph can train it with forward passes only: form θ + μ·z(seed) "
        "outside the graph, evaluate the loss, combine the differences (see manifest.json for the flat "
        "offset of each parameter).",
        "",
        f"- inputs: x {tuple(manifest['inputs'][0]['shape'])} {manifest['inputs'][0]['dtype']}, "
        f"y {tuple(manifest['inputs'][1]['shape'])} {manifest['inputs'][1]['dtype']}",
        f"- parameters ({manifest['dim']:,} values): {params}",
        f"- outputs: loss (batch mean, {manifest['loss']['name']}), logits",
        "",
        "| file | what | runtime it needs |",
        "|------|------|------------------|",
        "| model.onnx | forward + loss, one parameter point, dynamic batch | any ONNX runtime with opset "
        f"{manifest['onnx']['opset']} (e.g. onnxruntime >= 1.17: an InferenceSession; no training package) |",
    ]
    if manifest.get("inference"):
        lines.append(_inference_row(manifest["inference"]))
    if manifest.get("stacked"):
        lines.append("| model_stacked.onnx | the same with a leading axis q on every parameter input (q points "
                     "per run) | the same ONNX runtime |")
    lines.append("| manifest.json | names, shapes, dtypes, flat offsets, loss, target profile, memory estimate | "
                 "any JSON reader |")
    lines.append("| params.bin / model_params.h | the parameter values θ (raw float32 little endian / a C "
                 "array with the offset of every parameter) | none / a C99 compiler |")
    for r in records:
        extra = ""
        if r.get("undefined_symbols"):
            extra = f" Undefined symbols: {', '.join(r['undefined_symbols'])}."
        lines.append(f"| {r['file']} | {r['kind']} (batch {r.get('batch_size', b)}) | {r['runtime']}.{extra} |")
    lines += ["", "## Runtimes", ""]
    if records:
        lines += [
            "The TVM artifacts are the graph's operator kernels at a static batch size. Each kernel is a C "
            "function with the TVM FFI packed-function signature `int32_t __tvm_ffi_NAME(void* self, void* "
            "args, int32_t num_args, void* result)` whose arguments are DLTensors. On a host, the Relax VM in "
            "libtvm_runtime runs them (load the executable with `tvm.relax.VirtualMachine`). Microcontrollers "
            "have no TVM runtime any more (microTVM was removed from TVM): a device build needs a small driver "
            "that allocates the buffers and calls the kernels in the order listed in model_vm.txt — that "
            "driver is not generated.",
            "",
        ]
    fmt, noise = target.get("format", {}), target.get("noise", {})
    if fmt.get("weight", "fp32") != "fp32" or noise.get("kind", "none") != "none":
        lines += [f"Note: these graphs compute in float32. The {target['name']} datapath ({fmt.get('weight')} "
                  f"weights, {noise.get('kind', 'no')} noise) is simulated on the host by "
                  "`edgezo train --backend int8|photonic` (edgezo.targets.numerics).", ""]
    if tvm_note:
        lines += [tvm_note, ""]
    mem = manifest.get("memory")
    if mem:
        lines += [f"Memory estimate of one ZO training step on {mem['profile']}: {mem['total']:,} of "
                  f"{mem['budget']:,} bytes of SRAM ({'fits' if mem['fits'] else 'does NOT fit'}).", ""]
    return "\n".join(lines)


def _inference_row(record: dict) -> str:
    folded = ", batch norm folded" if record.get("batch_norms_folded") else ""
    return (f"| {record['file']} | the deployable model: {record['runtime'].split(': ', 1)[-1]}, trained weights as "
            f"initializers{folded} (matches torch to {record['max_abs_diff_vs_torch']:.1e}) | "
            "any ONNX runtime (`edgezo serve model --onnx`, `edgezo robustify --onnx`) |")


def _inference_only_readme(manifest: dict, tvm_note: str | None) -> str:
    target = manifest.get("target") or {}
    lines = [f"# edgezo export — {manifest.get('recipe') or 'model'} for {target.get('name', 'host')}", "",
             f"Exported by edgezo {manifest['edgezo_version']}.", "",
             "| file | what | runtime it needs |", "|------|------|------------------|",
             _inference_row(manifest["inference"]),
             "| manifest.json | parameter names, shapes, flat offsets, loss, target profile | any JSON reader |", ""]
    if tvm_note:
        lines += [tvm_note, ""]
    return "\n".join(lines)
