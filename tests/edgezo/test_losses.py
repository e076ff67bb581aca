"""Losses over a leading perturbation axis, against torch.nn.functional (fixed seeds, float32 rounding)."""

import torch
import torch.nn.functional as F

from edgezo.losses import cross_entropy, mse


def _reference(outputs, targets):
    return torch.stack([F.cross_entropy(o, targets) for o in outputs.reshape(-1, *outputs.shape[-2:])]).view(
        outputs.shape[:-2])


def test_cross_entropy_matches_torch_per_leading_index():
    torch.manual_seed(0)
    outputs, targets = torch.randn(7, 33, 5) * 4, torch.randint(0, 5, (33,))
    assert torch.allclose(cross_entropy(outputs, targets), _reference(outputs, targets), rtol=0, atol=2e-6)
    assert torch.allclose(cross_entropy(outputs[0], targets), F.cross_entropy(outputs[0], targets), atol=2e-6)


def test_a_leading_index_does_not_depend_on_the_others():
    torch.manual_seed(1)
    outputs, targets = torch.randn(9, 64, 10), torch.randint(0, 10, (64,))
    stacked = cross_entropy(outputs, targets)
    assert all(torch.equal(cross_entropy(outputs[i], targets), stacked[i]) for i in range(9))


def test_non_contiguous_outputs():
    torch.manual_seed(4)
    wide, targets = torch.randn(12, 5, 7), torch.randint(0, 5, (12,))
    outputs = wide.permute(2, 0, 1)[:, :, :5]  # (7, 12, 5) with odd strides
    assert torch.allclose(cross_entropy(outputs, targets), _reference(outputs.contiguous(), targets), atol=2e-6)


def test_rows_far_below_the_batch_maximum_keep_their_precision():
    torch.manual_seed(2)
    outputs, targets = torch.randn(3, 16, 4), torch.randint(0, 4, (16,))
    outputs[1, 5] -= 300.0  # exp(x - batch max) underflows to 0 for this row
    outputs[2, 0] += 1000.0
    got = cross_entropy(outputs, targets)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, _reference(outputs, targets), rtol=1e-6, atol=1e-4)


def test_mse_is_the_mean_over_batch_and_features():
    torch.manual_seed(3)
    outputs, targets = torch.randn(4, 8, 3), torch.randn(8, 3)
    expected = torch.stack([F.mse_loss(o, targets) for o in outputs])
    assert torch.allclose(mse(outputs, targets), expected, atol=1e-6)
