"""``manifest.json``: what an exported artifact directory holds and how to drive it.

The DESIGN contract: parameter names, shapes, dtypes, inputs, loss, target
profile and edgezo version. Beside those it records the flat layout (offset of
every parameter in the engine's θ and its group — what a device needs to apply
``θ ← θ − lr Σ c_i z(seed_i)`` from seeds), the outputs, the files and the
runtime each one needs, and the memory estimate for the target.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgezo import __version__, io
from edgezo.errors import ConfigError, MissingFile

from .onnx import OnnxExport

__all__ = ["MANIFEST_NAME", "MANIFEST_FORMAT", "build_manifest", "inference_manifest", "write_manifest",
           "read_manifest"]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "edgezo-export/1"

_LOSS_FORMS = {
    "cross_entropy": "loss = -(1/B) sum_b sum_c onehot(y_b)_c * log_softmax(logits_b)_c (decomposed, no "
                     "SoftmaxCrossEntropyLoss op)",
    "mse": "loss = mean over batch and features of (logits - y)^2",
}


def _param_dtypes(export: OnnxExport) -> dict[str, str]:
    from onnx import helper

    out = {}
    for inp in export.model.graph.input:
        out[inp.name] = str(helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type))
    return out


def build_manifest(export: OnnxExport, *, profile=None, files: Sequence[dict] = (), recipe: str | None = None,
                   batch_size: int | None = None, memory: dict | None = None,
                   extra: dict | None = None) -> dict[str, Any]:
    """The manifest of an export (a JSON-able dict).

    Args:
        export: the :class:`~edgezo.export.onnx.OnnxExport`.
        profile: the :class:`~edgezo.targets.profile.TargetProfile` exported for (or None).
        files: ``{"file", "kind", "runtime"}`` records of the artifacts written.
        batch_size: the static batch of the cross-compiled artifacts (if any).
        memory: ``MemoryBreakdown.as_dict()`` for the target.
    """
    dtypes = _param_dtypes(export)
    params = []
    for e in export.layout.entries:
        name = export.param_inputs[e.name]
        params.append({"name": name, "torch_name": e.name, "shape": list(e.shape), "dtype": dtypes.get(name),
                       "offset": e.offset, "numel": e.numel, "group": e.group})
    x = {"name": "x", "shape": ["batch", *export.input_shape], "dtype": export.input_dtype}
    y = {"name": "y", "shape": ["batch", *export.target_shape], "dtype": export.target_dtype,
         "meaning": "class ids" if export.loss == "cross_entropy" else "regression targets"}
    manifest = {
        "format": MANIFEST_FORMAT,
        "edgezo_version": __version__,
        "recipe": recipe,
        "parameters": params,
        "dim": export.layout.dim,
        "groups": [{"name": g.name, "offset": g.offset, "numel": g.numel} for g in export.layout.groups],
        "inputs": [x, y],
        "outputs": [{"name": "loss", "shape": [], "dtype": export.input_dtype, "meaning": "batch-mean loss"},
                    {"name": "logits", "shape": ["batch", *export.output_shape], "dtype": export.input_dtype}],
        "stacked": None if export.stacked is None else {
            "file": "model_stacked.onnx",
            "note": "every parameter input has a leading axis q (q parameter sets at once); outputs loss (q,) "
                    "and logits (q, batch, ...)"},
        "loss": {"name": export.loss, "form": _LOSS_FORMS[export.loss]},
        "onnx": {"file": "model.onnx", "opset": export.opset},
        "target": None if profile is None else profile.to_dict(),
        "batch_size": batch_size,
        "memory": memory,
        "files": list(files),
    }
    if extra:
        manifest.update(extra)
    return manifest


def inference_manifest(layout, *, loss: str, inference: dict, reason: str, profile=None, files: Sequence[dict] = (),
                       recipe: str | None = None, memory: dict | None = None) -> dict[str, Any]:
    """The manifest of an export whose training graph could not be written (only the inference model).

    ``layout`` is the engine's :class:`~edgezo.params.ParamLayout` of the trained
    parameters; ``inference`` the record of ``model_inference.onnx``; ``reason``
    why no training graph (``model.onnx``) was exported.
    """
    params = [{"name": e.name, "torch_name": e.name, "shape": list(e.shape), "offset": e.offset, "numel": e.numel,
               "group": e.group} for e in layout.entries]
    return {
        "format": MANIFEST_FORMAT, "edgezo_version": __version__, "recipe": recipe, "parameters": params,
        "dim": layout.dim, "groups": [{"name": g.name, "offset": g.offset, "numel": g.numel} for g in layout.groups],
        "inputs": inference["inputs"], "outputs": inference["outputs"],
        "loss": {"name": loss, "form": _LOSS_FORMS.get(loss)}, "onnx": None, "stacked": None,
        "training_graph": {"exported": False, "reason": reason}, "inference": inference,
        "target": None if profile is None else profile.to_dict(), "memory": memory, "files": list(files),
    }


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``out_dir/manifest.json`` atomically."""
    path = Path(out_dir) / MANIFEST_NAME
    io.write_json(path, manifest)
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest (a directory or the file); a clear error when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFile(f"no {MANIFEST_NAME} at {path}; run `edgezo export --out DIR` first") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ConfigError(f"{path} is not an edgezo export manifest (format {MANIFEST_FORMAT})")
    for key in ("parameters", "inputs", "loss", "edgezo_version"):
        if key not in data:
            raise ConfigError(f"{path}: manifest lacks the field {key!r}")
    return data
