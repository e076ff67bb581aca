"""Portable counter-based perturbation directions (edgezo directions v1).

A direction is never stored: it is regenerated from a 32-bit seed whenever it
is needed (MeZO's seed trick, Malladi et al. 2023, arXiv:2305.17333). This
module is the Python/torch implementation of the generator specified in
``docs/directions.md``; ``targets/firmware/ezdir.c`` is the C reference. The
two agree bit for bit (committed vectors in ``tests/vectors/directions.json``).

For a seed ``s`` the direction is an infinite vector ``z(s)[i]``, where ``i``
is the coordinate's *flat index* in the parameter space (a uint32 counter).
A perturbation of parameters ``[start, start + count)`` uses exactly
``z(s)[start:start + count]``, so a group's direction is the restriction of
the full-space direction.

Kinds (``KINDS``):

- ``"rademacher"``: ±1 (``z = 1 - 2 b``, ``b`` bit ``i & 31`` of hash word
  ``i >> 5``); one 32-bit hash per 32 coordinates.
- ``"gaussian"``: standard normal from a float32 Box–Muller on pairs (pair
  ``i >> 1`` uses hash words ``2p`` and ``2p + 1``; even ``i`` takes
  ``r cos θ``, odd ``i`` takes ``r sin θ``) with log, sin and cos evaluated by
  fixed float32 polynomials, so the result is bit-exact across torch CPU,
  torch CUDA, numpy and C. Error vs a float64 Box–Muller from the same words
  (exhaustive over all radius and angle inputs): radius 1.77 ulp, cos/sin
  1.59 ulp, output max 3.9 ulp over 1.7e7 random pairs and 4.9 ulp for the
  worst pairing found (max relative error found 3.3e-7; mean 0.51 ulp).
  ``|z| <= 5.7686``.
- ``"sphere"``: the gaussian vector over the requested range divided by its
  Euclidean norm (unit norm over ``[start, start + count)``; the restriction
  property therefore does *not* hold for sphere directions). RGE estimators
  that use sphere directions scale by the dimension ``d = count`` (as
  ZO-AE-DS does), because ``E[d u uᵀ] = I``. Bit-exact up to the norm: the
  exact squares are summed in float64 in any order, so two implementations
  differ only when that sum falls next to a float32 rounding boundary
  (probability of order ``sqrt(count) 2^-29``), and then by at most 1 ulp per
  entry.

Other output dtypes are the float32 values converted (exact for float64).

The same operation sequence is written once (``_neg2log``, ``_cos_sin``) and
run on two array backends: torch tensors (int64 words, any device) and, on
the CPU, numpy arrays (uint32 words; lower per-operation overhead). Both are
tested bit for bit against each other, the committed vectors and the C build.

Timings (2-vCPU AVX-512 Xeon shared with other jobs, torch 2.13 CPU, one
thread, 16 seeds, best of repeated calls; ``docs/directions.md`` §8):

===========  ================  ==================
kind         16 x 2,410        16 x 100,000
===========  ================  ==================
rademacher   0.06 ms           1.0 - 1.1 ms
gaussian     0.35 ms           13.5 - 18 ms
sphere       0.40 ms           21 - 48 ms
===========  ================  ==================

(the torch path, used on GPUs, takes 0.17 / 0.75 / 0.81 ms for the small case
on this CPU).
"""

from __future__ import annotations

import operator
import struct
from typing import Sequence, Union

import numpy as np
import torch

__all__ = ["KINDS", "SPEC_VERSION", "hash32", "chain_seeds", "seed_keys", "words", "directions", "direction"]

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

