"""Array backends of the direction generator: torch (int64 words, any device) and numpy (CPU).

The generator of :mod:`edgezo.direction_spec` (docs/directions.md) run on two
array backends. The float32 Box–Muller transform (spec §5) is written once
(``_neg2log``, ``_cos_sin``) as a sequence of IEEE float32 operations on an
ops object ``B``; the torch backend runs it on any device, the numpy backend on
the CPU with lower per-operation overhead. Both are tested bit for bit against
each other, the committed vectors (tests/vectors) and the C build.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from . import direction_native
from .direction_spec import (
    _C2,
    _C4,
    _C6,
    _C8,
    _CHI,
    _CLO,
    _H_C1,
    _H_C2,
    _INT32_MIN,
    _Q0,
    _Q1,
    _Q2,
    _Q3,
    _S1,
    _S3,
    _S5,
    _S7,
    _SQRT_HALF_BITS,
    _TWO_M21,
    _TWO_M22,
    _keys,
    _tag,
    _words,
)


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
    def pair_words(keys, p0, npairs, device):
        """Words (S, 2, P) of pairs ``p0 ..``: radius words at counters 2p, angle words at 2p + 1."""
        even = torch.arange(2 * p0, 2 * (p0 + npairs), 2, dtype=torch.int64, device=device)
        return _words(keys, torch.stack((even, even + 1)))

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


# H(c) for the counters of a block does not depend on the seed: steps that perturb the same
# parameter ranges reuse it. LRU bounded by bytes.
_HASHED: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
_HASHED_MAX_BYTES = 1 << 25


def _hashed_pair_counters(p0: int, npairs: int) -> np.ndarray:
    """``H(c)`` (uint32, shape (2, npairs)) for c = 2p and 2p + 1, p in [p0, p0 + npairs)."""
    key = (p0, npairs)
    h = _HASHED.get(key)
    if h is not None:
        _HASHED.move_to_end(key)
        return h
    even = np.arange(2 * p0, 2 * (p0 + npairs), 2, dtype=np.uint64).astype(np.uint32)
    h = np.stack((even, even + np.uint32(1)))
    _np_mix_(h, np.empty_like(h))
    _HASHED[key] = h
    total = sum(v.nbytes for v in _HASHED.values())
    while total > _HASHED_MAX_BYTES and len(_HASHED) > 1:
        total -= _HASHED.popitem(last=False)[1].nbytes
    return h


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
        # numpy's float32 sqrt is the hardware instruction (IEEE 754: correctly rounded), unlike
        # torch's CPU kernel (see _TorchOps); checked against the float64 route in the tests
        return np.sqrt(x)

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
    def pair_words(keys, p0, npairs, device):
        """Words (S, 2, P) of pairs ``p0 ..``: ``H(H(c) ^ key)`` for c = 2p, 2p + 1; ``H(c)`` from a cache."""
        h = _hashed_pair_counters(p0, npairs)
        x = h[None] ^ keys.reshape(-1, 1, 1)
        return _np_mix_(x, np.empty_like(x))

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


class _NativeOps(_NumpyOps):
    """numpy arrays, with the Gaussian pairs from the native generator (:mod:`edgezo.direction_native`)."""

    native = True


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
        lut = table if issubclass(B, _NumpyOps) else torch.from_numpy(table).to(device)
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
    device = None if issubclass(B, _NumpyOps) else keys.device
    w = B.pair_words(keys, p0, npairs, device)  # (S, 2, P): radius, angle words
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
    if getattr(B, "native", False):
        out = direction_native.gaussian_pairs(keys, p0, npairs)
        off = start & 1
        return out if off == 0 and count == 2 * npairs else B.contiguous(out[:, off:off + count])
    out = B.empty((S, npairs, 2), B.f32, device)
    on_cpu = issubclass(B, _NumpyOps) or str(device).startswith("cpu")
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
    """Validated arguments in; ``backend``: "auto", "torch", "numpy" or "native".

    "auto" runs torch ops on an accelerator and, on the CPU, the native generator
    for Gaussian and sphere directions where it was built (else numpy).
    """
    on_cpu = torch.device(device).type == "cpu"
    if backend == "native" and not direction_native.available():
        raise RuntimeError("backend 'native' asked for, but the native direction generator is not available")
    if backend == "auto" and on_cpu:
        backend = "native" if kind != "rademacher" and direction_native.available() else "numpy"
    if backend in ("numpy", "native"):
        B = _NativeOps if backend == "native" else _NumpyOps
        z = torch.from_numpy(_GENERATORS[kind](B, seeds.cpu().numpy().astype(np.uint32), start, count, None))
        return z.to(device=device, dtype=dtype)
    z = _GENERATORS[kind](_TorchOps, seeds.to(device), start, count, device)
    return z if z.dtype == dtype else z.to(dtype)
