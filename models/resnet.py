"""ResNet-20 for CIFAR-10 as a staged network (He et al., "Deep residual learning", CVPR 2016, §4.2).

conv3×3(16) → BN → ReLU, then three groups of three basic blocks (16, 32, 64
channels; the first block of groups 2 and 3 has stride 2), global average
pooling and a 64→10 linear layer: 269,722 parameters. Shortcuts are the
parameter-free "option A" of the paper (identity, subsampled by 2 and
zero-padded in channels where the shape changes).

Stages (for feature reuse, see :mod:`edgezo.models.cnn`): the stem, each of
the nine blocks, and the classifier — 11 stages. A coordinate in block ``b``
needs a forward from that block only. Batch norm uses batch statistics
everywhere (``track_running_stats=False``), per perturbed copy; DeepZero's
ResNet-20 experiments (Chen et al., ICLR 2024) estimate every normalization
parameter at every step.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .cnn import ChannelDelta, Params, PoolLinearStage, Stage, StagedNet, add, batch_norm, conv2d, relu


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class StemStage(Stage):
    """conv3×3 (no bias) → batch norm → ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _kaiming(nn.Conv2d(cin, cout, 3, padding=1, bias=False))
        self.bn = nn.BatchNorm2d(cout, track_running_stats=False)

    def forward(self, h: Tensor, params: Params | None = None) -> Tensor:
        p = self.param
        h = conv2d(h, p(params, "conv.weight"), None, padding=1)
        return relu(batch_norm(h, p(params, "bn.weight"), p(params, "bn.bias"), eps=self.bn.eps))


class BasicBlockStage(Stage):
    """``relu(bn2(conv2(relu(bn1(conv1(h))))) + shortcut(h))`` with an option-A shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _kaiming(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False))
        self.bn1 = nn.BatchNorm2d(cout, track_running_stats=False)
        self.conv2 = _kaiming(nn.Conv2d(cout, cout, 3, padding=1, bias=False))
        self.bn2 = nn.BatchNorm2d(cout, track_running_stats=False)
        self.stride, self.pad = int(stride), (cout - cin) // 2
        if cout < cin or (cout - cin) % 2:
            raise ValueError(f"option-A shortcut needs cout >= cin with an even difference, got {cin}->{cout}")

    def shortcut(self, h):
        if isinstance(h, ChannelDelta):  # subsampling and channel padding keep one changed channel per copy
            values = h.values[..., :: self.stride, :: self.stride]
            return ChannelDelta(self.shortcut(h.base), h.channel + self.pad, values)
        if self.stride != 1:
            h = h[..., :: self.stride, :: self.stride]
        if self.pad:
            h = F.pad(h, (0, 0, 0, 0, self.pad, self.pad))  # channels are dim -3 with or without copies
        return h

    def forward(self, h: Tensor, params: Params | None = None) -> Tensor:
        p = self.param
        out = conv2d(h, p(params, "conv1.weight"), None, stride=self.stride, padding=1)
        out = relu(batch_norm(out, p(params, "bn1.weight"), p(params, "bn1.bias"), eps=self.bn1.eps))
        out = conv2d(out, p(params, "conv2.weight"), None, padding=1)
        out = batch_norm(out, p(params, "bn2.weight"), p(params, "bn2.bias"), eps=self.bn2.eps)
        return relu(add(out, self.shortcut(h)))


class ResNetCifar(StagedNet):
    """CIFAR ResNet with ``blocks`` basic blocks per group (ResNet-(6·blocks+2)).

    Args:
        blocks: blocks per group (3 → ResNet-20).
        widths: channels of the three groups.
        in_channels, num_classes: input channels and classes.
    """

    def __init__(self, blocks: int = 3, widths: tuple[int, int, int] = (16, 32, 64), *, in_channels: int = 3,
                 num_classes: int = 10):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or any(w < 1 for w in widths):
            raise ValueError(f"widths must be three positive channel counts, got {widths}")
        stages: list[Stage] = [StemStage(in_channels, widths[0])]
        cin = widths[0]
        for g, w in enumerate(widths):
            for b in range(blocks):
                stride = 2 if g > 0 and b == 0 else 1
                stages.append(BasicBlockStage(cin, w, stride))
                cin = w
        stages.append(PoolLinearStage(cin, num_classes))
        self.stages = nn.ModuleList(stages)
        self.out_ndim = 2
        self.depth = 6 * blocks + 2


def resnet20(*, in_channels: int = 3, num_classes: int = 10) -> ResNetCifar:
    """ResNet-20 for 32×32 CIFAR images (269,722 parameters)."""
    return ResNetCifar(3, (16, 32, 64), in_channels=in_channels, num_classes=num_classes)


__all__ = ["ResNetCifar", "resnet20", "BasicBlockStage", "StemStage"]
