"""Smolyak sparse-grid Gauss–Hermite rule and the Monte Carlo rule (edgezo.adapters.pinn.sparse_grid)."""

import itertools
import math

import numpy as np
import pytest

from edgezo.adapters.pinn.sparse_grid import gauss_hermite_1d, monte_carlo_normal, smolyak_gauss_hermite


def gaussian_moment(k: int) -> float:
    """E[z^k] for z ~ N(0, 1): (k-1)!! for even k, 0 for odd k."""
    return 0.0 if k % 2 else float(math.prod(range(k - 1, 0, -2)))


def exponents(dim: int, degree: int):
    """All exponent vectors with total degree <= degree."""
    for alpha in itertools.product(range(degree + 1), repeat=dim):
        if sum(alpha) <= degree:
            yield alpha


def integrate(nodes, weights, alpha) -> float:
    return float(weights @ np.prod(nodes ** np.asarray(alpha), axis=1))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_1d_gauss_hermite_is_exact_and_symmetric(n):
    x, w = gauss_hermite_1d(n)
    assert np.array_equal(x, -x[::-1]) and np.array_equal(w, w[::-1])
    for k in range(2 * n):
        assert abs(w @ x**k - gaussian_moment(k)) <= 1e-10 * max(1.0, gaussian_moment(k))
    assert abs(w @ x ** (2 * n) - gaussian_moment(2 * n)) > 1e-3


def test_1d_rule_sequence_is_the_documented_one():
    assert np.allclose(gauss_hermite_1d(1)[0], [0.0]) and np.allclose(gauss_hermite_1d(1)[1], [1.0])
    assert np.allclose(gauss_hermite_1d(2)[0], [-1.0, 1.0]) and np.allclose(gauss_hermite_1d(2)[1], [0.5, 0.5])
    x3, w3 = gauss_hermite_1d(3)
    assert np.allclose(x3, [-math.sqrt(3), 0.0, math.sqrt(3)]) and np.allclose(w3, [1 / 6, 2 / 3, 1 / 6])


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_exact_for_total_degree_up_to_2level_minus_1(dim, level):
    nodes, weights = smolyak_gauss_hermite(dim, level)
    assert nodes.shape == (len(weights), dim) and nodes.dtype == weights.dtype == np.float64
    for alpha in exponents(dim, 2 * level - 1):
        exact = math.prod(gaussian_moment(a) for a in alpha)
        assert abs(integrate(nodes, weights, alpha) - exact) <= 1e-10 * max(1.0, exact), alpha


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_not_exact_at_degree_2level(dim, level):
    """Shows the exactness test can fail: z_1^(2L) is integrated wrongly."""
    nodes, weights = smolyak_gauss_hermite(dim, level)
    alpha = (2 * level,) + (0,) * (dim - 1)
    assert abs(integrate(nodes, weights, alpha) - gaussian_moment(2 * level)) > 1e-3
    if dim >= 2 and level >= 2:
        # a mixed degree-2L monomial z_1^(2L-2) z_2^2 is wrong too
        alpha = (2 * level - 2, 2) + (0,) * (dim - 2)
        exact = gaussian_moment(2 * level - 2)
        assert abs(integrate(nodes, weights, alpha) - exact) > 1e-3


@pytest.mark.parametrize("dim,level", [(1, 1), (1, 5), (3, 2), (5, 3), (10, 3), (20, 3), (21, 3), (21, 2), (8, 4)])
def test_weights_sum_to_one_and_rule_is_symmetric(dim, level):
    nodes, weights = smolyak_gauss_hermite(dim, level)
    assert abs(weights.sum() - 1.0) < 1e-10
    # exactly symmetric under z -> -z, with equal weights
    order = np.lexsort(nodes.T[::-1])
    neg_order = np.lexsort((-nodes).T[::-1])
    assert np.array_equal(nodes[order], -nodes[neg_order])
    assert np.array_equal(weights[order], weights[neg_order])
    # no duplicate nodes, no zero weights
    assert len(np.unique(nodes, axis=0)) == len(nodes)
    assert np.all(weights != 0)