_SeedsLike = Union[Sequence[int], torch.Tensor, int]


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
# array backends: torch int64 (any device) and numpy uint32 (CPU fast path)
# ---------------------------------------------------------------------------
class _TorchOps:
    """torch tensors on any device; words are int64 tensors holding uint32 values."""

    i32, f32, f64 = torch.int32, torch.float32, torch.float64

    @staticmethod
    def cast(x, dt):
        return x.to(dt)

    @staticmethod
    def view(x, dt):
        return x.view(dt)

    @staticmethod
    def sqrt32(x):
        # Correctly rounded float32 square root. torch's vectorized float32
        # sqrt on CPU is not always correctly rounded (1-ulp differences seen
        # with AVX-512). A float64 square root (error <= 1 float64 ulp) rounded
        # to float32 is: the exact square root of a float32 never lies within
        # 2^-50 (relative) of a float32 rounding midpoint.
        return x.to(torch.float64).sqrt_().to(torch.float32)

    @staticmethod
    def mul_into(a, b, out):
        torch.mul(a, b, out=out)

    @staticmethod
    def empty(shape, dt, device):
        return torch.empty(shape, dtype=dt, device=device)

    @staticmethod
    def keys(seeds, kind):
        return _keys(seeds, kind)

    @staticmethod
    def words(keys, counters):
        return _words(keys, counters)

    @staticmethod
    def counters(lo, n, step, device):
        return torch.arange(lo, lo + n * step, step, dtype=torch.int64, device=device)

    @staticmethod
    def stack(a, b):
        return torch.stack((a, b))

    @staticmethod
    def sumsq64(g):
        g64 = g.to(torch.float64)
        return (g64 * g64).sum(dim=1, keepdim=True)

    @staticmethod
    def bytes_of(w):
        shifts = torch.tensor([0, 8, 16, 24], dtype=torch.int64, device=w.device)
        return (w.unsqueeze(-1) >> shifts).bitwise_and_(255)

    @staticmethod
    def take_rows(lut, idx):
        return lut.index_select(0, idx.reshape(-1))

    @staticmethod
    def contiguous(x):
        return x.contiguous()


