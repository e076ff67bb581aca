"""ONNX export round trip: the exported loss/logits equal PyTorch's (float32, |Δ| ≤ 1e-5 + 1e-5·|ref|)."""

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from edgezo.export.manifest import build_manifest, read_manifest, write_manifest
from edgezo.export.onnx import c_identifier, export_onnx
from edgezo.models import MLP
from torch import nn
from torch.func import functional_call

ATOL, RTOL = 1e-5, 1e-5


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture
def mlp_batch():
    torch.manual_seed(0)
    model = MLP([8, 6, 4])
    return model, (torch.randn(5, 8), torch.randint(0, 4, (5,)))


def test_round_trip_equals_torch(mlp_batch):
    model, (x, y) = mlp_batch
    exp = export_onnx(model, (x, y))
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    xs, ys = torch.randn(7, 8), torch.randint(0, 4, (7,))  # another batch size than the example
    loss, logits = _session(exp.model).run(["loss", "logits"], {"x": xs.numpy(), "y": ys.numpy(),
                                                                **exp.feed(theta)})
    with torch.no_grad():
        ref_logits = model(xs)
        ref_loss = F.cross_entropy(ref_logits, ys)
    np.testing.assert_allclose(logits, ref_logits.numpy(), atol=ATOL, rtol=RTOL)
    assert abs(float(loss) - float(ref_loss)) <= ATOL + RTOL * abs(float(ref_loss))


def test_graph_contract(mlp_batch):
    model, batch = mlp_batch
    exp = export_onnx(model, batch)
    for proto in (exp.model, exp.stacked):
        onnx.checker.check_model(proto, full_check=True)
        inputs = [i.name for i in proto.graph.input]
        assert inputs[:2] == ["x", "y"]
        assert set(inputs[2:]) == set(exp.param_inputs.values())
        assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in inputs)
        assert not {i.name for i in proto.graph.initializer} & set(exp.param_inputs.values())
        assert [o.name for o in proto.graph.output] == ["loss", "logits"]
        assert not any(n.op_type == "SoftmaxCrossEntropyLoss" for n in proto.graph.node)
    assert exp.param_inputs == {"layers.0.weight": "layers_0_weight", "layers.0.bias": "layers_0_bias",
                                "layers.1.weight": "layers_1_weight", "layers.1.bias": "layers_1_bias"}


def test_stacked_graph_evaluates_q_parameter_sets(mlp_batch):
    model, (x, y) = mlp_batch
    exp = export_onnx(model, (x, y))
    torch.manual_seed(1)
    q = 3
    block = torch.randn(q, exp.layout.dim) * 0.5
    loss, logits = _session(exp.stacked).run(["loss", "logits"], {"x": x.numpy(), "y": y.numpy(),
                                                                  **exp.feed(block)})
    assert loss.shape == (q,) and logits.shape == (q, 5, 4)
    for i in range(q):
        params = exp.layout.split(block[i])
        with torch.no_grad():
            ref = F.cross_entropy(functional_call(model, params, (x,)), y)
        assert abs(float(loss[i]) - float(ref)) <= ATOL + RTOL * abs(float(ref))


def test_mse_loss_and_model_without_forward_stacked():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    x, t = torch.randn(6, 3), torch.randn(6, 2)
    exp = export_onnx(model, (x, t), loss="mse")
    assert exp.stacked is None
    assert set(exp.param_inputs.values()) == {"p_0_weight", "p_0_bias", "p_2_weight", "p_2_bias"}
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    (loss,) = _session(exp.model).run(["loss"], {"x": x.numpy(), "y": t.numpy(), **exp.feed(theta)})
    ref = F.mse_loss(model(x), t).item()
    assert abs(float(loss) - ref) <= ATOL + RTOL * abs(ref)


def test_bad_inputs_are_refused(mlp_batch):
    model, (x, y) = mlp_batch
    with pytest.raises(ValueError, match="int64 class ids"):
        export_onnx(model, (x, y.float()))
    with pytest.raises(ValueError, match="exportable losses"):
        export_onnx(model, (x, y), loss="hinge")
    with pytest.raises(ValueError, match="forward_stacked"):
        export_onnx(nn.Linear(8, 4), (x, y), stacked=True)


def test_c_identifier():
    taken = set()
    assert c_identifier("layers.0.weight", taken) == "layers_0_weight"
    assert c_identifier("layers.0.weight", taken) == "layers_0_weight_1"
    assert c_identifier("0.bias", taken) == "p_0_bias"
    assert c_identifier("int", taken) == "p_int"
    assert c_identifier("x", taken) == "p_x"  # data input names are reserved
    assert c_identifier("a-b c", taken) == "a_b_c"


def test_manifest_round_trip(tmp_path, mlp_batch):
    from edgezo.targets.profile import load_profile

    model, batch = mlp_batch
    exp = export_onnx(model, batch)
    manifest = build_manifest(exp, profile=load_profile("cortex-m4-256k"), recipe="test", batch_size=4)
    write_manifest(tmp_path, manifest)
    back = read_manifest(tmp_path)
    assert back["parameters"][0] == {"name": "layers_0_weight", "torch_name": "layers.0.weight", "shape": [6, 8],
                                     "dtype": "float32", "offset": 0, "numel": 48, "group": "all"}
    assert back["inputs"][0]["name"] == "x" and back["inputs"][1]["dtype"] == "int64"
    assert back["loss"]["name"] == "cross_entropy" and back["target"]["name"] == "cortex-m4-256k"
    assert back["edgezo_version"] and back["dim"] == exp.layout.dim
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not an edgezo export manifest"):
        read_manifest(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="edgezo export"):
        read_manifest(tmp_path / "missing")
