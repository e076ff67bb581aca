r"""A small periodic 1-D CNN that corrects the state of a coarse PDE solver.

Solver-in-the-loop correction (Um et al., "Solver-in-the-Loop", NeurIPS 2020;
the PDE application of DeepZero, Chen et al., ICLR 2024, arXiv:2310.02025):
after every coarse solver step the network maps the state ``u`` (cell values on
a periodic grid of n cells) to

.. math::  C_\theta(u) = u + \delta_\theta(u),

with :math:`\delta_\theta` a stack of circularly padded 1-D convolutions
(``tanh`` between them). Two options shape :math:`\delta`:

* ``conservative=True`` (default): the last convolution produces an interface
  flux :math:`F_{j+1/2}` and :math:`\delta_j = -(F_{j+1/2} - F_{j-1/2})`, so
  :math:`\sum_j \delta_j = 0` — the correction keeps the mean of ``u`` exactly
  like a conservative finite-volume solver does. (A bias of that layer would
  cancel in the difference, so it has none.)
* ``zero_init=True`` (default): the last layer starts at zero, so the untrained
  corrector is the identity (no correction).

:meth:`PeriodicCorrector.forward_stacked` evaluates q parameter sets at once
(one grouped ``conv1d`` per layer, the perturbation axis folded into the
channel axis), on a shared state ``(B, n)`` or on one state per parameter set
``(q, B, n)`` — what a batched zeroth-order rollout needs, where every
perturbed corrector drives its own trajectory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_activation


class PeriodicCorrector(nn.Module):
    """``u (B, n) -> u + δ(u) (B, n)`` on a periodic grid.

    Args:
        channels: hidden channel counts, one hidden convolution each
            (``()`` gives a single linear stencil).
        kernel_size: odd kernel width of every convolution.
        activation: ``"tanh"`` (default), ``"relu"``, ``"gelu"`` or ``"sin"``.
        conservative: flux form of the output (see the module docstring).
        zero_init: zero the last layer so the untrained corrector is the identity.

    Parameters are named ``convs.{k}.weight`` ``(out, in, kernel_size)`` and
    ``convs.{k}.bias`` ``(out,)``.
    """

    def __init__(self, channels: Sequence[int] = (8, 8), kernel_size: int = 5, activation: str = "tanh", *,
                 conservative: bool = True, zero_init: bool = True):
        super().__init__()
        channels = [int(c) for c in channels]
        if any(c < 1 for c in channels):
            raise ValueError(f"channels must be positive integers, got {channels}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer (a centred periodic stencil), "
                             f"got {kernel_size}")
        get_activation(activation)  # a clear error for an unknown name
        self.channels = channels
        self.kernel_size = int(kernel_size)
        self.activation = activation
        self.conservative = bool(conservative)
        self.zero_init = bool(zero_init)
        sizes = [1, *channels, 1]
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, self.kernel_size, bias=not (self.conservative and k == len(sizes) - 2))
            for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
        )
        if self.zero_init:
            last = self.convs[-1]
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, kernel_size={self.kernel_size}, activation={self.activation!r}, "
                f"conservative={self.conservative}, zero_init={self.zero_init}")

    def _pad(self, h: torch.Tensor) -> torch.Tensor:
        """Periodic padding by ``kernel_size // 2`` cells on both ends of the last axis."""
        p = self.kernel_size // 2
        if p > h.shape[-1]:
            raise ValueError(f"kernel_size {self.kernel_size} is wider than the periodic grid of {h.shape[-1]} cells")
        return torch.cat((h[..., h.shape[-1] - p :], h, h[..., :p]), dim=-1) if p else h

    def _output(self, flux: torch.Tensor) -> torch.Tensor:
        """δ from the last layer's output (flux form when conservative)."""
        if self.conservative:
            return torch.roll(flux, 1, dims=-1) - flux  # -(F_{j+1/2} - F_{j-1/2}), F_{j+1/2} stored at j
        return flux

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.dim() != 2:
            raise ValueError(f"PeriodicCorrector expects states of shape (B, n), got {tuple(u.shape)}")
        act = get_activation(self.activation)
        h = u.unsqueeze(1)
        for k, conv in enumerate(self.convs):
            h = F.conv1d(self._pad(h), conv.weight, conv.bias)
            if k < len(self.convs) - 1:
                h = act(h)
        return u + self._output(h.squeeze(1))

    def forward_stacked(self, params: Mapping[str, torch.Tensor], u: torch.Tensor) -> torch.Tensor:
        """q parameter sets at once: ``params[name]`` has a leading axis q.

        ``u`` is ``(B, n)`` (shared by all q) or ``(q, B, n)``; returns
        ``(q, B, n)``. The q copies of a layer run as one grouped convolution
        (``groups = q``) over a ``(B, q·channels, n)`` activation.
        """
        act = get_activation(self.activation)
        q = next(iter(params.values())).shape[0]
        if u.dim() == 2:
            u = u.unsqueeze(0).expand(q, *u.shape)
        if u.dim() != 3 or u.shape[0] != q:
            raise ValueError(f"forward_stacked expects u of shape (B, n) or (q={q}, B, n), got {tuple(u.shape)}")
        _, b, n = u.shape
        h = u.permute(1, 0, 2)  # (B, q·1, n): group i owns channel block i
        for k in range(len(self.convs)):
            w = params[f"convs.{k}.weight"]  # (q, out, in, K)
            bias = params.get(f"convs.{k}.bias")  # (q, out)
            h = F.conv1d(self._pad(h), w.reshape(-1, *w.shape[2:]), None if bias is None else bias.reshape(-1),
                         groups=q)
            if k < len(self.convs) - 1:
                h = act(h)
        return u + self._output(h.permute(1, 0, 2))
