"""Quadrature rules for the standard normal N(0, I): Smolyak sparse grids and Monte Carlo.

Both functions return ``(nodes, weights)``: ``nodes`` a float64 array of shape
``(n, dim)`` and ``weights`` a float64 array of shape ``(n,)`` with
``sum(weights) == 1``, so that ``E[g(z)] ≈ Σ_j weights[j] · g(nodes[j])`` for
``z ~ N(0, I_dim)``. The arrays are read-only (they come from a cache); take a
``.copy()`` to modify them.

Smolyak sparse-grid Gauss–Hermite rule
--------------------------------------
Combination technique (Smolyak 1963; Gerstner & Griebel 1998; Wasilkowski &
Woźniakowski 1995)::

    A(L, d) = Σ_{s = max(0, L-d)}^{L-1} (-1)^(L-1-s) · C(d-1, L-1-s)
              · Σ_{i ∈ N^d, i_k ≥ 1, Σ_k (i_k - 1) = s}  U^{i_1} ⊗ … ⊗ U^{i_d}

The 1-D sequence is the non-nested Gauss–Hermite family with linear growth:
level index ``i`` uses the **i-point** Gauss–Hermite rule for the weight
``exp(-z²/2)/√(2π)`` (probabilists' Hermite polynomials,
``numpy.polynomial.hermite_e.hermegauss`` with the weights divided by their sum
``√(2π)``):

    U^1 = {0: 1}
    U^2 = {±1: 1/2}
    U^3 = {0: 2/3, ±√3: 1/6}
    U^4 = {±√(3 ∓ √6): (3 ± √6)/12} …

``U^i`` is exact up to degree ``2i - 1``, hence ``A(L, d)`` is exact for every
polynomial of **total degree ≤ 2L - 1** (degree 5 at level 3), which the tests
check monomial by monomial. The 1-D nodes and weights are symmetrised
(``x ← (x - x[::-1])/2``, centre set to exactly 0) so every d-dimensional rule
is exactly symmetric under ``z → -z`` (the Stein estimators rely on that).

Duplicate nodes (the centre and the axis nodes appear in many tensor products)
are merged by summing their weights. Each node coordinate is keyed by its index
in the table of distinct 1-D node values (values equal to 1e-12 share a key), so
merging is exact integer matching; merged weights that cancel to zero
(``|w| ≤ 1e-12 · Σ|contributions|``) are dropped. Nodes are ordered by the
number of non-zero coordinates (the centre first), then lexicographically.

For 21 dimensions at level 3 this gives the 925-node rule of docs/methods/stein-pinn.md:
1 centre (weight 204), 42 axis nodes at ±√3 (weight 1/6), 42 axis nodes at ±1
(weight −10) and 840 pair nodes at (±1, ±1) (weight 1/4). Level 2 in 21-D has
43 nodes (centre −20, axis ±1 with 1/2), exact to degree 3 only.

Library check (Tasmanian)
-------------------------
``pip install Tasmanian`` (8.2) has no wheel for this platform: it builds from
the sdist (CMake + C++ compiler, about two minutes). Once built,
``Tasmanian.makeGlobalGrid(21, 0, 2, "level", "gauss-hermite")`` (weight
``exp(-x²)``, nodes scaled by √2 and weights normalised) reproduces this rule
exactly: 925 nodes, extreme weights 204 and −10. Because it needs a compiler at
install time and only this one rule family is needed, edgezo implements the
rule itself (a few dozen lines of numpy) and uses Tasmanian only as an optional
cross-check in the tests (skipped when it is not installed). Tasmanian is not
a dependency of edgezo.
"""

from __future__ import annotations

import itertools
from functools import cache
from math import comb

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["gauss_hermite_1d", "smolyak_gauss_hermite", "monte_carlo_normal", "smolyak_num_nodes"]

