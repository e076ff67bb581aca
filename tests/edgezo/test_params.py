import pytest
import torch
from torch import nn

from edgezo.params import ParamSpace


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_default_single_group_counts():
    space = ParamSpace(small_net())
    assert space.dim == 4 * 3 + 3 + 3 * 2 + 2
    assert space.counts() == {"all": 23}


def test_pattern_groups_are_contiguous_in_declaration_order():
    space = ParamSpace(small_net(), {"biases": "*.bias", "first": ["0.weight"]})
    assert space.group_names == ("biases", "first", "rest")
    assert space.counts() == {"biases": 5, "first": 12, "rest": 6}
    b = space.layout.group("biases")
    assert (b.offset, b.stop) == (0, 5)
    assert space.layout.group("first").offset == 5


def test_per_tensor_and_per_module():
    net = small_net()
    assert ParamSpace(net, "per_tensor").group_names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert ParamSpace(net, "per_module").counts() == {"0": 15, "2": 8}


def test_bad_group_specs():
    net = small_net()
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        ParamSpace(net, {"x": "nothing.*"})
    with pytest.raises(ValueError, match="matches both"):
        ParamSpace(net, {"a": "0.*", "b": "0.weight"})
    with pytest.raises(ValueError, match="unknown group spec"):
        ParamSpace(net, "by_color")
    with pytest.raises(KeyError, match="unknown parameter group"):
        ParamSpace(net).layout.group("missing")


def test_flat_roundtrip_and_group_set():
    net = small_net()
    space = ParamSpace(net, {"biases": "*.bias"})
    flat = space.get_flat()
    new = torch.arange(space.dim, dtype=flat.dtype)
    space.set_flat(new)
    assert torch.equal(space.get_flat(), new)
    assert torch.equal(net[0].bias.detach(), new[0:3])
    space.set_flat(torch.zeros(5), group="biases")
    assert torch.equal(net[2].bias.detach(), torch.zeros(2))
    with pytest.raises(ValueError, match="expected a 1-D tensor of 23"):
        space.set_flat(torch.zeros(3))


def test_set_grad_and_split():
    net = small_net()
    space = ParamSpace(net)
    g = torch.randn(space.dim)
    space.set_grad_flat(g)
    assert torch.equal(net[0].weight.grad.reshape(-1), g[:12])
    parts = space.layout.split(torch.stack([g, 2 * g]))
    assert parts["2.bias"].shape == (2, 2)
    assert torch.equal(parts["2.bias"][1], 2 * g[-2:])


def test_frozen_parameters_are_excluded():
    net = small_net()
    net[0].weight.requires_grad_(False)
    assert ParamSpace(net).dim == 11