def _np_mix_(x: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """lowbias32 in place on a uint32 array (numpy wraps unsigned arithmetic mod 2^32)."""
    np.right_shift(x, 16, out=tmp)
    x ^= tmp
    x *= np.uint32(_H_C1)
    np.right_shift(x, 15, out=tmp)
    x ^= tmp
    x *= np.uint32(_H_C2)
    np.right_shift(x, 16, out=tmp)
    x ^= tmp
    return x


class _NumpyOps:
    """numpy arrays on the CPU; words are uint32 arrays. Same operations, less overhead."""

    i32, f32, f64 = np.int32, np.float32, np.float64

    @staticmethod
    def cast(x, dt):
        return x.astype(dt)

    @staticmethod
    def view(x, dt):
        return x.view(dt)

    @staticmethod
    def sqrt32(x):
        return np.sqrt(x.astype(np.float64)).astype(np.float32)  # robust rounding, see _TorchOps

    @staticmethod
    def mul_into(a, b, out):
        np.multiply(a, b, out=out)

    @staticmethod
    def empty(shape, dt, device):
        return np.empty(shape, dtype=dt)

    @staticmethod
    def keys(seeds, kind):
        k = seeds ^ np.uint32(_tag(kind))
        tmp = np.empty_like(k)
        return _np_mix_(_np_mix_(k, tmp), tmp)

    @staticmethod
    def words(keys, counters):
        h = _np_mix_(counters.copy(), np.empty_like(counters))
        x = h[None] ^ keys.reshape((-1,) + (1,) * h.ndim)
        return _np_mix_(x, np.empty_like(x))

    @staticmethod
    def counters(lo, n, step, device):
        return np.arange(lo, lo + n * step, step, dtype=np.uint64).astype(np.uint32)

    @staticmethod
    def stack(a, b):
        return np.stack((a, b))

    @staticmethod
    def sumsq64(g):
        g64 = g.astype(np.float64)
        return np.einsum("ij,ij->i", g64, g64)[:, None]  # summation order is free (spec §6)

    @staticmethod
    def bytes_of(w):
        return (w[..., None] >> np.array([0, 8, 16, 24], dtype=np.uint32)) & np.uint32(255)

    @staticmethod
    def take_rows(lut, idx):
        return lut.take(idx.reshape(-1), axis=0)

    @staticmethod
    def contiguous(x):
        return np.ascontiguousarray(x)


# ---------------------------------------------------------------------------
# float32 Box–Muller (spec §5): every op a separate IEEE float32 operation,
# written once for both backends (operators only; no fused ops).
# ---------------------------------------------------------------------------
def _radius(w1, B=_TorchOps):
    """``r = sqrt(-2 ln u)``, ``u = (2 (w1 >> 9) + 1) 2^-24`` (float32) from radius words ``w1``."""
    return B.sqrt32(_neg2log(w1, B))


def _neg2log(w1, B=_TorchOps):
    """``L = -2 ln u`` in float32 (spec §5.1)."""
    v = B.cast((w1 >> 8) | 1, B.i32)  # 2 (w1 >> 9) + 1: odd, < 2^24
    ix = B.view(B.cast(v, B.f32), B.i32)  # exact conversion; float32 bit pattern
    ix -= _SQRT_HALF_BITS  # > 0 because v >= 1
    n = B.cast(24 - (ix >> 23), B.f32)  # u = m 2^-n, n in [0, 24], exact
    ix &= 0x7FFFFF
    ix += _SQRT_HALF_BITS
    m = B.view(ix, B.f32)  # m in [sqrt(1/2), sqrt(2))
    f = m - 1.0  # exact (Sterbenz)
    s = f / (f + 2.0)  # (m - 1) / (m + 1)
    z = s * s
    q = z * _Q3
    q += _Q2
    q *= z
    q += _Q1
    q *= z
    q += _Q0
    q *= s  # -2 ln m
    L = n * _CLO
    L += q
    n *= _CHI  # exact
    L += n  # -2 ln u
    return L


def _cos_sin(w2, B=_TorchOps):
    """``(cos θ, sin θ)`` (float32) from angle words ``w2`` (spec §5.2).

    ``y = (2 mm + 1) 2^-22`` with ``mm = (w2 >> 8) & 0x1FFFFF``; polynomials
    give ``sin(πy/4)``, ``cos(πy/4)`` (both > 0); bit 29 swaps them, bit 31
    negates the cos output, bit 30 the sin output. The swap and the signs are
    applied to the float32 bit patterns (exact).
    """
    t = B.cast(w2 >> 8, B.i32)  # bits 0..20 mm, 21 swap, 22 sin sign, 23 cos sign
    y = B.cast(t & 0x1FFFFF, B.f32)
    y *= _TWO_M21
    y += _TWO_M22  # (2 mm + 1) 2^-22, exact
    y2 = y * y
    sn = y2 * _S7
    sn += _S5
    sn *= y2
    sn += _S3
    sn *= y2
    sn += _S1
    sn *= y  # sin(pi y / 4)
    cs = y2 * _C8
    cs += _C6
    cs *= y2
    cs += _C4
    cs *= y2
    cs += _C2
    cs *= y2
    cs += 1.0  # cos(pi y / 4)
    cb, sb = B.view(cs, B.i32), B.view(sn, B.i32)  # non-negative bit patterns
    x = (cb ^ sb) * ((t >> 21) & 1)  # swap mask: exchange the two patterns
    cb ^= x
    sb ^= x
    cb |= (t >> 23) * _INT32_MIN  # sign bit (1 * INT32_MIN does not overflow)
    sb |= ((t >> 22) & 1) * _INT32_MIN
    return B.view(cb, B.f32), B.view(sb, B.f32)


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


def _check_range(start, count) -> tuple[int, int]:
    try:
        start = operator.index(start)
        count = operator.index(count)
    except TypeError:
        raise ValueError(f"start and count must be integers, got {start!r}, {count!r}") from None
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if start + count > _U32:
        raise ValueError(f"start + count = {start + count} exceeds the 2^32 coordinate counters")
    return start, count


# ---------------------------------------------------------------------------
# generators (B: backend; seeds: int64 tensor or uint32 array)
# ---------------------------------------------------------------------------
_LUT_CACHE: dict = {}


def _sign_lut(B, device):
    """(256, 8) float32 table: entry [b, k] = 1 - 2 * (bit k of b)."""
    key = (B.__name__, str(device))
    lut = _LUT_CACHE.get(key)
    if lut is None:
        b = np.arange(256).reshape(-1, 1)
        table = (1 - 2 * ((b >> np.arange(8)) & 1)).astype(np.float32)
        lut = table if B is _NumpyOps else torch.from_numpy(table).to(device)
        _LUT_CACHE[key] = lut
    return lut


def _rademacher(B, seeds, start: int, count: int, device):
    j0, j1 = start >> 5, (start + count - 1) >> 5
    nw = j1 - j0 + 1
    w = B.words(B.keys(seeds, "rademacher"), B.counters(j0, nw, 1, device))  # (S, W)
    out = B.take_rows(_sign_lut(B, device), B.bytes_of(w)).reshape(len(seeds), nw * 32)
    off = start & 31
    if off == 0 and count == nw * 32:
        return out
    return B.contiguous(out[:, off:off + count])


def _gauss_block(B, keys, p0: int, npairs: int, out) -> None:
    """Gaussian pairs ``p0 .. p0 + npairs - 1`` for every key into ``out`` (S, npairs, 2)."""
    even = B.counters(2 * p0, npairs, 2, None if B is _NumpyOps else keys.device)
    w = B.words(keys, B.stack(even, even + 1))  # (S, 2, P): radius words, angle words
    r = _radius(w[:, 0], B)
    c, s = _cos_sin(w[:, 1], B)
    B.mul_into(r, c, out[:, :, 0])
    B.mul_into(r, s, out[:, :, 1])


# elements (seeds x pairs) per block: on the CPU a block's temporaries stay in the
# caches; on a GPU the block bounds the temporaries' memory
_CPU_BLOCK = 1 << 15
_DEV_BLOCK = 1 << 22


def _gaussian(B, seeds, start: int, count: int, device):
    S = len(seeds)
    p0, p1 = start >> 1, (start + count - 1) >> 1
    npairs = p1 - p0 + 1
    keys = B.keys(seeds, "gaussian")
    out = B.empty((S, npairs, 2), B.f32, device)
    on_cpu = B is _NumpyOps or str(device).startswith("cpu")
    block = max(64, (_CPU_BLOCK if on_cpu else _DEV_BLOCK) // max(S, 1))
    for b in range(0, npairs, block):
        nb = min(block, npairs - b)
        _gauss_block(B, keys, p0 + b, nb, out[:, b:b + nb])
    out = out.reshape(S, 2 * npairs)
    off = start & 1
    if off == 0 and count == 2 * npairs:
        return out
    return B.contiguous(out[:, off:off + count])


def _sphere(B, seeds, start: int, count: int, device):
    g = _gaussian(B, seeds, start, count, device)
    norm = B.sqrt32(B.cast(B.sumsq64(g), B.f32))  # float32 norm of the exact squares' float64 sum
    g /= norm
    return g


_GENERATORS = {"rademacher": _rademacher, "gaussian": _gaussian, "sphere": _sphere}


def _generate(seeds: torch.Tensor, start: int, count: int, kind: str, device, dtype, backend: str = "auto"):
    """Validated arguments in; ``backend``: "auto" (numpy on CPU), "torch" or "numpy"."""
    use_numpy = backend == "numpy" or (backend == "auto" and torch.device(device).type == "cpu")
    if use_numpy:
        z = torch.from_numpy(_GENERATORS[kind](_NumpyOps, seeds.cpu().numpy().astype(np.uint32), start, count, None))
        return z.to(device=device, dtype=dtype)
    z = _GENERATORS[kind](_TorchOps, seeds.to(device), start, count, device)
    return z if z.dtype == dtype else z.to(dtype)


def directions(seeds: _SeedsLike, start: int, count: int, kind: str = "rademacher", *,
               device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Directions ``z(seed)[start:start + count]`` for many seeds, shape ``(len(seeds), count)``.

    ``seeds``: a sequence of ints (or an integer tensor) with values in
    ``[0, 2^32)``. ``start``, ``count``: the flat coordinate range (``start +
    count <= 2^32``). ``kind``: one of ``KINDS``. ``device``: defaults to the
    seeds tensor's device, else CPU. ``dtype``: output dtype; gaussian and
    sphere values are computed in float32 and converted.
    """
    _check_kind(kind)
    start, count = _check_range(start, count)
    s = _seed_tensor(seeds, device)
    if device is None:
        device = s.device
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    if count == 0 or s.numel() == 0:
        return torch.empty((s.numel(), count), dtype=dtype, device=device)
    return _generate(s, start, count, kind, device, dtype)


def direction(seed: int, start: int, count: int, kind: str = "rademacher", **kw) -> torch.Tensor:
    """One direction ``z(seed)[start:start + count]`` as a 1-D tensor (see :func:`directions`)."""
    if isinstance(seed, (list, tuple, str, bytes)):
        raise ValueError(f"seed must be a single int, got {seed!r}")
    return directions([seed], start, count, kind, **kw)[0]
