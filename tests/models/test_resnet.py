"""ResNet-20 as a staged network: size, stage reuse, copy-aware blocks (float64 references)."""

import pytest
import torch
from edgezo.models import build_model
from edgezo.models.cnn import CoordDelta
from edgezo.models.resnet import ResNetCifar, resnet20
from torch.func import functional_call


def test_resnet20_size_and_stages():
    model = build_model({"kind": "resnet20"})
    assert sum(p.numel() for p in model.parameters()) == 269_722
    assert model.num_stages == 11  # stem, 9 basic blocks, classifier
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_forward_from_every_stage_matches(f64):
    torch.manual_seed(0)
    model = ResNetCifar(1, (4, 8, 16))  # ResNet-8 keeps the test fast; same block code as ResNet-20
    x = torch.randn(3, 3, 16, 16)
    full = model(x)
    hs = model.stage_inputs(x)
    for stage in range(model.num_stages):
        assert (model.forward_from(stage, hs[stage]) - full).abs().max() < 1e-10


@pytest.mark.parametrize("name", ["stages.0.conv.weight", "stages.1.conv1.weight", "stages.1.bn2.bias",
                                  "stages.2.conv1.weight", "stages.2.conv2.weight", "stages.2.bn1.weight",
                                  "stages.4.fc.weight"])
def test_copies_equal_one_at_a_time(f64, name):
    torch.manual_seed(0)
    model = ResNetCifar(1, (4, 8, 16))
    x = torch.randn(3, 3, 16, 16)
    hs = model.stage_inputs(x)
    p = dict(model.named_parameters())[name].detach()
    idx = torch.tensor([0, p.numel() // 2, p.numel() - 1])
    pert = CoordDelta(p, idx, p.reshape(-1)[idx] + torch.tensor([0.2, -0.1, 0.3]))
    block = pert.dense()
    ref = torch.stack([functional_call(model, {name: block[i]}, (x,)) for i in range(3)])
    stage = model.stage_of(name)
    for override in (block, pert):
        assert (model.forward_copies(stage, hs[stage], {name: override}) - ref).abs().max() < 1e-10


def test_resnet20_block_strides():
    model = resnet20()
    hs = model.stage_inputs(torch.zeros(1, 3, 32, 32))
    assert [tuple(h.shape[1:]) for h in hs[1:10:3]] == [(16, 32, 32), (16, 32, 32), (32, 16, 16)]
    assert tuple(hs[10].shape[1:]) == (64, 8, 8)


def test_bad_widths():
    with pytest.raises(ValueError, match="widths"):
        ResNetCifar(3, (16, 32))
