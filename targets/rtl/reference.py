"""What the RTL device computes, in Python, bit for bit (docs/rtl.md).

Master weights: every parameter of a dense layer is an int16 ``t`` with the
layer's power-of-two step ``2^-e`` (:func:`layer_exponent`), so a weight is
``t · 2^-e`` exactly and reads back exactly as float32. The forward pass is
the ``fpga-int8`` datapath (:func:`edgezo.targets.numerics.int_linear`) of
the layer quantized with the fixed scale ``s_w = 2^(8-e)``:

* ``W_q = clamp(round_half_even(t / 2^8), -127, 127)``;
* ``b_q = round_half_even(t / 2^4)`` (the accumulator's scale ``s_w · 2^-4``);
* ``(m, shift) = requant_multiplier(s_w)`` (``m = 2^30``, ``shift = 22 + e``);
* inputs ``x_q = clamp(round_half_even(16 x), -128, 127)`` (Q3.4), ReLU on the
  int8 grid, logits ``y_q / 16``.

A perturbation or an update by ``s · z`` (``z`` the Rademacher direction of
docs/directions.md §4) becomes the integer ``delta = round_half_even(s · 2^e)``
per layer, and ``t ← clamp(t + delta · z, -2^15, 2^15 - 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..numerics import QuantizedLinear, int_linear, requant_multiplier

__all__ = ["FRAC_BITS", "layer_exponent", "to_master", "from_master", "delta_of", "quantized_layer",
           "forward_q", "rhe_shift", "RtlReference", "predictor_for"]

FRAC_BITS = 4
INT16 = (-(2**15), 2**15 - 1)
INT32 = (-(2**31), 2**31 - 1)


def layer_exponent(fan_in: int) -> int:
    """``e`` with step ``2^-e``: the int16 range ``±2^(15-e)`` is the smallest power of two ``R >= 4 / sqrt(fan_in)``
    (4x the default init bound ``1/sqrt(fan_in)``; an integer rule: ``R/2 >= 4/sqrt(n)  <=>  n >= 4^(3-k)``)."""
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    k = 2
    while k > -12 and fan_in >= 4 ** (3 - k):
        k -= 1
    return 15 - k


def to_master(w: np.ndarray | torch.Tensor, e: int) -> np.ndarray:
    """float weights -> int16 masters ``clamp(round_half_even(w · 2^e))`` (int64 array)."""
    w = np.asarray(w, dtype=np.float64)
    return np.clip(np.rint(w * 2.0**e), *INT16).astype(np.int64)


def from_master(t: np.ndarray, e: int) -> np.ndarray:
    """int16 masters -> float32 weights ``t · 2^-e`` (exact)."""
    return (np.asarray(t, dtype=np.float64) * 2.0**-e).astype(np.float32)


def delta_of(s: float, e: int) -> int:
    """The integer step of a float32 perturbation / update ``s``: ``clamp(round_half_even(s · 2^e), int32)``."""
    return int(np.clip(np.rint(np.float64(np.float32(s)) * 2.0**e), *INT32))


def rhe_shift(t: np.ndarray, k: int) -> np.ndarray:
    """round_half_even(t / 2^k) for int64 t (integer operations only)."""
    q = t >> k
    rem = t - (q << k)
    half = 1 << (k - 1)
    return q + ((rem > half) | ((rem == half) & (q & 1 == 1)))


def quantized_layer(t_w: np.ndarray, t_b: np.ndarray | None, e: int) -> QuantizedLinear:
    """The fpga-int8 layer of int16 masters ``t_w`` (out, in) and ``t_b`` (out,) with step ``2^-e``."""
    w_q = np.clip(rhe_shift(np.asarray(t_w, dtype=np.int64), 8), -127, 127)
    b_q = None if t_b is None else torch.from_numpy(rhe_shift(np.asarray(t_b, dtype=np.int64), 4))
    s_w = 2.0 ** (8 - e)
    m, shift = requant_multiplier(s_w)
    return QuantizedLinear(weight_q=torch.from_numpy(w_q), bias_q=b_q, weight_scale=s_w, multiplier=m, shift=shift,
                           in_frac_bits=FRAC_BITS, out_frac_bits=FRAC_BITS, act_bits=8, acc_bits=32)


def forward_q(x_q: torch.Tensor, layers: Sequence[QuantizedLinear], relu: Sequence[bool]) -> torch.Tensor:
    """int8 inputs (B, in) -> int8 outputs (B, out) through the layers (ReLU on the int grid where asked)."""
    h = x_q.to(torch.int64)
    for ql, r in zip(layers, relu):
        h = int_linear(h, ql)
        if r:
            h = h.clamp(min=0)
    return h


class RtlReference:
    """The RTL device's model: dense layers ``sizes`` with biases, ReLU between, int16 masters ``theta``."""

    def __init__(self, sizes: Sequence[int], bias: bool = True, relu: bool = True):
        self.sizes = [int(s) for s in sizes]
        self.bias = bool(bias)
        self.relu = bool(relu)
        self.exponents = [layer_exponent(n) for n in self.sizes[:-1]]
        self.slices = []
        off = 0
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            w = slice(off, off + a * b)
            off += a * b
            bs = slice(off, off + b) if self.bias else None
            off += b if self.bias else 0
            self.slices.append((w, bs))
        self.dim = off
        self.theta = np.zeros(self.dim, dtype=np.int64)

    def exponent_of(self) -> np.ndarray:
        """Per-parameter exponent (the layer's ``e``)."""
        out = np.empty(self.dim, dtype=np.int64)
        for (w, b), e in zip(self.slices, self.exponents):
            out[w] = e
            if b is not None:
                out[b] = e
        return out

    def load_float(self, flat: np.ndarray | torch.Tensor) -> None:
        flat = np.asarray(flat, dtype=np.float32)
        self.theta = np.clip(np.rint(flat.astype(np.float64) * 2.0 ** self.exponent_of()), *INT16).astype(np.int64)

    def as_float(self) -> np.ndarray:
        return (self.theta.astype(np.float64) * 2.0 ** -self.exponent_of()).astype(np.float32)

    def layers(self, theta: np.ndarray | None = None) -> list[QuantizedLinear]:
        t = self.theta if theta is None else theta
        out = []
        for (w, b), e, (a, n) in zip(self.slices, self.exponents, zip(self.sizes[:-1], self.sizes[1:])):
            out.append(quantized_layer(t[w].reshape(n, a), None if b is None else t[b], e))
        return out

    def logits(self, x: torch.Tensor, theta: np.ndarray | None = None) -> torch.Tensor:
        """float inputs -> float logits ``y_q / 16`` of the int8 datapath."""
        x_q = torch.round(x.reshape(x.shape[0], -1).to(torch.float64) * 2.0**FRAC_BITS).clamp(-128, 127)
        relu = [self.relu] * (len(self.sizes) - 2) + [False]
        return forward_q(x_q.to(torch.int64), self.layers(theta), relu).to(torch.float32) / 2.0**FRAC_BITS

    def perturbed(self, z: np.ndarray, s: float, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """``clamp(theta + delta_layer(s) · z)`` on ``[lo, hi)``; ``z`` is ±1 over that range."""
        hi = self.dim if hi is None else hi
        d = np.array([delta_of(s, e) for e in self.exponent_of()[lo:hi]], dtype=np.int64)
        out = self.theta.copy()
        out[lo:hi] = np.clip(out[lo:hi] + d * np.asarray(z, dtype=np.int64), *INT16)
        return out

    def update(self, z: np.ndarray, a: float, lo: int = 0, hi: int | None = None) -> None:
        self.theta = self.perturbed(z, a, lo, hi)


def predictor_for(model: torch.nn.Module):
    """``predict(x, flat_theta) -> logits`` of the RTL device for an MLP (``models/mlp.py``): the int8 datapath on
    the weights read back from the device (exact: ``t · 2^-e``), for test metrics computed on the host."""
    sizes = getattr(model, "sizes", None)
    if sizes is None or not all(isinstance(m, torch.nn.Linear) for m in model.layers):
        raise ValueError(f"the RTL device runs dense MLPs (models/mlp.py), not {type(model).__name__}")
    ref = RtlReference(sizes, bias=model.layers[0].bias is not None, relu=getattr(model, "activation", "") == "relu")

    def predict(x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        ref.load_float(flat.detach().cpu().numpy())
        return ref.logits(x.detach().cpu())

    return predict


def device_predictor(oracle, model):
    """``device_factory(predictor_for=...)`` hook: an ``rtl`` device's test metrics come from its int8
    datapath (:func:`predictor_for`); other devices predict in float32 on the host (None)."""
    if not str(oracle.info.get("name", "")).startswith("rtl:"):
        return None
    return predictor_for(model)
