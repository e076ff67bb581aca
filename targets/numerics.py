"""Forward simulators that make a torch model compute like a target's datapath.

Zeroth-order training only ever *evaluates* the model, so a target's
arithmetic can be simulated exactly in the forward pass and trained
straight through (Zhao et al. 2023, arXiv:2308.09858: BP-free training for
FPGA / photonic hardware). The simulators are deliberately
non-differentiable: they run under ``torch.no_grad()`` and round / add
noise with no straight-through gradient.

Integer datapath (``weight_format`` int8, e.g. the ``fpga-int8`` profile)
--------------------------------------------------------------------------
For every linear layer ``y = W x + b``:

1. weights: per-tensor symmetric quantization,
   ``s_w = max|W| / 127``, ``W_q = clamp(round(W / s_w), -127, 127)``
   (``round`` is round-half-to-even; ``s_w = 1`` for an all-zero tensor);
2. inputs: fixed point with ``f = activation_frac_bits`` fractional bits,
   ``x_q = clamp(round(x * 2^f), -128, 127)``;
3. bias: at the accumulator's scale ``s_w * 2^-f``,
   ``b_q = clamp(round(b * 2^f / s_w), int32)``;
4. ``acc = sat_int32(W_q x_q + b_q)`` — exact integer arithmetic (the dot
   products are formed in float64, which is exact because every partial
   sum is an integer below 2^53; then held in int64 and saturated to the
   int32 range, which equals a saturating int32 accumulator whenever no
   partial sum overflows — guaranteed for fan-in < 2^31 / 127 / 128 ≈ 132k);
5. requantize to the output fixed point (same ``f``) with an integer
   multiplier and shift, as integer-only hardware does:
   ``s_w ≈ m · 2^-shift`` with ``m`` a 31-bit integer in [2^30, 2^31),
   ``y_q = clamp(round_half_even(acc · m / 2^shift), -128, 127)``.

Values between layers are handed over as floats ``y_q · 2^-f`` (exact), so
ReLU (exact on the grid), Flatten and Dropout act on them unchanged, and a
tanh / sine between two layers is evaluated in float and re-quantized by the
next layer's step 2 — the same numbers a 256-entry lookup table gives. The
model's output is the dequantized int8 grid of its last layer.

Noisy analog datapath (``noise = "multiplicative"``, e.g. ``photonic-noisy``)
------------------------------------------------------------------------------
Every multiply-accumulate of a photonic engine is perturbed
multiplicatively, independently per MAC and per call:

    y_j = sum_i W_ji x_i (1 + eps_ji),   eps_ji ~ N(0, s^2).

``granularity = "mac"`` (default) samples this model *exactly* with one
Gaussian per output element: a sum of independent Gaussians is Gaussian, so

    y_j = (W x)_j + s · sqrt(sum_i (W_ji x_i)^2) · xi_j,   xi_j ~ N(0, 1),

which has the same distribution as the per-MAC model (independent across
outputs and batch rows, since those use disjoint MACs) at the cost of one
extra matmul of ``W^2`` with ``x^2`` instead of materializing a
(B, out, in) noise tensor. ``granularity = "output"`` instead uses
``y = (W x) ⊙ (1 + eps)``, eps ~ N(0, s^2) per output element (a cruder
model in which the noise is relative to the output, not to each product).
The bias is added after the noisy sum (it is not a MAC). Noise comes from
the ``torch.Generator`` given to :class:`SimulatedForward` (the global RNG
when None), so a fixed seed reproduces a run.

Float formats: ``fp32`` is the host's own arithmetic (tensors keep their
dtype, float64 included); ``fp16`` / ``bf16`` weights and activations are
rounded to that format and accumulated in the input dtype. An fp32 profile
without noise (``host-cpu``, ``cortex-m*``) runs the model unchanged.

Supported layers: ``nn.Linear``, any module exposing ``dense_weight()``
(e.g. a tensor-train layer: its dense reconstruction, shaped
``(out_features, in_features)`` like ``nn.Linear.weight``, plus an optional
``bias`` attribute), and the parameter-free ReLU, Tanh, sine (a module named
``Sin`` / ``Sine``), Identity, Flatten, Unflatten and Dropout. Any other
module raises :class:`NotImplementedError` naming its type. Functions called
inside a custom ``forward`` (``torch.sin(x)``, ``F.relu``) act on the
dequantized values as described above.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .profile import ProfileLike, TargetProfile, load_profile

__all__ = [
    "QuantizedLinear",
    "quantize_symmetric",
    "quantize_fixed",
    "dequantize_fixed",
    "requant_multiplier",
    "rounding_right_shift",
    "int_matmul",
    "quantize_linear",
    "int_linear",
    "quantized_linear",
    "noisy_linear",
    "SimulatedForward",
    "quantized_forward",
    "noisy_forward",
    "SUPPORTED_ELEMENTWISE",
]

#: parameter-free modules a simulated forward passes through unchanged
SUPPORTED_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.Tanh,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
)
_SINE_NAMES = {"sin", "sine", "sinactivation", "sineactivation"}


# --------------------------------------------------------------------------
# integer building blocks
# --------------------------------------------------------------------------


def quantize_symmetric(w: Tensor, bits: int = 8) -> tuple[Tensor, float]:
    """Per-tensor symmetric quantization: ``(W_q int64, s_w)``.

    ``s_w = max|w| / (2^(bits-1) - 1)`` (1.0 for an all-zero tensor),
    ``W_q = clamp(round_half_even(w / s_w), -qmax, qmax)``; computed in float64.
    """
    qmax = 2 ** (bits - 1) - 1
    wd = w.detach().to(torch.float64)
    amax = float(wd.abs().max()) if wd.numel() else 0.0
    scale = amax / qmax if amax > 0 else 1.0
    q = torch.round(wd / scale).clamp_(-qmax, qmax).to(torch.int64)
    return q, scale


def quantize_fixed(x: Tensor, frac_bits: int, bits: int = 8) -> Tensor:
    """Fixed point: ``clamp(round_half_even(x * 2^frac_bits), -2^(bits-1), 2^(bits-1)-1)`` as int64."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return torch.round(x.detach().to(torch.float64) * (2.0**frac_bits)).clamp_(lo, hi).to(torch.int64)


