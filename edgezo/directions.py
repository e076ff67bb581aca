"""Portable counter-based perturbation directions (edgezo directions v1).

A direction is never stored: it is regenerated from a 32-bit seed whenever it
is needed (MeZO's seed trick, Malladi et al. 2023, arXiv:2305.17333). This
module is the public entry point of the Python/torch implementation of the
generator specified in ``docs/directions.md`` (hash and word function in
:mod:`edgezo.direction_spec`, array backends in
:mod:`edgezo.direction_backends`); ``targets/firmware/ezdir.c`` is the C reference. The
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

The same operation sequence is written once (``_neg2log``, ``_cos_sin`` in
:mod:`edgezo.direction_backends`) and run on two array backends: torch tensors (int64 words, any device) and, on
the CPU, numpy arrays (uint32 words; lower per-operation overhead). All
backends are tested bit for bit against each other, the committed vectors and
the C build.

On the CPU the Gaussian and sphere kinds run in the native generator
(:mod:`edgezo.direction_native`: the firmware's C, vectorised) where it was
built at install time, else on the numpy backend. Timings (2-vCPU AVX-512
Xeon, torch 2.13 CPU, one thread, 16 seeds; ``docs/directions.md`` §8):

===========  ================  ==================
kind         16 x 2,410        16 x 100,000
===========  ================  ==================
rademacher   0.06 ms           1.0 - 1.1 ms
gaussian     0.10 ms           2.9 ms  (torch.randn: 5.9 ms)
sphere       0.20 ms           5.1 ms
===========  ================  ==================

(the torch path, used on GPUs, takes 0.17 / 0.75 / 0.81 ms for the small case
on this CPU).
"""

from __future__ import annotations

import operator

import torch

from .direction_backends import _cos_sin, _generate, _neg2log, _NumpyOps, _radius, _TorchOps  # noqa: F401
from .direction_spec import (  # noqa: F401
    _M32,
    _U32,
    KINDS,
    SPEC_VERSION,
    _check_kind,
    _keys,
    _seed_tensor,
    _SeedsLike,
    _words,
    chain_seeds,
    hash32,
    seed_keys,
    words,
)

__all__ = ["KINDS", "SPEC_VERSION", "hash32", "chain_seeds", "seed_keys", "words", "directions", "direction"]


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
