"""make_trainable: an ONNX classifier's initializers become inputs; losses match torch; the Scan graph stacks."""

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from edgezo.export.trainable import default_trainable, make_trainable, write_trained
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(nn.functional.max_pool2d(h, 2), 1))


def to_onnx(model, example, *, fold=False) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buf, dynamo=False, input_names=["image"], output_names=["scores"],
                          dynamic_axes={"image": {0: "b"}, "scores": {0: "b"}}, do_constant_folding=fold)
    return buf.getvalue()


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():  # non-trivial running statistics, so folding them away would show
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_cnn_loss_and_logits_match_torch(cnn):
    graphs = make_trainable(to_onnx(cnn, torch.zeros(2, 1, 8, 8)), num_classes=10)
    assert graphs.names == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"]
    assert graphs.input_shape == (1, 8, 8)
    x, y = torch.randn(7, 1, 8, 8), torch.randint(0, 10, (7,))
    loss, logits = ort.InferenceSession(graphs.single.SerializeToString()).run(
        ["loss", "logits"], {"x": x.numpy(), "y": y.numpy(), **graphs.values})
    with torch.no_grad():
        ref = cnn(x)
    np.testing.assert_allclose(logits, ref.numpy(), atol=1e-5)
    assert abs(float(loss) - float(nn.functional.cross_entropy(ref, y))) < 1e-5


def test_stacked_scan_equals_one_run_per_point(cnn):
    graphs = make_trainable(to_onnx(cnn, torch.zeros(2, 1, 8, 8)), num_classes=10)
    x, y = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32), np.arange(5, dtype=np.int64)
    rng = np.random.default_rng(1)
    points = [{n: (v + 0.1 * rng.normal(size=v.shape)).astype(np.float32) for n, v in graphs.values.items()}
              for _ in range(3)]
    single = ort.InferenceSession(graphs.single.SerializeToString())
    one_by_one = [float(single.run(["loss"], {"x": x, "y": y, **p})[0]) for p in points]
    stacked = ort.InferenceSession(graphs.stacked.SerializeToString()).run(
        ["loss"], {"x": x, "y": y, **{n: np.stack([p[n] for p in points]) for n in graphs.names}})[0]
    assert stacked.shape == (3,)
    np.testing.assert_allclose(stacked, one_by_one, rtol=1e-6)


def test_batch_norm_statistics_stay_frozen_by_default(cnn):
    proto = onnx.load_from_string(to_onnx(cnn, torch.zeros(2, 1, 8, 8)))
    chosen = default_trainable(proto.graph)
    assert "bn.running_mean" not in chosen and "bn.running_var" not in chosen and "bn.weight" in chosen


def test_trainable_patterns_and_bad_patterns(cnn):
    model = to_onnx(cnn, torch.zeros(2, 1, 8, 8))
    assert make_trainable(model, num_classes=10, trainable=["fc.*"]).names == ["fc.weight", "fc.bias"]
    with pytest.raises(ValueError, match="match no initializer"):
        make_trainable(model, num_classes=10, trainable=["nothing*"])


def test_write_trained_replaces_initializers_atomically(cnn, tmp_path):
    model = to_onnx(cnn, torch.zeros(2, 1, 8, 8))
    new_bias = np.full(10, 0.5, dtype=np.float32)
    out = tmp_path / "trained.onnx"
    write_trained(model, {"fc.bias": new_bias}, out)
    proto = onnx.load(str(out))
    bias = next(i for i in proto.graph.initializer if i.name == "fc.bias")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(bias), new_bias)
    x = np.zeros((1, 1, 8, 8), dtype=np.float32)
    before = ort.InferenceSession(model).run(None, {"image": x})[0]
    after = ort.InferenceSession(str(out)).run(None, {"image": x})[0]
    old_bias = cnn.fc.bias.detach().numpy()
    np.testing.assert_allclose(after - before, (new_bias - old_bias)[None], atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["trained.onnx"]  # no temp file left behind


def test_mse_loss_for_a_regression_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).eval()
    graphs = make_trainable(to_onnx(model, torch.zeros(2, 3)), loss="mse", num_classes=2)
    x, t = torch.randn(6, 3), torch.randn(6, 2)
    (loss,) = ort.InferenceSession(graphs.single.SerializeToString()).run(
        ["loss"], {"x": x.numpy(), "y": t.numpy(), **graphs.values})
    with torch.no_grad():
        assert float(loss) == pytest.approx(float(nn.functional.mse_loss(model(x), t)), abs=1e-6)