def dequantize_fixed(q: Tensor, frac_bits: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``q * 2^-frac_bits`` (exact for |q| < 2^24 in float32)."""
    return q.to(dtype) * (2.0**-frac_bits)


def requant_multiplier(real: float) -> tuple[int, int]:
    """``(m, shift)`` with ``real ≈ m · 2^-shift``, ``2^30 <= m < 2^31``.

    ``m = round_half_even(mantissa(real) · 2^31)``; ``shift`` may exceed 62
    for tiny ``real`` (then every requantized value is 0).
    """
    if not (real > 0 and math.isfinite(real)):
        raise ValueError(f"requantization scale must be positive and finite, got {real!r}")
    mant, exp = math.frexp(real)  # real = mant * 2^exp, 0.5 <= mant < 1
    m = round(mant * 2**31)
    if m == 2**31:
        m //= 2
        exp += 1
    shift = 31 - exp
    if shift < 1:
        raise ValueError(f"requantization scale {real!r} too large for a 31-bit multiplier")
    return m, shift


def rounding_right_shift(x: Tensor, shift: int) -> Tensor:
    """``round_half_even(x / 2^shift)`` for int64 ``x``, integer operations only."""
    if shift <= 0:
        raise ValueError("shift must be >= 1")
    if shift >= 63:
        return torch.zeros_like(x)
    q = torch.bitwise_right_shift(x, shift)  # arithmetic: floor(x / 2^shift)
    rem = x - torch.bitwise_left_shift(q, shift)  # in [0, 2^shift)
    half = 1 << (shift - 1)
    up = (rem > half) | ((rem == half) & (torch.bitwise_and(q, 1) == 1))
    return q + up.to(torch.int64)


def int_matmul(a: Tensor, b: Tensor) -> Tensor:
    """Exact integer ``a @ b`` of int64 tensors, returned as int64.

    Uses a float64 matmul when every partial sum is provably below 2^53
    (then each addition is exact in any order), int64 otherwise (CPU).
    """
    k = a.shape[-1]
    amax = int(a.abs().max()) if a.numel() else 0
    bmax = int(b.abs().max()) if b.numel() else 0
    if k * amax * bmax < 2**53:
        return (a.to(torch.float64) @ b.to(torch.float64)).to(torch.int64)
    if a.device.type != "cpu":
        return (a.cpu() @ b.cpu()).to(a.device)
    return a @ b


@dataclass(frozen=True)
class QuantizedLinear:
    """The integer form of one linear layer on an int datapath.

    ``weight_q`` (out, in) and ``bias_q`` (out,) are int64 tensors holding
    int8 / int32 values; ``y_q = requant(W_q x_q + b_q)`` with
    ``multiplier · 2^-shift ≈ weight_scale · 2^(out_frac - in_frac)``.
    """

    weight_q: Tensor
    bias_q: Tensor | None
    weight_scale: float
    multiplier: int
    shift: int
    in_frac_bits: int
    out_frac_bits: int
    act_bits: int
    acc_bits: int


def quantize_linear(
    weight: Tensor, bias: Tensor | None, profile: ProfileLike, *, out_frac_bits: int | None = None
) -> QuantizedLinear:
    """Quantize ``(weight, bias)`` for ``profile``'s integer datapath (steps 1, 3, 5)."""
    prof = load_profile(profile)
    if not prof.is_integer:
        raise ValueError(f"profile {prof.name} has no integer datapath ({prof.weight_format} weights)")
    f_in = prof.activation_frac_bits
    f_out = f_in if out_frac_bits is None else out_frac_bits
    acc = prof.accumulator_fmt
    w_q, s_w = quantize_symmetric(weight, prof.weight_fmt.bits)
    b_q = None
    if bias is not None:
        b = bias.detach().to(torch.float64)
        b_q = torch.round((b * (2.0**f_in)) / s_w).clamp_(acc.qmin, acc.qmax).to(torch.int64)
    m, shift = requant_multiplier(s_w * 2.0 ** (f_out - f_in))
    return QuantizedLinear(
        weight_q=w_q,
        bias_q=b_q,
        weight_scale=s_w,
        multiplier=m,
        shift=shift,
        in_frac_bits=f_in,
        out_frac_bits=f_out,
        act_bits=prof.activation_fmt.bits,
        acc_bits=acc.bits,
    )


def int_linear(x_q: Tensor, ql: QuantizedLinear) -> Tensor:
    """Integer layer: int64 fixed-point ``x_q`` (..., in) -> int64 fixed-point ``y_q`` (..., out)."""
    lead = x_q.shape[:-1]
    x2 = x_q.reshape(-1, x_q.shape[-1])
    acc = int_matmul(x2, ql.weight_q.to(x2.device).T)
    if ql.bias_q is not None:
        acc = acc + ql.bias_q.to(acc.device)
    acc = acc.clamp_(-(2 ** (ql.acc_bits - 1)), 2 ** (ql.acc_bits - 1) - 1)  # saturating accumulator
    y = rounding_right_shift(acc * ql.multiplier, ql.shift)
    y = y.clamp_(-(2 ** (ql.act_bits - 1)), 2 ** (ql.act_bits - 1) - 1)
    return y.reshape(*lead, -1)


def quantized_linear(x: Tensor, weight: Tensor, bias: Tensor | None, profile: ProfileLike) -> Tensor:
    """Float in, float out: quantize ``x``, run :func:`int_linear`, dequantize."""
    prof = load_profile(profile)
    ql = quantize_linear(weight, bias, prof)
    x_q = quantize_fixed(x, ql.in_frac_bits, ql.act_bits)
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    return dequantize_fixed(int_linear(x_q, ql), ql.out_frac_bits, out_dtype)


# --------------------------------------------------------------------------
# float / noisy building blocks
# --------------------------------------------------------------------------


def _round_to_format(t: Tensor, fmt_name: str) -> Tensor:
    """Round ``t`` to fp16 / bf16 storage and back; fp32 means "as is"."""
    if fmt_name == "fp16":
        return t.to(torch.float16).to(t.dtype)
    if fmt_name == "bf16":
        return t.to(torch.bfloat16).to(t.dtype)
    return t


def _randn_like(t: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.randn(t.shape, dtype=t.dtype, device=t.device)
    z = torch.randn(t.shape, dtype=t.dtype, device=generator.device, generator=generator)
    return z.to(t.device)


def noisy_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    profile: ProfileLike,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A linear layer on a float datapath, with the profile's MAC noise (if any).

    See the module docstring for the noise model ("mac": exact per-MAC
    sampling via one Gaussian per output; "output": ``(W x) ⊙ (1 + eps)``).
    """
    prof = load_profile(profile)
    if prof.is_integer:
        raise ValueError(f"profile {prof.name} has an integer datapath: use quantized_linear")
    x = _round_to_format(x.detach(), prof.activation_format)
    w = _round_to_format(weight.detach().to(x.dtype), prof.weight_format)
    y = x @ w.T
    if prof.has_noise:
        s = prof.noise_relative_std
        if prof.noise_granularity == "mac":
            sd = (x * x) @ (w * w).T
            y = y + s * sd.sqrt() * _randn_like(y, generator)
        else:
            y = y * (1.0 + s * _randn_like(y, generator))
    if bias is not None:
        y = y + _round_to_format(bias.detach().to(y.dtype), prof.weight_format)
    return _round_to_format(y, prof.activation_format)


# --------------------------------------------------------------------------
# the wrapper
# --------------------------------------------------------------------------


def _is_linear_like(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or callable(getattr(m, "dense_weight", None))


def _is_elementwise(m: nn.Module) -> bool:
    if isinstance(m, SUPPORTED_ELEMENTWISE):
        return True
    return type(m).__name__.lower() in _SINE_NAMES and not any(True for _ in m.parameters())


def _collect_linear(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear-like modules of ``model``; NotImplementedError for anything unsupported."""
    found: list[tuple[str, nn.Module]] = []

    def walk(m: nn.Module, name: str) -> None:
        where = name or "<root>"
        if _is_linear_like(m):
            found.append((name, m))
            return
        children = list(m.named_children())
        own = [n for n, _ in m.named_parameters(recurse=False)]
        if children:
            if own:
                raise NotImplementedError(
                    f"SimulatedForward: module '{where}' of type {type(m).__name__} holds parameters "
                    f"directly ({', '.join(own)}); only nn.Linear and modules with dense_weight() "
                    "may own parameters"
                )
            for n, c in children:
                walk(c, f"{name}.{n}" if name else n)
            return
        if _is_elementwise(m):
            return
        raise NotImplementedError(
            f"SimulatedForward: unsupported layer type {type(m).__name__} at '{where}'; supported: "
            "nn.Linear, modules with dense_weight(), ReLU, Tanh, sine (Sin/Sine), Identity, "
            "Flatten, Unflatten, Dropout"
        )

    walk(model, "")
    return found


def _weight_and_bias(m: nn.Module, in_features: int) -> tuple[Tensor, Tensor | None]:
    if isinstance(m, nn.Linear):
        return m.weight, m.bias
    w = m.dense_weight()
    if w.dim() != 2:
        raise ValueError(f"{type(m).__name__}.dense_weight() must be 2-D, got shape {tuple(w.shape)}")
    if w.shape[1] != in_features and w.shape[0] == in_features:
        w = w.T  # (in, out) convention
    b = getattr(m, "bias", None)
    return w, b if isinstance(b, Tensor) else None


class SimulatedForward(nn.Module):
    """``model`` evaluated on ``profile``'s datapath (int8 and/or noisy MACs).

    ``forward(x)`` runs the simulated datapath (no gradients);
    ``forward_stacked(params, x)`` evaluates q parameter sets given as
    ``{name: tensor with a leading q axis}`` (names as in
    ``model.named_parameters()``; missing names keep the model's own
    values) and returns ``(q, B, ...)``. Each call, and each of the q sets,
    draws fresh noise from ``generator`` (the global RNG when None).

    The wrapped model is used in place: during a call, the ``forward`` of its
    linear layers is temporarily replaced (not thread-safe).
    """

    def __init__(self, model: nn.Module, profile: ProfileLike, *, generator: torch.Generator | None = None):
        super().__init__()
        self.model = model
        self.profile: TargetProfile = load_profile(profile)
        self.generator = generator
        self._linear = _collect_linear(model)
        p = self.profile
        self.passthrough = (
            not p.is_integer
            and not p.has_noise
            and p.weight_format == p.activation_format == p.accumulator_format == "fp32"
        )

    def extra_repr(self) -> str:
        return f"profile={self.profile.name!r}"

    def _simulated_linear(self, m: nn.Module, x: Tensor) -> Tensor:
        w, b = _weight_and_bias(m, x.shape[-1])
        if self.profile.is_integer:
            return quantized_linear(x, w, b, self.profile)
        return noisy_linear(x, w, b, self.profile, self.generator)

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
        saved = []
        try:
            for _, m in self._linear:
                saved.append((m, m.__dict__.get("forward", None), "forward" in m.__dict__))
                m.forward = (lambda mod: (lambda x, *a, **k: self._simulated_linear(mod, x)))(m)
            yield
        finally:
            for m, fwd, had in saved:
                if had:
                    m.forward = fwd
                else:
                    del m.__dict__["forward"]

    def _run(self, params: Mapping[str, Tensor] | None, x: Tensor) -> Tensor:
        with torch.no_grad():
            if self.passthrough:
                if params:
                    return functional_call(self.model, dict(params), (x,), strict=False)
                return self.model(x)
            with self._patched():
                if params:
                    return functional_call(self.model, dict(params), (x,), strict=False)
                return self.model(x)

    def forward(self, x: Tensor) -> Tensor:
        return self._run(None, x)

    def forward_stacked(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        if not params:
            raise ValueError("forward_stacked needs at least one parameter tensor with a leading q axis")
        known = dict(self.model.named_parameters())
        known.update(dict(self.model.named_buffers()))
        qs = set()
        for k, v in params.items():
            if k not in known:
                raise ValueError(f"unknown parameter {k!r}; model parameters: {', '.join(known)}")
            if v.shape[1:] != known[k].shape:
                raise ValueError(
                    f"parameter {k!r}: expected shape (q, {', '.join(map(str, known[k].shape))}), "
                    f"got {tuple(v.shape)}"
                )
            qs.add(v.shape[0])
        if len(qs) != 1:
            raise ValueError(f"all stacked parameters need the same leading q, got {sorted(qs)}")
        (q,) = qs
        outs = [self._run({k: v[i] for k, v in params.items()}, x) for i in range(q)]
        return torch.stack(outs)


def quantized_forward(model: nn.Module, x: Tensor, profile: ProfileLike = "fpga-int8") -> Tensor:
    """``model(x)`` on an integer datapath (see the module docstring)."""
    prof = load_profile(profile)
    if not prof.is_integer:
        raise ValueError(f"profile {prof.name} has no integer datapath ({prof.weight_format} weights)")
    return SimulatedForward(model, prof)(x)


def noisy_forward(
    model: nn.Module,
    x: Tensor,
    profile: ProfileLike = "photonic-noisy",
    generator: torch.Generator | None = None,
) -> Tensor:
    """``model(x)`` with the profile's multiplicative MAC noise."""
    prof = load_profile(profile)
    if not prof.has_noise:
        raise ValueError(f"profile {prof.name} has no noise model")
    return SimulatedForward(model, prof, generator=generator)(x)
