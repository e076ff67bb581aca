"""The deployable model: ``model_inference.onnx``, input → logits (or → u for a PINN), weights baked in.

The training graphs of :mod:`edgezo.export.onnx` take the parameters as
inputs and return a loss; a deployed classifier takes only a batch of samples.
:func:`export_inference` writes that graph with the trained weights as
initializers and a dynamic batch axis:

* plain modules (MLP, TT-MLP) — their own ``forward`` in eval mode; TT layers
  keep their cores (the graph rebuilds the dense matrix from them, so the file
  holds only the compressed weights);
* DeepZero's staged CNNs (:mod:`edgezo.models.cnn`, :mod:`edgezo.models.resnet`)
  train with *batch* statistics in every batch norm, so a prediction would
  depend on the other samples of its batch. :func:`staged_reference` rebuilds
  the network from standard torch modules whose batch norms hold population
  statistics: the per-channel mean and (biased) variance that the network's
  own batch-statistics forward computes over a calibration set (the training
  samples; "precise BN"). :func:`fold_batch_norm` then folds every
  ``conv → BN`` pair into one convolution
  (``W' = W·γ/√(σ²+ε)``, ``b' = (b − μ)·γ/√(σ²+ε) + β``; torch's
  ``fuse_conv_bn_eval``);
* a PINN (``edgezo.adapters.pinn.model.SteinPINN``) — the hard-constrained
  solution ``u(x) = g(x) + a(x)·N(x)`` of the inner network, input ``x`` →
  output ``u``.

The torch module :func:`inference_reference` returns is what the ONNX graph
must reproduce (the tests compare them to 1e-5).
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["InferenceExport", "export_inference", "inference_reference", "staged_reference", "fold_batch_norm",
           "INFERENCE_FILE", "write_checked_inference"]

INFERENCE_FILE = "model_inference.onnx"


@dataclass
class InferenceExport:
    model: Any  # onnx.ModelProto
    reference: nn.Module  # the torch module the graph reproduces (batch norms unfolded)
    output_name: str
    input_shape: tuple[int, ...]
    info: dict

    def model_bytes(self) -> bytes:
        return self.model.SerializeToString()


# --------------------------------------------------------------------------- staged CNNs

class _GlobalAvgPool(nn.Module):
    def forward(self, h):
        return h.mean(dim=(-2, -1))


class _Residual(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(h))))) + shortcut(h))`` with the option-A shortcut of BasicBlockStage."""

    def __init__(self, main: nn.Sequential, stride: int, pad: int):
        super().__init__()
        self.main, self.stride, self.pad = main, stride, pad

    def forward(self, h):
        short = h[..., :: self.stride, :: self.stride] if self.stride != 1 else h
        if self.pad:
            short = nn.functional.pad(short, (0, 0, 0, 0, self.pad, self.pad))
        return torch.relu(self.main(h) + short)


def _bn(norm: nn.BatchNorm2d) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(norm.num_features, eps=norm.eps, momentum=None, affine=True, track_running_stats=True)
    with torch.no_grad():
        bn.weight.copy_(norm.weight)
        bn.bias.copy_(norm.bias)
    return bn.to(norm.weight.dtype)


def _convert_stage(stage: nn.Module) -> nn.Module:
    from ..models.cnn import ConvStage, PoolLinearStage
    from ..models.resnet import BasicBlockStage, StemStage

    if isinstance(stage, ConvStage):
        layers = [copy.deepcopy(stage.conv)] + ([_bn(stage.norm)] if stage.norm is not None else [])
        layers += [nn.MaxPool2d(2)] if stage.pool else []
        return nn.Sequential(*layers, nn.ReLU())
    if isinstance(stage, StemStage):
        return nn.Sequential(copy.deepcopy(stage.conv), _bn(stage.bn), nn.ReLU())
    if isinstance(stage, BasicBlockStage):
        main = nn.Sequential(copy.deepcopy(stage.conv1), _bn(stage.bn1), nn.ReLU(), copy.deepcopy(stage.conv2),
                             _bn(stage.bn2))
        return _Residual(main, stage.stride, stage.pad)
    if isinstance(stage, PoolLinearStage):
        return nn.Sequential(_GlobalAvgPool(), copy.deepcopy(stage.fc))
    raise ValueError(f"no inference form for the stage {type(stage).__name__}; known: ConvStage, StemStage, "
                     "BasicBlockStage, PoolLinearStage")