_KEY_RESOLUTION = 1e-12


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@cache
def gauss_hermite_1d(n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_points``-point Gauss–Hermite rule for N(0, 1), exactly symmetric.

    Exact for polynomials of degree ≤ ``2 n_points - 1``. Returns read-only
    float64 arrays ``(nodes, weights)``, nodes ascending, weights summing to 1.
    """
    n = _check_positive_int("n_points", n_points)
    x, w = hermegauss(n)
    w = w / w.sum()
    x = 0.5 * (x - x[::-1])
    w = 0.5 * (w + w[::-1])
    if n % 2 == 1:
        x[n // 2] = 0.0
    w = w / w.sum()
    return _readonly(x.astype(np.float64)), _readonly(w.astype(np.float64))


def _excess_vectors(dim: int, s: int):
    """All sparse multi-indices with Σ_k (i_k - 1) = s, as (axes, excesses) pairs."""
    if s == 0:
        yield (), ()
        return
    # A composition of s into m positive parts, placed on m distinct axes.
    for m in range(1, min(s, dim) + 1):
        for cuts in itertools.combinations(range(1, s), m - 1):
            parts = np.diff((0, *cuts, s))
            for axes in itertools.combinations(range(dim), m):
                yield axes, tuple(int(p) for p in parts)


@cache
def _smolyak_cached(dim: int, level: int) -> tuple[np.ndarray, np.ndarray]:
    # Table of distinct 1-D node values across the rules U^1 .. U^level.
    rules = [gauss_hermite_1d(i) for i in range(1, level + 1)]
    all_x = np.concatenate([r[0] for r in rules])
    table_keys, first = np.unique(np.round(all_x / _KEY_RESOLUTION).astype(np.int64), return_index=True)
    table = all_x[first]
    rule_idx = [
        np.searchsorted(table_keys, np.round(r[0] / _KEY_RESOLUTION).astype(np.int64)).astype(np.int32)
        for r in rules
    ]
    zero_idx = int(np.searchsorted(table_keys, 0))  # U^1 = {0}, so 0 is always a 1-D node

    key_blocks, weight_blocks = [], []
    for s in range(max(0, level - dim), level):
        coef = (-1) ** (level - 1 - s) * comb(dim - 1, level - 1 - s)
        for axes, parts in _excess_vectors(dim, s):
            # Tensor product of U^{1+p} over the active axes; other axes sit at 0.
            idx_1d = [rule_idx[p] for p in parts]
            w_1d = [rules[p][1] for p in parts]
            if axes:
                grids = np.meshgrid(*idx_1d, indexing="ij")
                wgrids = np.meshgrid(*w_1d, indexing="ij")
                n = grids[0].size
                keys = np.full((n, dim), zero_idx, dtype=np.int32)
                for ax, g in zip(axes, grids):
                    keys[:, ax] = g.reshape(-1)
                w = np.prod(np.stack([g.reshape(-1) for g in wgrids]), axis=0)
            else:
                keys = np.full((1, dim), zero_idx, dtype=np.int32)
                w = np.ones(1)
            key_blocks.append(keys)
            weight_blocks.append(coef * w)

    keys = np.concatenate(key_blocks)
    raw_w = np.concatenate(weight_blocks)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    weights = np.bincount(inv, weights=raw_w, minlength=len(uniq))
    scale = np.bincount(inv, weights=np.abs(raw_w), minlength=len(uniq))
    keep = np.abs(weights) > 1e-12 * scale
    uniq, weights = uniq[keep], weights[keep]
    nodes = table[uniq]

    nnz = (uniq != zero_idx).sum(axis=1)
    order = np.lexsort(tuple(nodes[:, k] for k in range(dim - 1, -1, -1)) + (nnz,))
    nodes = np.ascontiguousarray(nodes[order], dtype=np.float64)
    weights = np.ascontiguousarray(weights[order], dtype=np.float64)
    return _readonly(nodes), _readonly(weights)


def smolyak_gauss_hermite(dim: int, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Smolyak sparse-grid Gauss–Hermite rule for N(0, I_dim) (see module docstring).

    Args:
        dim: number of dimensions, ≥ 1.
        level: Smolyak level L ≥ 1; the rule is exact for polynomials of total
            degree ≤ 2L − 1. L = 1 is the centre only.

    Returns:
        ``(nodes (n, dim), weights (n,))``, float64, read-only, cached on
        ``(dim, level)``. Weights sum to 1 and can be negative (level ≥ 2).
    """
    dim = _check_positive_int("dim", dim)
    level = _check_positive_int("level", level)
    return _smolyak_cached(dim, level)


def smolyak_num_nodes(dim: int, level: int) -> int:
    """Number of nodes of :func:`smolyak_gauss_hermite` (builds and caches the rule)."""
    return len(smolyak_gauss_hermite(dim, level)[1])


def monte_carlo_normal(dim: int, n: int, seed: int = 0, antithetic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo "rule" for N(0, I_dim) in the same format as the sparse grid.

    Draws ``n`` samples ``z_1..z_n`` with ``numpy.random.default_rng(seed)``.
    With ``antithetic=True`` the rule is ``[z_1..z_n, -z_1..-z_n]`` with weights
    ``1/(2n)`` (2n nodes, exactly symmetric); otherwise ``z_1..z_n`` with
    weights ``1/n``. Returns fresh (writable) float64 arrays.
    """
    dim = _check_positive_int("dim", dim)
    n = _check_positive_int("n", n)
    z = np.random.default_rng(seed).standard_normal((n, dim))
    if antithetic:
        z = np.concatenate([z, -z])
    return z, np.full(len(z), 1.0 / len(z))
