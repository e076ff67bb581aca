"""Staged CNNs for coordinate-wise ZO training with feature reuse (DeepZero).

A *staged* network is a chain of stages, ``f(x) = s_{L-1}(··· s_1(s_0(x)))``.
When one coordinate of stage ``l`` is perturbed, the input ``h_l`` of that
stage is unchanged, so a coordinate-wise estimate (CGE) can compute every
``h_l`` once per batch and run only ``s_l, …, s_{L-1}`` per coordinate
(feature reuse; Chen et al., "DeepZero", ICLR 2024, arXiv:2310.02025).

Every stage runs with *parameter overrides* (a dict of local name → tensor).
An override may carry a leading perturbation axis ``q`` (q perturbed copies of
that tensor); activations then carry the copy axis second, ``(B, q, ...)``.
With this layout all copies go through one call of a fast kernel:

* conv, shared input ``(B, C, H, W)``, stacked weights ``(q, O, C, k, k)``:
  one conv with ``q·O`` output channels;
* conv, stacked input ``(B, q, C, H, W)``, shared weights: one conv on the
  batch ``B·q``; stacked weights: a grouped conv (``groups=q``) on
  ``(B, q·C, H, W)``;
* batch norm with batch statistics per copy: ``F.batch_norm`` on
  ``(B, q·C, H, W)`` with the affine parameters tiled q times;
* linear: ``F.linear`` over the copy axis, or a batched matmul for stacked
  weights.

Whether a tensor is stacked is read from its number of dimensions.

Coordinate perturbations go further (:class:`CoordDelta`): ``θ + δ e_j``
changes one entry of one tensor, so the perturbed layer runs once on its
shared input and each copy adds a rank-one change confined to one output
channel (:class:`ChannelDelta`). Batch norm (per-copy statistics of the
changed channel only), ReLU and pooling keep that form at 1/C of the dense
cost, and the next conv or linear layer needs only the change through one
input channel (a grouped conv with one group per copy). From there on the
copies are dense. Each step is exact algebra; results equal a plain forward
of the perturbed network up to floating-point rounding.

Normalization under ZO: batch norm always uses the statistics of the batch it
normalizes (``track_running_stats=False``), in training, in every perturbed
copy (each copy is normalized with its own statistics, exactly as if it ran
alone) and at test time. No buffer is ever mutated, so the loss is a pure
function of (θ, batch) — which zeroth-order differences need — and the
feature-reuse path matches a plain forward exactly. Predictions are made on
large test chunks, where batch statistics approach population statistics.

:class:`CNN` is DeepZero's adjustable CNN family: ``depth`` blocks of
conv3×3 (+bias) → batch norm → ReLU → 2×2 max-pool, then global average
pooling and a linear classifier. At 32×32×3 input and width 18 the depths
1…5 give 730 / 3,700 / 6,670 / 9,640 / 12,610 parameters (the paper's table).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .deltas import ChannelDelta, CoordDelta
from .staged_ops import (
    Params,
    _dense,
    add,
    batch_norm,
    conv2d,
    global_avg_pool,
    linear,
    max_pool2d,
    relu,
)

# --------------------------------------------------------------------------- staged networks


class Stage(nn.Module):
    """One stage: ``forward(h, params=None)`` with optional (stacked) parameter overrides."""

    def param(self, params: Params | None, name: str) -> Tensor | None:
        """The override ``params[name]`` if given, else the stage's own tensor (None if absent)."""
        if params is not None and name in params:
            return params[name]
        obj = self
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    def forward(self, h: Tensor, params: Params | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class StagedNet(nn.Module):
    """A chain of :class:`Stage` modules held in ``self.stages``.

    Parameter names are ``stages.{l}.<local name>``. Subclasses set
    ``self.stages`` (an ``nn.ModuleList``) and ``self.out_ndim`` (the number of
    dimensions of one output, e.g. 2 for ``(B, classes)``).
    """

    stages: nn.ModuleList
    out_ndim: int = 2

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @staticmethod
    def stage_of(name: str) -> int:
        """The stage index of parameter ``stages.{l}.…``."""
        parts = name.split(".")
        if len(parts) < 3 or parts[0] != "stages" or not parts[1].isdigit():
            raise KeyError(f"{name!r} is not a stage parameter (expected 'stages.<index>.<name>')")
        return int(parts[1])

    @staticmethod
    def _local(params: Params | None, stage: int) -> dict[str, Tensor] | None:
        if not params:
            return None
        prefix = f"stages.{stage}."
        local = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        return local or None

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_from(0, x)

    def forward_from(self, start: int, h: Tensor, params: Params | None = None) -> Tensor:
        """Run stages ``start, …, L-1`` on the stage input ``h``.

        ``params`` maps full parameter names to overrides (stacked or not); the
        output is (B, …) or, when something is stacked, (B, q, …).
        """
        if not 0 <= start < self.num_stages:
            raise IndexError(f"stage {start} is outside [0, {self.num_stages})")
        for i in range(start, self.num_stages):
            h = self.stages[i](h, self._local(params, i))
        return h

    def stage_inputs(self, x: Tensor) -> list[Tensor]:
        """``[h_0 = x, h_1, …, h_{L-1}, f(x)]``: every stage input, then the output."""
        hs = [x]
        for stage in self.stages:
            hs.append(stage(hs[-1]))
        return hs

    def to_copies_first(self, out: Tensor) -> Tensor:
        """Output (B, q, …) → (q, B, …); an unstacked output gets q = 1."""
        out = _dense(out)
        if out.dim() == self.out_ndim:
            return out.unsqueeze(0)
        return out.transpose(0, 1)

    def forward_copies(self, start: int, h: Tensor, params: Params) -> Tensor:
        """Stages ``start…`` with stacked overrides; returns (q, B, …)."""
        return self.to_copies_first(self.forward_from(start, h, params))

    def forward_stacked(self, params: Params, x: Tensor) -> Tensor:
        """All parameters stacked (q, *shape): q whole perturbed networks at once → (q, B, …).

        The ``forward_stacked`` protocol of :class:`~edgezo.oracles.torch_oracle.TorchOracle`.
        """
        return self.forward_copies(0, x, params)


class ConvStage(Stage):
    """conv k×k (stride 1, same padding, + bias) → [batch norm] → ReLU → [2×2 max-pool].

    Evaluated as conv → norm → pool → ReLU, which is the same function
    (``max(relu(a), relu(b)) = relu(max(a, b))``) with a quarter of the ReLU work.
    """

    def __init__(self, cin: int, cout: int, *, kernel_size: int = 3, norm: str = "batch", pool: bool = True,
                 bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)
        self.norm = nn.BatchNorm2d(cout, track_running_stats=False) if norm == "batch" else None
        self.pool = bool(pool)

    def forward(self, h: Tensor, params: Params | None = None) -> Tensor:
        p = self.param
        h = conv2d(h, p(params, "conv.weight"), p(params, "conv.bias"), padding=self.conv.padding[0])
        if self.norm is not None:
            h = batch_norm(h, p(params, "norm.weight"), p(params, "norm.bias"), eps=self.norm.eps)
        if self.pool:  # max-pool and ReLU commute exactly; pooling first quarters the ReLU work
            h = max_pool2d(h)
        return relu(h)


class PoolLinearStage(Stage):
    """Global average pooling → linear classifier."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, h: Tensor, params: Params | None = None) -> Tensor:
        if h.dim() >= 4:
            h = global_avg_pool(h)
        return linear(h, self.param(params, "fc.weight"), self.param(params, "fc.bias"))


NORMS = ("batch", "none")


class CNN(StagedNet):
    """DeepZero's adjustable CNN: ``depth`` conv blocks of ``width`` channels, then pool + linear.

    Args:
        depth: number of conv blocks (stages before the classifier stage).
        width: channels of every conv block (an int), or one count per block.
        in_channels, num_classes: input channels and classes.
        image_size: input height = width (only used to place the max-pools).
        min_size: a block max-pools (2×2) only while its output would stay ≥
            ``min_size`` pixels (1: pool in every block that can, as DeepZero
            does on 32×32; 2 suits 8×8 digits).
        norm: ``"batch"`` (batch statistics, see the module docstring) or ``"none"``.
        kernel_size: conv kernel size (odd).

    Stages: ``depth`` :class:`ConvStage` then one :class:`PoolLinearStage`.
    """

    def __init__(self, depth: int = 2, width: int | Sequence[int] = 18, *, in_channels: int = 3,
                 num_classes: int = 10, image_size: int = 32, min_size: int = 1, norm: str = "batch",
                 kernel_size: int = 3):
        super().__init__()
        widths = [int(width)] * int(depth) if isinstance(width, int) else [int(w) for w in width]
        if isinstance(width, int) and depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if not isinstance(width, int) and len(widths) != depth:
            raise ValueError(f"width lists {len(widths)} channel counts but depth is {depth}")
        if any(w < 1 for w in widths) or in_channels < 1 or num_classes < 1:
            raise ValueError(f"channel counts must be positive (width={width}, in_channels={in_channels})")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; use one of {NORMS}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.widths, self.image_size = widths, int(image_size)
        stages, cin, size = [], int(in_channels), int(image_size)
        for w in widths:
            pool = size // 2 >= max(1, int(min_size))
            stages.append(ConvStage(cin, w, kernel_size=kernel_size, norm=norm, pool=pool))
            size = size // 2 if pool else size
            cin = w
        stages.append(PoolLinearStage(cin, int(num_classes)))
        self.stages = nn.ModuleList(stages)
        self.out_ndim = 2


def cnn_param_count(depth: int, width: int = 18, in_channels: int = 3, num_classes: int = 10,
                    norm: str = "batch", kernel_size: int = 3) -> int:
    """Trainable parameters of :class:`CNN` without building it."""
    k2 = kernel_size * kernel_size
    per_norm = 2 * width if norm == "batch" else 0
    first = in_channels * width * k2 + width + per_norm
    rest = (depth - 1) * (width * width * k2 + width + per_norm)
    return first + rest + width * num_classes + num_classes


__all__ = ["CNN", "CoordDelta", "ChannelDelta", "StagedNet", "add", "relu", "Stage", "ConvStage", "PoolLinearStage",
           "conv2d", "batch_norm", "linear", "max_pool2d", "global_avg_pool", "cnn_param_count"]
