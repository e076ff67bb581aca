"""Black-box wrappers: callable, torch module, ONNX model; query counting and budgets."""

import numpy as np
import pytest
import torch

from edgezo.adapters.robustify.blackbox import (
    BlackBoxError,
    CallableBlackBox,
    OnnxBlackBox,
    QueryBudgetExceeded,
    TorchBlackBox,
)
from edgezo.adapters.robustify.onnx_export import export_module


def test_budget_refuses_whole_call_before_sending():
    calls = []

    def f(x):
        calls.append(x.shape[0])
        return torch.zeros(x.shape[0], 3)

    bb = CallableBlackBox(f, input_shape=(2,), budget=10)
    bb(torch.zeros(6, 2))
    with pytest.raises(QueryBudgetExceeded, match="6 of 10 queries used, this call needs 5"):
        bb(torch.zeros(5, 2))
    assert calls == [6] and bb.queries == 6 and bb.remaining == 4


def test_reshapes_to_the_declared_sample_shape_and_splits_batches():
    seen = []

    def f(x):
        seen.append(tuple(x.shape))
        return torch.ones(x.shape[0], 2) / 2

    bb = CallableBlackBox(f, input_shape=(4,), max_batch=3)
    out = bb(torch.zeros(7, 1, 2, 2))
    assert out.shape == (7, 2) and seen == [(3, 4), (3, 4), (1, 4)] and bb.queries == 7
    with pytest.raises(ValueError, match="samples of shape"):
        bb(torch.zeros(2, 5))


def test_labels_only_and_bad_answers():
    model = torch.nn.Linear(4, 3)
    probs = TorchBlackBox(model, input_shape=(4,))
    labels = TorchBlackBox(model, input_shape=(4,), output="labels")
    x = torch.randn(5, 4)
    p = probs(x)
    assert torch.allclose(p, torch.softmax(model(x), -1).detach(), atol=1e-6)
    assert torch.equal(labels(x), p.argmax(-1)) and labels(x).dtype == torch.int64
    broken = CallableBlackBox(lambda x: torch.full((x.shape[0], 2), float("nan")), input_shape=(4,))
    with pytest.raises(BlackBoxError, match="non-finite"):
        broken(x)


def test_onnx_black_box_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    entry = export_module(model, torch.randn(3, 6), tmp_path / "m.onnx", output_name="logits")
    assert entry["max_abs_error"] < 1e-5
    bb = OnnxBlackBox(tmp_path / "m.onnx")
    assert bb.input_shape == (6,) and bb.num_classes == 4
    x = torch.randn(9, 6)
    assert np.allclose(bb(x).numpy(), torch.softmax(model(x), -1).detach().numpy(), atol=1e-5)
    assert bb.queries == 9
    with pytest.raises(FileNotFoundError):
        OnnxBlackBox(tmp_path / "missing.onnx")
