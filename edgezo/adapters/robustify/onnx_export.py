"""Export the defender's modules (fixed weights) to ONNX and check them with onnxruntime.

Uses ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``),
which needs no extra package; the batch axis is dynamic. After writing, the
graph is run by onnxruntime on the example input and compared with PyTorch.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from ... import io


def export_module(module: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike, *,
                  input_name: str = "x", output_name: str = "y", opset: int = 17) -> dict:
    """Write ``module`` (in eval mode) as ONNX to ``path`` atomically; returns a manifest entry.

    The entry holds input/output names and shapes (batch axis ``"batch"``) and
    ``max_abs_error`` between onnxruntime and PyTorch on ``example``.
    """
    import onnxruntime as ort

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            reference = module(example)
        with io.atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(module, (example,), os.fspath(tmp), dynamo=False, opset_version=opset,
                              input_names=[input_name], output_names=[output_name],
                              dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    finally:
        module.train(was_training)
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {input_name: example.detach().cpu().numpy().astype(np.float32)})[0]
    err = float(np.max(np.abs(got - reference.detach().cpu().numpy()))) if got.size else 0.0
    return {"file": os.path.basename(os.fspath(path)),
            "inputs": [{"name": input_name, "shape": ["batch", *example.shape[1:]], "dtype": "float32"}],
            "outputs": [{"name": output_name, "shape": ["batch", *reference.shape[1:]], "dtype": "float32"}],
            "max_abs_error": err}