def staged_reference(model: nn.Module, calibration: torch.Tensor) -> nn.Sequential:
    """The staged network as standard modules, batch norms holding population statistics of ``calibration``.

    One forward of the whole calibration set in training mode (cumulative
    average, ``momentum=None``) gives every batch norm exactly the batch
    statistics the original network computes on that set; the unbiased
    variance torch stores is rescaled to the biased one used for normalization.
    """
    ref = nn.Sequential(*[_convert_stage(s) for s in model.stages]).to(calibration.device)
    bns = [m for m in ref.modules() if isinstance(m, nn.BatchNorm2d)]
    sizes: dict[nn.BatchNorm2d, int] = {}
    hooks = [bn.register_forward_pre_hook(lambda m, args: sizes.__setitem__(m, args[0].numel() // args[0].shape[1]))
             for bn in bns]
    ref.train()
    with torch.no_grad():
        for bn in bns:
            bn.reset_running_stats()
        ref(calibration)
        for bn in bns:
            n = sizes[bn]
            bn.running_var.mul_((n - 1) / n)
    for h in hooks:
        h.remove()
    return ref.eval()


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """A copy with every ``Conv2d`` directly followed by an eval ``BatchNorm2d`` (in a Sequential) fused."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(module).eval()
    for seq in [m for m in out.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return out


# --------------------------------------------------------------------------- PINNs, plain modules

class _Solution(nn.Module):
    """``u(x) = pde.constrain(x, net(x)[..., 0])``: the PINN's hard-constrained solution."""

    def __init__(self, net: nn.Module, pde):
        super().__init__()
        self.net, self.pde = net, pde

    def forward(self, x):
        return self.pde.constrain(x, self.net(x)[..., 0])


def _is_staged(model: nn.Module) -> bool:
    from ..models.cnn import StagedNet

    return isinstance(model, StagedNet)


def _is_pinn(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("net", "pde", "solution"))


def inference_reference(model: nn.Module, *, calibration: torch.Tensor | None = None) -> tuple[nn.Module, str]:
    """``(torch module input → output, output name)`` for ``model`` (a copy; ``model`` is untouched)."""
    if _is_pinn(model):
        return _Solution(copy.deepcopy(model.net), model.pde).eval(), "u"
    if _is_staged(model):
        if calibration is None:
            raise ValueError(f"{type(model).__name__} normalizes with batch statistics; exporting it for inference "
                             "needs calibration samples (the training set) for population statistics")
        return staged_reference(model, calibration), "logits"
    ref = copy.deepcopy(model).eval()
    from ..models.ttm import TTLinear

    for layer in ref.modules():
        if isinstance(layer, TTLinear):
            layer.mode = "dense"  # W rebuilt from the cores inside the graph: only the cores are stored
    return ref, "logits"


def export_inference(model: nn.Module, example_x: torch.Tensor, *, calibration: torch.Tensor | None = None,
                     opset: int = 17, check: bool = True) -> InferenceExport:
    """Export ``model`` as ``x (batch, *sample) → logits | u`` with its weights as initializers.

    ``calibration``: samples for the population statistics of batch-statistics
    networks (required for DeepZero's CNNs, ignored otherwise).
    """
    import onnx

    reference, output = inference_reference(model, calibration=calibration)
    graph_module = fold_batch_norm(reference)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(graph_module, (example_x,), buf, dynamo=False, input_names=["x"], output_names=[output],
                          dynamic_axes={"x": {0: "batch"}, output: {0: "batch"}}, opset_version=opset,
                          do_constant_folding=False)  # folding would store a TT layer's dense matrix
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name = "edgezo"
    if check:
        onnx.checker.check_model(proto, full_check=True)
    folded = sum(isinstance(m, nn.BatchNorm2d) for m in reference.modules())
    info = {"batch_norms_folded": folded, "calibration_samples": int(calibration.shape[0])
            if calibration is not None and folded else 0}
    return InferenceExport(proto, reference, output, tuple(int(d) for d in example_x.shape[1:]), info)


def write_checked_inference(out, model: nn.Module, example_x: torch.Tensor, *, check_x: torch.Tensor,
                            check_y: torch.Tensor | None = None,
                            calibration: torch.Tensor | None = None) -> dict[str, Any]:
    """Write ``out / model_inference.onnx`` and check it: ONNX Runtime against the torch reference on ``check_x``.

    Returns the manifest record: interface, ``max_abs_diff_vs_torch`` and, for
    classifiers (``check_y`` given), the exported model's test accuracy; when
    batch norms were folded, also the accuracy of the trained network with
    batch statistics, which is what it computed during training.
    """
    import numpy as np
    import onnxruntime as ort

    from edgezo import io as eio

    exp = export_inference(model, example_x[:2], calibration=calibration)
    eio.write_bytes(out / INFERENCE_FILE, exp.model_bytes())
    got = ort.InferenceSession(str(out / INFERENCE_FILE)).run(None, {"x": check_x.numpy()})[0]
    with torch.no_grad():
        ref = exp.reference(check_x).numpy()
    dtype = str(check_x.dtype).replace("torch.", "")
    record = {"file": INFERENCE_FILE, "kind": "onnx-inference", "output": exp.output_name,
              "runtime": f"any ONNX runtime: x (batch, {', '.join(map(str, exp.input_shape))}) -> {exp.output_name}",
              "inputs": [{"name": "x", "shape": ["batch", *exp.input_shape], "dtype": dtype}],
              "outputs": [{"name": exp.output_name, "shape": ["batch", *got.shape[1:]], "dtype": dtype}],
              "max_abs_diff_vs_torch": float(np.abs(got - ref).max()), "checked_on": int(check_x.shape[0]),
              **exp.info}
    if check_y is not None:
        y = check_y.numpy()
        record["test_accuracy"] = float((got.argmax(-1) == y).mean())
        if exp.info["batch_norms_folded"]:
            with torch.no_grad():
                own = model.eval()(check_x).argmax(-1).numpy()
            record["test_accuracy_batch_statistics"] = float((own == y).mean())
    return record
