"""The direction generator's specification in code: hash, keys, word function (docs/directions.md).

edgezo directions v1 (``SPEC_VERSION``): a direction is regenerated from a
32-bit seed (MeZO's seed trick, Malladi et al. 2023, arXiv:2305.17333). This
module holds what every implementation shares — the lowbias32 mixer
``H`` (spec §2), the per-kind seed keys, the word function
``W(key, c) = H(H(c) ^ key)`` (spec §3), the seed chain (spec §11) and the
exact float32 constants of the Box–Muller transform (spec §5). The array
backends that turn words into directions live in
:mod:`edgezo.direction_backends`; the public entry point is
:mod:`edgezo.directions`. ``targets/firmware/ezdir.c`` is the C reference.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence

import torch

KINDS = ("rademacher", "gaussian", "sphere")
SPEC_VERSION = "edgezo-directions-v1"

_M32 = 0xFFFFFFFF
_U32 = 1 << 32

# lowbias32 (C. Wellons, "hash-prospector"): xorshift-multiply mixer.
_H_C1 = 0x7FEB352D
_H_C2 = 0x846CA68B
# The same constants as signed values in (-2^31, 2^31): x * c for x < 2^32
# then stays inside (-2^63, 2^63), so the int64 product is exact and
# ``& 0xFFFFFFFF`` (two's complement) yields x * c mod 2^32.
_H_C1S = _H_C1 - _U32 if _H_C1 >= 1 << 31 else _H_C1
_H_C2S = _H_C2 - _U32 if _H_C2 >= 1 << 31 else _H_C2

# Per-kind key tags (the two halves of the 64-bit golden ratio 0x9E3779B97F4A7C15).
_TAG_RADEMACHER = 0x9E3779B9
_TAG_GAUSSIAN = 0x7F4A7C15  # also used by "sphere"


def _f32(bits: int) -> float:
    """The float32 value with IEEE bit pattern ``bits``, as a Python float (exact)."""
    return struct.unpack("<f", struct.pack("<I", bits))[0]


# ---- float32 Box–Muller constants (exact float32 values; spec §5) ----------
_SQRT_HALF_BITS = 0x3F3504F3  # float32(sqrt(1/2))
_CHI = _f32(0x3FB17200)  # 2 ln 2, high part (15 significant bits: n * _CHI exact)
_CLO = _f32(0x363FBE8E)  # 2 ln 2 - _CHI
# -2 ln(m) = s * Q(s^2),  s = (m - 1) / (m + 1),  Q(z) = Q0 + z (Q1 + z (Q2 + z Q3))
_Q0 = _f32(0xC0800000)  # -4
_Q1 = _f32(0xBFAAAABF)
_Q2 = _f32(0xBF4CAF5E)
_Q3 = _f32(0xBF18F16A)
# sin(pi y / 4) = y (S1 + y2 (S3 + y2 (S5 + y2 S7))),  y2 = y^2,  y in (0, 1)
_S1 = _f32(0x3F490FDB)
_S3 = _f32(0xBDA55DE3)
_S5 = _f32(0x3B232F49)
_S7 = _f32(0xB816C983)
# cos(pi y / 4) = 1 + y2 (C2 + y2 (C4 + y2 (C6 + y2 C8)))
_C2 = _f32(0xBE9DE9E6)
_C4 = _f32(0x3C81E0EB)
_C6 = _f32(0xB9AAE2F0)
_C8 = _f32(0x366CEABE)
_TWO_M21 = 2.0 ** -21
_TWO_M22 = 2.0 ** -22
_INT32_MIN = -(1 << 31)

_SeedsLike = Sequence[int] | torch.Tensor | int


# ---------------------------------------------------------------------------
# integer part: hash, keys, words
# ---------------------------------------------------------------------------
def _mix_(x: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """lowbias32 in place on an int64 tensor holding values in [0, 2^32)."""
    torch.bitwise_right_shift(x, 16, out=tmp)
    x.bitwise_xor_(tmp)
    x.mul_(_H_C1S).bitwise_and_(_M32)
    torch.bitwise_right_shift(x, 15, out=tmp)
    x.bitwise_xor_(tmp)
    x.mul_(_H_C2S).bitwise_and_(_M32)
    torch.bitwise_right_shift(x, 16, out=tmp)
    x.bitwise_xor_(tmp)
    return x


def hash32(x: torch.Tensor) -> torch.Tensor:
    """The spec's 32-bit mixer (lowbias32) applied elementwise.

    ``x`` is an integer tensor; its values are taken modulo 2^32. Returns a
    new int64 tensor of uint32 values::

        x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16
        (multiplications modulo 2^32)
    """
    x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise ValueError(f"hash32 needs an integer tensor, got dtype {x.dtype}")
    y = x.to(torch.int64).bitwise_and(_M32)  # always a fresh tensor
    return _mix_(y, torch.empty_like(y))


def _tag(kind: str) -> int:
    return _TAG_RADEMACHER if kind == "rademacher" else _TAG_GAUSSIAN


def _keys(seeds: torch.Tensor, kind: str) -> torch.Tensor:
    k = seeds.bitwise_xor(_tag(kind))
    tmp = torch.empty_like(k)
    return _mix_(_mix_(k, tmp), tmp)


def seed_keys(seeds: _SeedsLike, kind: str = "rademacher", *, device=None) -> torch.Tensor:
    """Per-seed keys ``hash32(hash32(seed ^ TAG[kind]))`` (int64, uint32 values)."""
    _check_kind(kind)
    return _keys(_seed_tensor(seeds, device), kind)


def _words(keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """``hash32(hash32(counter) ^ key)`` for every (key, counter): shape keys.shape + counters.shape."""
    h = hash32(counters)
    x = h.unsqueeze(0) ^ keys.view((-1,) + (1,) * h.dim())
    return _mix_(x, torch.empty_like(x))


def chain_seeds(seed0: int, n: int) -> tuple[int, ...]:
    """The seed chain ``(s_0, …, s_{n-1})``, ``s_i = W(s_0, i) = H(H(i) ^ s_0)`` for i ≥ 1 (spec §11).

    ``W`` is the word function of §3 with ``s_0`` in the place of a key, so a
    device regenerates the chain with the hash it already has.
    """
    if n < 1:
        raise ValueError(f"a seed chain has at least one seed, got n={n}")
    s0 = int(seed0) & _M32
    rest = _words(torch.tensor([s0], dtype=torch.int64), torch.arange(1, n, dtype=torch.int64))[0]
    return (s0,) + tuple(int(s) for s in rest.tolist())


def words(seeds: _SeedsLike, counters: torch.Tensor, kind: str = "rademacher", *, device=None) -> torch.Tensor:
    """Hash words ``W(key(seed, kind), c)`` for word counters ``c`` (spec §3), shape (S,) + counters.shape."""
    _check_kind(kind)
    s = _seed_tensor(seeds, device)
    return _words(_keys(s, kind), torch.as_tensor(counters, device=s.device).to(torch.int64))


# ---------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------
def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown direction kind {kind!r}; expected one of {KINDS}")


def _seed_tensor(seeds: _SeedsLike, device) -> torch.Tensor:
    if isinstance(seeds, torch.Tensor):
        if seeds.dtype.is_floating_point or seeds.dtype.is_complex or seeds.dtype == torch.bool:
            raise ValueError(f"seeds must be integers, got a tensor of dtype {seeds.dtype}")
        t = seeds.reshape(-1).to(device=device if device is not None else seeds.device, dtype=torch.int64)
        if t.numel() and (bool((t < 0).any()) or bool((t > _M32).any())):
            raise ValueError("seeds must be uint32 values in [0, 2^32)")
        return t
    if isinstance(seeds, (str, bytes)):
        raise ValueError("seeds must be an int, a sequence of ints or an integer tensor")
    try:
        vals = [operator.index(seeds)]
    except TypeError:
        try:
            vals = [operator.index(s) for s in seeds]
        except TypeError:
            raise ValueError("seeds must be an int, a sequence of ints or an integer tensor") from None
    for s in vals:
        if s < 0 or s > _M32:
            raise ValueError(f"seed {s} is outside uint32 [0, 2^32)")
    return torch.tensor(vals, dtype=torch.int64, device=device)
