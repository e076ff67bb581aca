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

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Params = Mapping[str, Tensor]

# --------------------------------------------------------------------------- copy-aware ops


class CoordDelta:
    """q copies of one parameter tensor: copy ``i`` is ``base`` with flat entry ``index[i]`` set to ``values[i]``.

    A coordinate perturbation is rank one, so ops can skip the q-fold work of
    the perturbed layer: ``conv(h, W + δ E_{o,c,a,b}) = conv(h, W) + δ · P_{c,a,b}(h)``
    in output channel ``o``, with ``P_{c,a,b}(h)`` the input patch row
    (``F.unfold``) — one shared convolution plus q patch additions. Likewise
    for a bias, a linear weight and a batch-norm scale or shift. The result is
    a :class:`ChannelDelta`. ``δ`` is taken as ``values − base[index]``, the
    perturbation actually stored, so the result matches a network holding
    ``values`` (up to rounding). Ops that cannot use the structure call
    :meth:`dense`.
    """

    def __init__(self, base: Tensor, index: Tensor, values: Tensor):
        if index.dim() != 1 or values.shape != index.shape:
            raise ValueError(f"index and values must be 1-D of equal length, got {tuple(index.shape)} "
                             f"and {tuple(values.shape)}")
        self.base, self.index, self.values = base, index, values.to(base.dtype)

    @property
    def q(self) -> int:
        return int(self.index.numel())

    def dim(self) -> int:
        return self.base.dim() + 1

    @property
    def delta(self) -> Tensor:
        return self.values - self.base.reshape(-1)[self.index]

    def unravel(self, inner: int) -> tuple[Tensor, Tensor]:
        """(row, column) of each index in the base viewed as (rows, ``inner``)."""
        return self.index // inner, self.index % inner

    def take(self, n: int) -> "CoordDelta":
        """The first ``n`` copies."""
        return CoordDelta(self.base, self.index[:n], self.values[:n])

    def dense(self) -> Tensor:
        """The q copies as one stacked tensor (q, *base.shape)."""
        block = self.base.unsqueeze(0).repeat(self.q, *([1] * self.base.dim()))
        block.view(self.q, -1)[torch.arange(self.q, device=block.device), self.index] = self.values
        return block


class ChannelDelta:
    """q copies of an activation that differ from a shared ``base`` (B, C, ...) in one channel each.

    Copy ``i`` equals ``base`` except channel ``channel[i]``, which holds
    ``values[:, i]`` (``values``: (B, q, ...)). This is what a coordinate
    perturbation of a layer produces, and channel-wise ops keep it (batch norm
    with per-copy statistics, ReLU, pooling) at 1/C of the dense cost. The next
    conv or linear layer is linear in its input, so it needs only the change:
    ``conv(base + Δ_i e_c) = conv(base) + conv(Δ_i, W[:, c])`` — a grouped
    conv with one input channel per copy. Its output is dense.
    """

    def __init__(self, base: Tensor, channel: Tensor, values: Tensor):
        self.base, self.channel, self.values = base, channel, values

    @property
    def q(self) -> int:
        return int(self.channel.numel())

    def dim(self) -> int:
        return self.base.dim() + 1

    def _rows(self) -> Tensor:
        return torch.arange(self.q, device=self.base.device)

    def changed(self) -> Tensor:
        """``values − base[:, channel]`` (B, q, ...)."""
        return self.values - self.base[:, self.channel]

    def map(self, fn) -> "ChannelDelta":
        """Apply a channel-wise op to the base and to the changed channels."""
        return ChannelDelta(fn(self.base), self.channel, fn(self.values))

    def dense(self) -> Tensor:
        """(B, q, C, ...) with every copy written out."""
        out = self.base.unsqueeze(1).repeat(1, self.q, *([1] * (self.base.dim() - 1)))
        out[:, self._rows(), self.channel] = self.values
        return out


def _dense(p):
    return p.dense() if isinstance(p, (CoordDelta, ChannelDelta)) else p


def _plain(t, ndim: int) -> bool:
    """``t`` is absent or an ordinary (unstacked) tensor of ``ndim`` dimensions."""
    return t is None or (isinstance(t, Tensor) and t.dim() == ndim)


def _copies(*items: tuple[Tensor | None, int, int]) -> int | None:
    """The copy count q read from the first ``(tensor, base ndim, copy axis)`` whose tensor is stacked."""
    for t, base, axis in items:
        if isinstance(t, (CoordDelta, ChannelDelta)):
            return t.q
        if t is not None and t.dim() > base:
            return int(t.shape[axis])
    return None


def _coord_perturbed(weight, bias, weight_ndim: int):
    """(perturbed CoordDelta, plain weight, plain bias) when exactly one of them is a CoordDelta
    and the other is an ordinary tensor; else None."""
    if isinstance(weight, CoordDelta) and _plain(bias, 1):
        return weight, weight.base, bias
    if isinstance(bias, CoordDelta) and _plain(weight, weight_ndim):
        return bias, weight, bias.base
    return None


