"""Outputs of a linear layer at q single-coordinate perturbations, without q forwards.

Coordinate-wise ZO estimation (CGE) evaluates ℓ(θ + δ_i e_{j_i}) for many
coordinates j_i of one parameter tensor. A TT layer is linear in each of its
cores, so changing one core entry changes the pre-activation by an exact,
cheap term (docs/methods/tensor-train-zo.md, "Coordinate queries"):

    G_k[a, i, j, c] += δ   ⇒   z[b, (I<, i, I>)] += δ · T_k[b, I<, a, j, c, I>]
                               (only the M / m_k outputs whose k-th index is i)

    T_k[b, I<, a, j, c, I>] = Σ_{J<, J>} x[b, (J<, j, J>)] · L_k[I<, J<, a] · R_k[c, I>, J>]

with L_k = G_1 ⋯ G_{k-1} (M_<k × N_<k × r_{k-1}) and R_k = G_{k+1} ⋯ G_K
(r_k × M_>k × N_>k) the merged cores on either side. T_k is computed once for
all coordinates of core k. A bias entry changes one output by δ, and a dense
weight entry W[o, c] changes output o by δ · x[:, c].

Each function returns ``(units, before, values)``: for copy i, the output
units that change (``units`` (q, s), the same count s for every copy), their
unperturbed values (``before`` (q, B, s), taken from ``z0``) and their new
pre-activation values (``values`` (q, B, s)); every other unit keeps ``z0``.
The values equal a plain forward of the perturbed layer up to float rounding (tests/models/test_ttm_coordinates.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .decomposition import merge_left, merge_right
from .layer import TTLinear

__all__ = ["tt_core_changes", "bias_changes", "linear_weight_changes", "scatter_changes", "layer_changes",
           "chunk_size", "units_changed"]


def tt_core_changes(layer: TTLinear, core: int, index: Tensor, delta: Tensor, x: Tensor,
                    z0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Changed outputs of ``layer`` when entry ``index[i]`` (flat) of core ``core`` moves by ``delta[i]``.

    ``x``: the layer input (B, N); ``z0``: its unperturbed output (B, M).
    Returns units (q, M / m_k), before and values (q, B, M / m_k).
    """
    cores = layer.cores
    g = cores[core]
    r0, m, n, r1 = g.shape
    before, after = cores[:core], cores[core + 1:]
    left = merge_left(before, [False] * len(before))[0] if before else x.new_ones(1, 1, 1)
    right = merge_right(after, [False] * len(after))[0] if after else x.new_ones(1, 1, 1)
    m_lt, n_lt = left.shape[0], left.shape[1]
    m_gt, n_gt = right.shape[1], right.shape[2]
    batch = x.shape[0]
    xr = x.reshape(batch, n_lt, n, n_gt)
    u = torch.einsum("bpjs,cis->bpjci", xr, right)  # (B, N_<, n, r1, M_>)
    t = torch.einsum("ipa,bpjcI->biajcI", left, u)  # (B, M_<, r0, n, r1, M_>)
    a, rest = index // (m * n * r1), index % (m * n * r1)
    i, jc = rest // (n * r1), rest % (n * r1)
    t = t.reshape(batch, m_lt, r0 * n * r1, m_gt).permute(2, 0, 1, 3)  # (r0·n·r1, B, M_<, M_>)
    change = t.index_select(0, a * (n * r1) + jc)  # (q, B, M_<, M_>)
    base = z0.reshape(batch, m_lt, m, m_gt).permute(2, 0, 1, 3).index_select(0, i)
    values = torch.addcmul(base, delta.to(x.dtype).reshape(-1, 1, 1, 1), change)
    lt = torch.arange(m_lt, device=x.device).reshape(1, m_lt, 1) * (m * m_gt)
    gt = torch.arange(m_gt, device=x.device).reshape(1, 1, m_gt)
    units = (lt + i.reshape(-1, 1, 1) * m_gt + gt).reshape(index.numel(), m_lt * m_gt)
    shape = (index.numel(), batch, m_lt * m_gt)
    return units, base.reshape(shape), values.reshape(shape)


def bias_changes(index: Tensor, delta: Tensor, z0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Bias entry ``index[i]`` moved by ``delta[i]``: one changed output per copy."""
    before = z0[:, index].t()
    return index.reshape(-1, 1), before.unsqueeze(-1), (before + delta.to(z0.dtype).reshape(-1, 1)).unsqueeze(-1)


def linear_weight_changes(layer: nn.Linear, index: Tensor, delta: Tensor, x: Tensor,
                          z0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Dense weight entry W[o, c] (flat ``index[i]``) moved by ``delta[i]``: output o gains δ · x[:, c]."""
    o, c = index // layer.in_features, index % layer.in_features
    before = z0[:, o].t()
    values = before + delta.to(x.dtype).reshape(-1, 1) * x[:, c].t()
    return o.reshape(-1, 1), before.unsqueeze(-1), values.unsqueeze(-1)


def scatter_changes(z0: Tensor, units: Tensor, values: Tensor) -> Tensor:
    """The q full outputs (q, B, M): ``z0`` everywhere except ``units``, which hold ``values``."""
    q = units.shape[0]
    out = z0.unsqueeze(0).repeat(q, 1, 1)
    rows = torch.arange(q, device=z0.device).reshape(q, 1)
    out.permute(0, 2, 1)[rows, units] = values.permute(0, 2, 1)
    return out


def layer_changes(layer: nn.Module, param: str, index: Tensor, delta: Tensor, x: Tensor,
                  z0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Dispatch on the perturbed parameter of a TTLinear (``coreK``, ``bias``) or nn.Linear (``weight``, ``bias``)."""
    if param == "bias":
        return bias_changes(index, delta, z0)
    if isinstance(layer, TTLinear) and param.startswith("core"):
        return tt_core_changes(layer, int(param[4:]), index, delta, x, z0)
    if isinstance(layer, nn.Linear) and param == "weight":
        return linear_weight_changes(layer, index, delta, x, z0)
    raise ValueError(f"no coordinate rule for parameter {param!r} of {type(layer).__name__}")


def chunk_size(batch: int, units: int, budget: int = 2**23) -> int:
    """Copies per chunk so that q · B · s changed values stay within ``budget`` elements."""
    return max(1, budget // max(1, batch * units))


def units_changed(layer: nn.Module, param: str) -> int:
    """How many outputs one coordinate of ``param`` changes (M / m_k for core k, else 1)."""
    if isinstance(layer, TTLinear) and param.startswith("core"):
        return layer.out_features // layer.out_modes[int(param[4:])]
    return 1