def test_21_dims_level_3_has_the_925_node_structure():
    nodes, weights = smolyak_gauss_hermite(21, 3)
    assert nodes.shape == (925, 21)
    nnz = (nodes != 0).sum(axis=1)
    assert (nnz == 0).sum() == 1 and (nnz == 1).sum() == 84 and (nnz == 2).sum() == 840
    assert nnz[0] == 0 and weights[0] == pytest.approx(204.0, abs=1e-9)  # centre first
    axis = nnz == 1
    axis_vals = np.abs(nodes[axis]).max(axis=1)
    root3 = np.isclose(axis_vals, math.sqrt(3), atol=1e-14)
    one = np.isclose(axis_vals, 1.0, atol=1e-14)
    assert root3.sum() == 42 and one.sum() == 42
    assert np.allclose(weights[axis][root3], 1 / 6) and np.allclose(weights[axis][one], -10.0)
    pair = nnz == 2
    assert np.all(np.abs(nodes[pair][nodes[pair] != 0]) == 1.0)
    assert np.allclose(weights[pair], 0.25)
    assert (weights < 0).any()
    # every axis carries ±√3 and ±1
    for k in range(21):
        on_k = axis & (nodes[:, k] != 0)
        assert sorted(np.round(nodes[on_k, k], 12)) == sorted(np.round([-math.sqrt(3), -1, 1, math.sqrt(3)], 12))


def test_level_2_in_21_dims():
    nodes, weights = smolyak_gauss_hermite(21, 2)
    assert nodes.shape == (43, 21)
    assert weights[0] == pytest.approx(-20.0) and np.allclose(weights[1:], 0.5)


def test_cached_and_read_only():
    a = smolyak_gauss_hermite(6, 3)
    b = smolyak_gauss_hermite(6, 3)
    assert a[0] is b[0] and a[1] is b[1]
    with pytest.raises(ValueError):
        a[1][0] = 1.0
    c = a[1].copy()
    c[0] = 1.0  # a copy is writable


@pytest.mark.parametrize("dim,level", [(0, 3), (-1, 2), (3, 0), (2, -4)])
def test_invalid_arguments_raise(dim, level):
    with pytest.raises(ValueError):
        smolyak_gauss_hermite(dim, level)


def test_matches_tasmanian_when_installed():
    """Cross-check against Tasmanian (optional; skipped when not installed)."""
    tsg = pytest.importorskip("Tasmanian")
    for dim, level in [(21, 3), (4, 4), (2, 5)]:  # (21, 3) takes Tasmanian ~2 s
        grid = tsg.makeGlobalGrid(dim, 0, level - 1, "level", "gauss-hermite")
        z_t = grid.getPoints() * math.sqrt(2.0)  # weight exp(-x^2) -> N(0, 1)
        w_t = grid.getQuadratureWeights()
        w_t = w_t / w_t.sum()
        nodes, weights = smolyak_gauss_hermite(dim, level)
        assert len(weights) == len(w_t)
        o1, o2 = np.lexsort(np.round(nodes, 9).T[::-1]), np.lexsort(np.round(z_t, 9).T[::-1])
        assert np.allclose(nodes[o1], z_t[o2], atol=1e-9)
        assert np.allclose(weights[o1], w_t[o2], rtol=1e-9, atol=1e-9)


def test_monte_carlo_rule():
    z, w = monte_carlo_normal(5, 100, seed=3)
    assert z.shape == (200, 5) and w.shape == (200,)
    assert np.array_equal(z[100:], -z[:100]) and np.allclose(w, 1 / 200) and abs(w.sum() - 1) < 1e-12
    z2, _ = monte_carlo_normal(5, 100, seed=3)
    assert np.array_equal(z, z2)  # reproducible from the seed
    z3, w3 = monte_carlo_normal(5, 100, seed=3, antithetic=False)
    assert z3.shape == (100, 5) and np.allclose(w3, 0.01)
    with pytest.raises(ValueError):
        monte_carlo_normal(0, 10)
    with pytest.raises(ValueError):
        monte_carlo_normal(3, 0)
