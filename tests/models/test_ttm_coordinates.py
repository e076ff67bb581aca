"""forward_coordinates (single-entry perturbations through the linear-in-the-entry rule) against
forward_stacked on the same perturbed copies."""

import pytest
import torch
from edgezo.models.ttm import TTMLP
from edgezo.models.ttm.coordinates import scatter_changes, units_changed

NETS = {
    "mnist-256": [([4, 7, 7, 4], [4, 4, 4, 4], 4), ([4, 4, 4, 4], [1, 5, 2, 1], 4)],
    "three-layers-with-dense": [([4, 7, 7, 4], [4, 4, 4, 4], 3), (256, 32), ([4, 8], [2, 5], 2)],
    "uneven-ranks": [([2, 3, 4], [3, 2, 2], [1, 2, 5, 1]), ([3, 4], [2, 5], 3)],
}


def _stacked_reference(net, name, index, delta, x):
    p = dict(net.named_parameters())[name]
    block = p.detach().reshape(-1).unsqueeze(0).repeat(index.numel(), 1)
    block[torch.arange(index.numel()), index] += delta
    return net.forward_stacked({name: block.reshape(index.numel(), *p.shape)}, x)


@pytest.mark.parametrize("net_name", sorted(NETS))
def test_every_parameter_matches_the_stacked_forward(net_name):
    torch.manual_seed(0)
    net = TTMLP(NETS[net_name])
    x = torch.randn(17, net.in_features)
    base = net(x)
    for name, p in net.named_parameters():
        n = min(24, p.numel())
        index = torch.randperm(p.numel())[:n]
        delta = torch.randn(n) * 0.3
        out = net.forward_coordinates(name, index, delta, x)
        ref = _stacked_reference(net, name, index, delta, x)
        assert out.shape == ref.shape == (n, 17, net.out_features)
        change = ref - base
        assert change.abs().max() > 1e-3, name  # the perturbation does move the output
        torch.testing.assert_close(out - base, change, atol=2e-6, rtol=1e-4, msg=name)


def test_chunks_give_the_same_result(monkeypatch):
    torch.manual_seed(1)
    net = TTMLP(NETS["mnist-256"])
    x = torch.randn(9, 784)
    index = torch.arange(448)
    delta = torch.full((448,), 0.05)
    whole = net.forward_coordinates("layers.0.core1", index, delta, x)
    import edgezo.models.ttm.coordinates as coordinates

    monkeypatch.setattr(coordinates, "chunk_size", lambda batch, units, budget=0: 7)
    torch.testing.assert_close(net.forward_coordinates("layers.0.core1", index, delta, x), whole)


def test_units_changed_by_one_core_entry():
    net = TTMLP(NETS["mnist-256"])
    assert units_changed(net.layers[0], "core1") == 256 // 4
    assert units_changed(net.layers[0], "bias") == 1
    assert units_changed(net.layers[1], "core1") == 10 // 5


def test_scatter_changes_writes_only_the_named_units():
    z0 = torch.zeros(2, 5)
    out = scatter_changes(z0, torch.tensor([[1, 3], [0, 4]]), torch.arange(8.0).reshape(2, 2, 2))
    assert out[0, :, [1, 3]].tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert out[1, :, [0, 4]].tolist() == [[4.0, 5.0], [6.0, 7.0]]
    assert out[0, :, [0, 2, 4]].abs().sum() == 0 and out[1, :, 1:4].abs().sum() == 0


def test_bad_parameter_name_says_what_names_look_like():
    net = TTMLP(NETS["mnist-256"])
    with pytest.raises(ValueError, match="layers.0.core1"):
        net.forward_coordinates("layers.7.core0", torch.tensor([0]), torch.tensor([0.1]), torch.randn(2, 784))