def conv2d(h, weight, bias, *, stride: int = 1, padding: int = 0):
    """2-D convolution where input, weight and bias may each carry copies.

    ``h``: (B, C, H, W), (B, q, C, H, W) or a :class:`ChannelDelta`;
    ``weight``: (O, C, k, k), (q, O, C, k, k) or a :class:`CoordDelta`;
    ``bias``: (O,), (q, O) or a :class:`CoordDelta`. Returns (B, O, H', W')
    when nothing is stacked, a :class:`ChannelDelta` for a coordinate
    perturbation on a shared input, else (B, q, O, H', W').
    """
    if isinstance(h, ChannelDelta):
        if _plain(weight, 4) and _plain(bias, 1):
            base = F.conv2d(h.base, weight, bias, stride, padding)
            q, out_ch = h.q, weight.shape[0]
            w = weight[:, h.channel].transpose(0, 1).reshape(q * out_ch, 1, *weight.shape[2:])
            change = F.conv2d(h.changed(), w, None, stride, padding, groups=q)
            return base.unsqueeze(1) + change.view(base.shape[0], q, out_ch, *change.shape[2:])
        h = h.dense()
    pert = _coord_perturbed(weight, bias, 4) if h.dim() == 4 else None
    if pert is not None:
        p, w, b = pert
        base = F.conv2d(h, w, b, stride, padding)
        flat = base.reshape(*base.shape[:2], -1)
        if p is weight:
            row, col = p.unravel(w[0].numel())
            cols = F.unfold(h, w.shape[-2:], padding=padding, stride=stride)  # (B, C·kh·kw, L)
            values = flat[:, row] + p.delta[:, None] * cols[:, col]
        else:
            row = p.index
            values = flat[:, row] + p.delta[:, None]
        return ChannelDelta(base, row, values.view(base.shape[0], p.q, *base.shape[2:]))
    weight, bias = _dense(weight), _dense(bias)
    hs, ws = h.dim() == 5, weight.dim() == 5
    bs = bias is not None and bias.dim() == 2
    q = _copies((h, 4, 1), (weight, 4, 0), (bias, 1, 0))
    if q is None:
        return F.conv2d(h, weight, bias, stride, padding)
    out_ch = weight.shape[-4]
    tiled_bias = None
    if bias is not None:
        tiled_bias = bias.reshape(-1) if bs else bias.repeat(q)
    if ws:
        w = weight.reshape(q * out_ch, *weight.shape[2:])
        if hs:  # per-copy weights on per-copy inputs: grouped conv over q groups
            out = F.conv2d(h.reshape(h.shape[0], -1, *h.shape[3:]), w, tiled_bias, stride, padding, groups=q)
        else:  # per-copy weights on a shared input: q·O output channels
            out = F.conv2d(h, w, tiled_bias, stride, padding)
        return out.view(out.shape[0], q, out_ch, *out.shape[2:])
    if hs:  # shared weights on per-copy inputs: one conv over B·q images
        b, qq = h.shape[:2]
        out = F.conv2d(h.reshape(b * qq, *h.shape[2:]), weight, None if bs else bias, stride, padding)
        out = out.view(b, qq, *out.shape[1:])
    else:
        out = F.conv2d(h, weight, None, stride, padding).unsqueeze(1)
    if bs:
        out = out + bias.view(q, out_ch, 1, 1)
    return out


def batch_norm(h, weight, bias, *, eps: float = 1e-5):
    """Batch norm with batch statistics per copy.

    ``h``: (B, C, H, W), (B, q, C, H, W) or a :class:`ChannelDelta`;
    ``weight``/``bias``: (C,), (q, C) or a :class:`CoordDelta`. Statistics are
    over (B, H, W) of each copy and channel (biased variance).
    """
    if isinstance(h, ChannelDelta):
        if _plain(weight, 1) and _plain(bias, 1):  # only the changed channels need new statistics
            base = F.batch_norm(h.base, None, None, weight, bias, True, 0.0, eps)
            w = weight[h.channel] if weight is not None else None
            b = bias[h.channel] if bias is not None else None
            return ChannelDelta(base, h.channel, F.batch_norm(h.values, None, None, w, b, True, 0.0, eps))
        h = h.dense()
    pert = _coord_perturbed(weight, bias, 1) if h.dim() == 4 else None
    if pert is not None:
        p, w, b = pert
        normed = F.batch_norm(h, None, None, None, None, True, 0.0, eps)
        base = normed * w.view(-1, 1, 1) if w is not None else normed
        if b is not None:
            base = base + b.view(-1, 1, 1)
        scale = normed[:, p.index] if p is weight else 1.0
        return ChannelDelta(base, p.index, base[:, p.index] + p.delta[:, None, None] * scale)
    weight, bias = _dense(weight), _dense(bias)
    q = _copies((h, 4, 1), (weight, 1, 0), (bias, 1, 0))
    if q is None:
        return F.batch_norm(h, None, None, weight, bias, True, 0.0, eps)
    if h.dim() == 4:  # shared input, per-copy affine: normalize once, then scale and shift q ways
        c = h.shape[1]
        out = F.batch_norm(h, None, None, None, None, True, 0.0, eps).unsqueeze(1)
        if weight is not None:
            out = out * weight.view(-1, c, 1, 1)
        if bias is not None:
            out = out + bias.view(-1, c, 1, 1)
        return out.expand(out.shape[0], q, *out.shape[2:])
    b, _, c = h.shape[:3]

    def tile(p: Tensor | None) -> Tensor | None:
        if p is None:
            return None
        return p.reshape(-1) if p.dim() == 2 else p.repeat(q)

    out = F.batch_norm(h.reshape(b, q * c, *h.shape[3:]), None, None, tile(weight), tile(bias), True, 0.0, eps)
    return out.view(b, q, c, *out.shape[2:])


