"""Networks for physics-informed training with forward passes only.

``PINNMLP`` is a fully connected network (sine activation by default, float64 by
default) with two batched forwards that the Stein PDE loss needs
(:mod:`edgezo.adapters.pinn.model`):

* ``forward_stacked(params, x)`` — q perturbed parameter sets at once, like
  :class:`edgezo.models.mlp.MLP`, except that ``params`` may hold only the
  perturbed tensors (a missing name means "this module's own tensor, shared by
  all q copies"). Layers before the first perturbed one run once, unstacked,
  and a perturbed layer whose input is still shared is one GEMM for all copies:
  ``(N, in) @ (in, q·out)``. With layer-wise or coordinate-wise perturbation of
  the last layer, a query then costs one (N, h)·(h, 1) product instead of a
  whole network pass.
* ``forward_shifted(params, x, shifts)`` — ``f(x_b + s_j)`` for every point
  ``x_b`` and every shift ``s_j`` (the quadrature nodes ``σ z_j``). The first
  layer is affine, so its pre-activation is separable::

      W (x_b + s_j) + b = (W x_b + b) + W s_j

  and costs B·h + n·h multiply-adds instead of B·n·h·in; only the additions and
  the rest of the network run on all B·n rows.

Sine networks for PINNs: Raissi et al. 2019 use tanh; the BP-free sparse-grid
PINN of Zhao et al. 2023 (arXiv:2308.09858) uses sine activations
(docs/methods/stein-pinn.md). ``output_init="zero"`` starts the last layer at zero (so the network
starts as the constant 0, like the "zero-init last layer" of Goyal et al. 2017
and Fixup), which the hard-constrained recipes use so that training starts at
the trivial baseline ``u = g`` instead of at a random function.
``first_scale`` multiplies the first layer's initial weights: SIREN (Sitzmann
et al. 2020) raises it (ω₀ = 30) for high frequencies; below 1 the sine
features start smooth and nearly affine in the input. On HJB-20 (where the
PDE loss is flat along smooth spurious modes, see
:mod:`edgezo.adapters.pinn.pde`) 300 first-order steps reached a relative L2
of 2.2e-3 at scale 1, 2.0e-4 at 0.25 and 1.6e-4 at 0.1 (seed 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .activations import ACTIVATIONS, get_activation
from .ttm import TTLinear

__all__ = ["PINNMLP", "ACTIVATIONS"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_OUTPUT_INITS = ("default", "zero")


def _build_layer(k: int, n_in: int, n_out: int, tt: Mapping[str, Any] | None, dtype: torch.dtype) -> nn.Module:
    """Layer k: ``nn.Linear(n_in, n_out)``, or a :class:`TTLinear` from ``tt = {in_modes, out_modes, rank}``."""
    if tt is None:
        return nn.Linear(n_in, n_out, dtype=dtype)
    unknown = set(tt) - {"in_modes", "out_modes", "rank"}
    if unknown or not {"in_modes", "out_modes", "rank"} <= set(tt):
        raise ValueError(f"tt[{k}] must be a table with in_modes, out_modes and rank; got {dict(tt)!r}")
    layer = TTLinear(tt["in_modes"], tt["out_modes"], tt["rank"], dtype=dtype)
    if (layer.in_features, layer.out_features) != (n_in, n_out):
        raise ValueError(f"tt[{k}]: modes {list(tt['in_modes'])} -> {list(tt['out_modes'])} give a "
                         f"{layer.in_features}->{layer.out_features} layer but sizes say {n_in}->{n_out}")
    return layer


class PINNMLP(nn.Module):
    """``sizes = [in, h1, ..., out]`` affine layers with ``activation`` between them.

    Args:
        sizes: layer widths, input first.
        activation: ``"sin"`` (default), ``"tanh"``, ``"gelu"`` or ``"silu"``.
        dtype: ``"float64"`` (default; the Stein estimators need it) or ``"float32"``.
        output_init: ``"default"`` (``nn.Linear``'s U(±1/√fan_in)) or ``"zero"``
            (last weight and bias start at 0).
        first_scale: multiplies the first layer's initial weights (SIREN's ω₀,
            Sitzmann et al. 2020; 1 = ``nn.Linear``'s default).

        tt: tensor-train hidden layers (Novikov et al. 2015; the BP-free PINN of
            Zhao et al. 2023, arXiv:2308.09858): ``tt[k] = {in_modes, out_modes,
            rank}`` makes layer k a :class:`~edgezo.models.ttm.TTLinear` (the
            first ``len(tt)`` layers; the output layer stays dense). Batched
            forwards rebuild each copy's dense W from its cores (q·M·N·r
            multiply-adds, negligible next to the rows) and then run the same
            GEMMs as a dense layer.

    Parameters are named ``layers.{k}.weight`` and ``layers.{k}.bias``
    (``layers.{k}.core{i}`` and ``layers.{k}.bias`` for a TT layer).
    """

    partial_stacked_params = True  # forward_stacked accepts a subset of the parameters

    def __init__(self, sizes: Sequence[int], activation: str = "sin", *, dtype: str = "float64",
                 output_init: str = "default", first_scale: float = 1.0,
                 tt: Sequence[Mapping[str, Any]] = ()):
        super().__init__()
        if len(sizes) < 2 or any(int(s) != s or int(s) < 1 for s in sizes):
            raise ValueError(f"sizes must list at least an input and an output width, all positive ints; got {sizes}")
        get_activation(activation)  # a clear error for an unknown name
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if output_init not in _OUTPUT_INITS:
            raise ValueError(f"output_init must be one of {_OUTPUT_INITS}, got {output_init!r}")
        self.sizes = [int(s) for s in sizes]
        self.activation = activation
        self._act = get_activation(activation)
        self.layers = nn.ModuleList(_build_layer(k, a, b, tt[k] if k < len(tt) else None, _DTYPES[dtype])
                                    for k, (a, b) in enumerate(zip(self.sizes, self.sizes[1:])))
        if len(tt) >= len(self.layers):
            raise ValueError(f"tt lists {len(tt)} layers but the network has {len(self.layers)}; the output layer "
                             "stays dense (give one table per hidden layer at most)")
        with torch.no_grad():
            first = self.layers[0]
            (first.core0 if isinstance(first, TTLinear) else first.weight).mul_(float(first_scale))
            if output_init == "zero":
                self.layers[-1].weight.zero_()
                self.layers[-1].bias.zero_()
        self.in_features, self.out_features = self.sizes[0], self.sizes[-1]

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, activation={self.activation!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < last:
                h = self._act(h)
        return h

    # ------------------------------------------------------------------ batched forwards
    def _check(self, params: Mapping[str, torch.Tensor], q: int | None) -> int:
        own = dict(self.named_parameters())
        qs = set() if q is None else {int(q)}
        for name, t in params.items():
            if name not in own:
                raise ValueError(f"unknown parameter {name!r}; known: {sorted(own)}")
            if t.ndim != own[name].ndim + 1 or tuple(t.shape[1:]) != tuple(own[name].shape):
                raise ValueError(f"params[{name!r}] must have shape (q, {', '.join(map(str, own[name].shape))}), "
                                 f"got {tuple(t.shape)}")
            qs.add(int(t.shape[0]))
        if len(qs) != 1:
            raise ValueError("forward_stacked needs q: pass stacked params or q=..." if not qs
                             else f"inconsistent perturbation axis sizes q: {sorted(qs)}")
        return qs.pop()

    def _layer(self, k: int, params: Mapping[str, torch.Tensor], h: torch.Tensor, h_q: bool, q: int):
        """Layer k on h ((*rows, in) shared or (q, *rows, in) stacked); returns (out, stacked?)."""
        layer = self.layers[k]
        b_name = f"layers.{k}.bias"
        w, w_q = self.weight(k, params)
        b_q = b_name in params
        b = params.get(b_name, layer.bias)
        n_in, n_out = layer.in_features, layer.out_features
        rows = h.shape[1:-1] if h_q else h.shape[:-1]
        R = h.numel() // (n_in * (q if h_q else 1))
        if h_q and w_q:  # (matmul then add_ measured faster than baddbmm on CPU)
            out = torch.matmul(h.reshape(q, R, n_in), w.transpose(1, 2)).add_(b.unsqueeze(1) if b_q else b)
        elif w_q and n_out == 1:  # shared input, q output rows: one GEMM (q, in) @ (in, R), already (q, R, 1)
            out = (w.reshape(q, n_in) @ h.reshape(R, n_in).T).unsqueeze(-1).add_(b.unsqueeze(1) if b_q else b)
        elif w_q:  # shared input, q weights: one GEMM (R, in) @ (in, q·out)
            y = (h.reshape(R, n_in) @ w.reshape(q * n_out, n_in).T).view(R, q, n_out).transpose(0, 1)
            out = torch.empty(q, R, n_out, dtype=y.dtype, device=y.device)
            out.copy_(y).add_(b.unsqueeze(1) if b_q else b)
        elif h_q:
            if b_q:
                out = (h.reshape(q * R, n_in) @ w.T).view(q, R, n_out).add_(b.unsqueeze(1))
            else:
                out = torch.addmm(b, h.reshape(q * R, n_in), w.T).view(q, R, n_out)
        elif b_q:
            out = (h.reshape(R, n_in) @ w.T).unsqueeze(0) + b.unsqueeze(1)
        else:
            return torch.addmm(b, h.reshape(R, n_in), w.T).view(*rows, n_out), False
        return out.view(q, *rows, n_out), True

    def weight(self, k: int, params: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """Layer k's dense weight, ``((q?, out, in), stacked?)``; a TT layer's is rebuilt from its cores."""
        layer = self.layers[k]
        if isinstance(layer, TTLinear):
            return layer.stacked_weight([params.get(f"layers.{k}.core{i}") for i in range(layer.num_cores)])
        name = f"layers.{k}.weight"
        return params.get(name, layer.weight), name in params

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if h.requires_grad and torch.is_grad_enabled():
            return self._act(h)
        if self.activation == "sin":
            return h.sin_()
        if self.activation == "tanh":
            return h.tanh_()
        return self._act(h)

    def forward_stacked(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, *, q: int | None = None
                        ) -> torch.Tensor:
        """q parameter sets at once: returns (q, N, out).

        ``params[name]`` has shape (q, *shape); missing names are this module's
        own tensors, shared by all copies. ``x`` is (N, in), shared.
        """
        q = self._check(params, q)
        h, h_q = x, False
        last = len(self.layers) - 1
        for k in range(len(self.layers)):
            h, h_q = self._layer(k, params, h, h_q, q)
            if k < last:
                h = self._activate(h)
        return h if h_q else h.unsqueeze(0).expand(q, *h.shape)

    def forward_shifted(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, shifts: torch.Tensor, *,
                        q: int | None = None) -> torch.Tensor:
        """``f(x_b + s_j)`` for q parameter sets: x (B, in), shifts (n, in) → (q, B, n, out).

        The first layer's pre-activation is formed as ``(W x_b + b) + W s_j``
        (separable, see the module docstring); the remaining layers run on the
        B·n rows.
        """
        q = self._check(params, q)
        first = {k: v for k, v in params.items() if k.startswith("layers.0.")}
        a, a_q = self._layer(0, first, x, False, q)  # (q?, B, h) with the bias
        w, w_q = self.weight(0, params)
        if w_q:
            s = torch.matmul(shifts, w.transpose(1, 2))  # (q, n, h)
            pre = (a if a_q else a.unsqueeze(0)).unsqueeze(-2) + s.unsqueeze(1)
            h_q = True
        else:
            s = shifts @ w.T  # (n, h)
            pre = a.unsqueeze(-2) + s  # (q?, B, n, h)
            h_q = a_q
        h = self._activate(pre) if len(self.layers) > 1 else pre
        last = len(self.layers) - 1
        for k in range(1, len(self.layers)):
            h, h_q = self._layer(k, params, h, h_q, q)
            if k < last:
                h = self._activate(h)
        return h if h_q else h.unsqueeze(0).expand(q, *h.shape)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

