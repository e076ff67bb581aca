"""TVM artifacts: C source, a Cortex-M4 object file, the README; and the message when TVM is missing."""

import shutil
import struct
import subprocess
import sys

import pytest
import torch
from edgezo.export.manifest import read_manifest

from edgezo.cli import main
from edgezo.oracles.tvm import tvm_available

needs_tvm = pytest.mark.skipif(not tvm_available(), reason="Apache TVM is not installed (pip install edgezo[tvm])")


def _elf_header(path):
    """(class, data, type, machine) of an ELF file, read with struct (no binutils needed)."""
    raw = path.read_bytes()[:20]
    assert raw[:4] == b"\x7fELF", f"{path} is not an ELF file"
    ei_class, ei_data = raw[4], raw[5]
    e_type, e_machine = struct.unpack("<HH" if ei_data == 1 else ">HH", raw[16:20])
    return ei_class, ei_data, e_type, e_machine


@pytest.mark.slow
@pytest.mark.tvm
@needs_tvm
def test_export_cortex_m4_artifacts(tmp_path, capsys):
    out = tmp_path / "m4"
    assert main(["export", "--target", "cortex-m4-256k", "--out", str(out), "--batch-size", "4"]) == 0
    for name in ("model.onnx", "model_stacked.onnx", "manifest.json", "README.md", "model_kernels.c",
                 "model_vm.txt", "model_cortex-m4.o", "metrics.json"):
        assert (out / name).is_file(), name
    obj = out / "model_cortex-m4.o"
    # ELFCLASS32, little endian, ET_REL (relocatable, nothing linked), EM_ARM
    assert _elf_header(obj) == (1, 1, 1, 40)
    source = (out / "model_kernels.c").read_text()
    assert "__tvm_ffi_" in source and "#include" in source
    manifest = read_manifest(out)
    kinds = {f["file"]: f["kind"] for f in manifest["files"]}
    assert kinds["model_cortex-m4.o"] == "object" and kinds["model_kernels.c"] == "c-source"
    target = next(f["target"] for f in manifest["files"] if f["file"] == "model_cortex-m4.o")
    assert target["mtriple"] == "thumbv7em-none-eabihf" and target["mcpu"] == "cortex-m4"
    assert manifest["batch_size"] == 4 and manifest["target"]["name"] == "cortex-m4-256k"
    readme = (out / "README.md").read_text()
    for needle in ("model_cortex-m4.o", "model_kernels.c", "runtime", "TVMFFIErrorSetRaisedFromCStr",
                   "microTVM"):
        assert needle in readme, needle


@pytest.mark.tvm
@pytest.mark.toolchain
@needs_tvm
def test_object_attributes_with_readelf(tmp_path):
    tool = shutil.which("arm-none-eabi-readelf") or shutil.which("readelf") or shutil.which("llvm-readelf")
    if tool is None:
        pytest.skip("no readelf (binutils / arm-none-eabi-binutils / llvm) to inspect the ARM object")
    from edgezo.export.onnx import export_onnx
    from edgezo.export.tvm import cross_compile_object, cross_target, static_shapes
    from edgezo.models import MLP
    from edgezo.targets.profile import load_profile

    torch.manual_seed(0)
    exp = export_onnx(MLP([8, 4, 3]), (torch.randn(2, 8), torch.randint(0, 3, (2,))))
    path, program = cross_compile_object(exp.model, cross_target(load_profile("cortex-m4-256k")),
                                         tmp_path / "m.o", static_shapes(exp, 1))
    attrs = subprocess.run([tool, "-A", str(path)], capture_output=True, text=True).stdout
    if "Tag_CPU_name" not in attrs:
        pytest.skip(f"{tool} does not decode ARM build attributes")
    assert '"cortex-m4"' in attrs
    assert "VFP registers" in attrs  # hard-float ABI (eabihf)
    assert "@main" in program


def test_missing_tvm_gives_install_hint(monkeypatch, tmp_path, capsys):
    from edgezo.oracles import tvm as tvm_oracle

    monkeypatch.setitem(sys.modules, "tvm", None)  # import tvm -> ImportError
    with pytest.raises(ImportError, match=r"pip install edgezo\[tvm\]"):
        tvm_oracle.import_tvm()
    from edgezo.export import backends

    with pytest.raises(ImportError, match=r"pip install edgezo\[tvm\]"):
        backends.tvm_factory(None)
    # the CLI: a clear error for --backend tvm, and export still writes the ONNX artifacts with a note
    assert main(["train", "--backend", "tvm", "--max-steps", "1", "--out", str(tmp_path / "t"),
                 "--no-progress"]) == 2
    assert "pip install edgezo[tvm]" in capsys.readouterr().err
    monkeypatch.setattr("edgezo.export.tvm.tvm_available", lambda: False)
    out = tmp_path / "e"
    assert main(["export", "--out", str(out)]) == 0
    assert (out / "model.onnx").is_file() and not (out / "model_kernels.c").exists()
    assert "pip install edgezo[tvm]" in capsys.readouterr().err
    assert "pip install edgezo[tvm]" in (out / "README.md").read_text()
