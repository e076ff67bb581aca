"""Staged CNN: DeepZero's parameter counts, forward from a cached stage, copy-aware stage forwards."""

import pytest
import torch
from edgezo.models import build_model
from edgezo.models.cnn import CNN, CoordDelta, batch_norm, cnn_param_count, conv2d, linear
from torch.func import functional_call


def small_cnn(**kw):
    torch.manual_seed(0)
    spec = dict(depth=3, width=5, in_channels=1, image_size=8, min_size=2)
    spec.update(kw)
    return CNN(**spec)


@pytest.mark.parametrize("depth,count", [(1, 730), (2, 3700), (3, 6670), (4, 9640), (5, 12610)])
def test_deepzero_parameter_counts_at_32x32(depth, count):
    model = CNN(depth, 18)  # DeepZero's CIFAR-10 table: 730 / 3,700 / 6,670 / 9,640 / 12,610
    assert sum(p.numel() for p in model.parameters()) == count == cnn_param_count(depth)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_registry_builds_digits_cnn():
    model = build_model({"kind": "cnn", "depth": 2, "width": 18, "in_channels": 1, "image_size": 8, "min_size": 2})
    assert sum(p.numel() for p in model.parameters()) == 3376
    assert [s.pool for s in model.stages[:-1]] == [True, True]


def test_forward_from_cached_stage_equals_full_forward(f64):
    model = small_cnn()
    x = torch.randn(6, 1, 8, 8)
    full = model(x)
    hs = model.stage_inputs(x)
    assert torch.equal(hs[-1], full)
    for stage in range(model.num_stages):
        assert (model.forward_from(stage, hs[stage]) - full).abs().max() < 1e-10


def _perturbed_copies(p: torch.Tensor, q: int, scale: float = 0.3):
    idx = (torch.arange(q) * 7 + 3) % p.numel()
    values = p.detach().reshape(-1)[idx] + scale * torch.linspace(-1, 1, q)
    return CoordDelta(p.detach(), idx, values)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_copies_equal_one_at_a_time(f64, norm):
    model = small_cnn(norm=norm)
    x = torch.randn(5, 1, 8, 8)
    hs = model.stage_inputs(x)
    for name, p in model.named_parameters():
        stage, pert = model.stage_of(name), _perturbed_copies(p, 4)
        block = pert.dense()
        ref = torch.stack([functional_call(model, {name: block[i]}, (x,)) for i in range(4)])
        for override in (block, pert):  # stacked copies and the rank-one path
            out = model.forward_copies(stage, hs[stage], {name: override})
            assert out.shape == (4, 5, 10)
            assert (out - ref).abs().max() < 1e-10, name


def test_forward_stacked_all_parameters(f64):
    model = small_cnn()
    x = torch.randn(4, 1, 8, 8)
    params = {n: p.detach() + 0.05 * torch.randn(3, *p.shape) for n, p in model.named_parameters()}
    out = model.forward_stacked(params, x)
    ref = torch.stack([functional_call(model, {n: v[i] for n, v in params.items()}, (x,)) for i in range(3)])
    assert (out - ref).abs().max() < 1e-10


def test_batch_norm_uses_per_copy_statistics(f64):
    h = torch.randn(7, 3, 4, 2, 2)  # (B, q, C, H, W): three copies with different statistics
    h[:, 1] *= 5.0
    out = batch_norm(h, torch.ones(4), torch.zeros(4))
    for i in range(3):
        ref = torch.nn.functional.batch_norm(h[:, i], None, None, training=True)
        assert (out[:, i] - ref).abs().max() < 1e-10


def test_ops_mixed_stacking(f64):
    x = torch.randn(3, 2, 5, 5)
    w, b = torch.randn(4, 2, 3, 3), torch.randn(4)
    ws, bs = torch.randn(2, 4, 2, 3, 3), torch.randn(2, 4)
    out = conv2d(x, ws, bs, padding=1)  # shared input, per-copy weights
    for i in range(2):
        assert (out[:, i] - torch.nn.functional.conv2d(x, ws[i], bs[i], padding=1)).abs().max() < 1e-10
    xs = torch.randn(3, 2, 2, 5, 5)  # per-copy input, shared then per-copy weights
    out = conv2d(xs, w, b, stride=2, padding=1)
    out2 = conv2d(xs, ws, b, padding=1)
    for i in range(2):
        assert (out[:, i] - torch.nn.functional.conv2d(xs[:, i], w, b, 2, 1)).abs().max() < 1e-10
        assert (out2[:, i] - torch.nn.functional.conv2d(xs[:, i], ws[i], b, 1, 1)).abs().max() < 1e-10
    h = torch.randn(3, 6)
    lw = torch.randn(2, 4, 6)
    out = linear(h, lw, None)
    assert (out[:, 1] - h @ lw[1].T).abs().max() < 1e-10


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="norm"):
        CNN(2, 8, norm="layer")
    with pytest.raises(ValueError, match="depth"):
        CNN(0, 8)
    with pytest.raises(ValueError, match="width lists"):
        CNN(2, [8, 8, 8])
    with pytest.raises(KeyError, match="stage parameter"):
        CNN.stage_of("fc.weight")
    with pytest.raises(IndexError):
        small_cnn().forward_from(9, torch.zeros(1, 1, 8, 8))
