"""Compact perturbations of one parameter tensor, shared by models and oracles.

* :class:`CoordDelta` — ``θ + δ_i e_{j_i}``: q copies of one tensor, each with
  one entry changed (coordinate-wise ZO estimation, CGE);
* :class:`ChannelDelta` — the activations of q copies that differ from a shared
  base in one output channel each (what a CoordDelta becomes after the layer
  it perturbs; see :mod:`edgezo.models.staged_ops`).

Both are exact algebra on the dense result: ``dense()`` rebuilds it.
"""

from __future__ import annotations

import torch
from torch import Tensor


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

    def take(self, n: int) -> CoordDelta:
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

    def map(self, fn) -> ChannelDelta:
        """Apply a channel-wise op to the base and to the changed channels."""
        return ChannelDelta(fn(self.base), self.channel, fn(self.values))

    def dense(self) -> Tensor:
        """(B, q, C, ...) with every copy written out."""
        out = self.base.unsqueeze(1).repeat(1, self.q, *([1] * (self.base.dim() - 1)))
        out[:, self._rows(), self.channel] = self.values
        return out