def linear(h, weight, bias):
    """``h Wᵀ + b`` with copies: ``h`` (B, F), (B, q, F) or a :class:`ChannelDelta`;
    ``weight`` (O, F), (q, O, F) or a :class:`CoordDelta`."""
    if isinstance(h, ChannelDelta):
        if _plain(weight, 2) and _plain(bias, 1):
            base = F.linear(h.base, weight, bias)
            return base.unsqueeze(1) + h.changed().unsqueeze(-1) * weight[:, h.channel].T.unsqueeze(0)
        h = h.dense()
    pert = _coord_perturbed(weight, bias, 2) if h.dim() == 2 else None
    if pert is not None:
        p, w, b = pert
        base = F.linear(h, w, b)
        if p is weight:
            row, col = p.unravel(w.shape[1])
            values = base[:, row] + p.delta * h[:, col]
        else:
            row = p.index
            values = base[:, row] + p.delta
        return ChannelDelta(base, row, values)
    weight, bias = _dense(weight), _dense(bias)
    q = _copies((h, 2, 1), (weight, 2, 0), (bias, 1, 0))
    if q is None or weight.dim() == 2:
        bs = bias is not None and bias.dim() == 2
        out = F.linear(h, weight, None if bs else bias)
        if q is not None and out.dim() == 2:
            out = out.unsqueeze(1)
        return out + bias if bs else out
    out_f = weight.shape[1]
    if h.dim() == 2:
        out = F.linear(h, weight.reshape(q * out_f, -1)).view(h.shape[0], q, out_f)
    else:
        out = torch.bmm(h.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1)
    if bias is not None:
        out = out + bias
    return out


def _per_image(fn, h: Tensor, base: int = 4) -> Tensor:
    """Apply an image op ``fn`` (B, C, H, W) → (B, C, H', W') to (B, q, C, H, W) by merging (B, q)."""
    if h.dim() == base:
        return fn(h)
    b, q = h.shape[:2]
    out = fn(h.reshape(b * q, *h.shape[2:]))
    return out.view(b, q, *out.shape[1:])


def relu(h):
    return h.map(torch.relu) if isinstance(h, ChannelDelta) else torch.relu(h)


def max_pool2d(h, kernel: int = 2):
    """2×2 max-pool of (B, [q,] C, H, W) or of a :class:`ChannelDelta` (channel-wise: stays sparse)."""
    if isinstance(h, ChannelDelta):
        return h.map(lambda t: F.max_pool2d(t, kernel))
    return _per_image(lambda t: F.max_pool2d(t, kernel), h)


def global_avg_pool(h):
    """(B, [q,] C, H, W) → (B, [q,] C)."""
    if isinstance(h, ChannelDelta):
        return h.map(lambda t: t.mean(dim=(-2, -1)))
    return h.mean(dim=(-2, -1))


def add(a, b):
    """``a + b`` where either may be shared (B, ...), stacked (B, q, ...) or a :class:`ChannelDelta`."""
    if isinstance(a, ChannelDelta) and isinstance(b, Tensor) and b.dim() == a.base.dim():
        return ChannelDelta(a.base + b, a.channel, a.values + b[:, a.channel])
    if isinstance(b, ChannelDelta) and isinstance(a, Tensor) and a.dim() == b.base.dim():
        return add(b, a)
    a, b = _dense(a), _dense(b)
    if a.dim() < b.dim():
        a = a.unsqueeze(1)
    elif b.dim() < a.dim():
        b = b.unsqueeze(1)
    return a + b


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


__all__ = ["CNN", "CoordDelta", "ChannelDelta", "StagedNet", "add", "relu", "Stage", "ConvStage", "PoolLinearStage", "conv2d", "batch_norm", "linear",
           "max_pool2d", "global_avg_pool", "cnn_param_count"]
