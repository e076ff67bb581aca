"""Stein derivative estimators from forward passes (edgezo.adapters.pinn.stein)."""

import numpy as np
import pytest
import torch

from edgezo.adapters.pinn.sparse_grid import smolyak_gauss_hermite
from edgezo.adapters.pinn.stein import SteinDerivatives, SteinResult, symmetrize_rule

SIGMA = 0.1


# ---------------------------------------------------------------- helpers


class CountingF:
    """Wraps f, records the number of rows of every call."""

    def __init__(self, f):
        self.f = f
        self.calls = []

    def __call__(self, v):
        self.calls.append(v.shape[0])
        return self.f(v)


def cubic_problem(D, seed=0):
    """f(x) = Σ a_i x_i + Σ b_i x_i² + c x0 x1 x2 + e x0³ + g x0² x1, and its smoothed derivatives.

    With δ ~ N(0, σ²I):  E(x+δ)_i² = x_i² + σ²,  E(x0+δ0)³ = x0³ + 3σ² x0, and
    products of distinct coordinates are unchanged, so
    u_σ = Σ a_i x_i + Σ b_i (x_i² + σ²) + c x0x1x2 + e (x0³ + 3σ²x0) + g (x0² + σ²) x1.
    """
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(D, generator=gen, dtype=torch.float64), torch.randn(D, generator=gen, dtype=torch.float64)
    c, e, g = 0.7, -0.4, 1.3

    def f(v):
        x0, x1, x2 = v[:, 0], v[:, 1], v[:, 2]
        return v @ a + (v * v) @ b + c * x0 * x1 * x2 + e * x0**3 + g * x0**2 * x1

    def smoothed(x, s):
        x0, x1, x2 = x[:, 0], x[:, 1], x[:, 2]
        value = x @ a + (x * x + s**2) @ b + c * x0 * x1 * x2 + e * (x0**3 + 3 * s**2 * x0) + g * (x0**2 + s**2) * x1
        grad = a + 2 * b * x
        grad[:, 0] += c * x1 * x2 + e * (3 * x0**2 + 3 * s**2) + 2 * g * x0 * x1
        grad[:, 1] += c * x0 * x2 + g * (x0**2 + s**2)
        grad[:, 2] += c * x0 * x1
        second = (2 * b).expand_as(x).clone()
        second[:, 0] += 6 * e * x0 + 2 * g * x1
        return value, grad, second

    return f, smoothed


class Sin(torch.nn.Module):
    def forward(self, x):
        return torch.sin(x)


def sine_net(D, width, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(D, width), Sin(), torch.nn.Linear(width, width), Sin(), torch.nn.Linear(width, 1)
    ).double()
    return lambda v: net(v).squeeze(-1)


def autograd_derivatives(f, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    second = torch.stack(
        [torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1])], dim=1
    )
    return g.detach(), second.detach()


def rel(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


# ---------------------------------------------------------------- exactness on polynomials


@pytest.mark.parametrize("D,level", [(3, 3), (4, 3), (5, 4), (21, 3)])
def test_exact_for_cubic_polynomials(D, level):
    f, smoothed = cubic_problem(D)
    x = 2 * torch.rand(9, D, dtype=torch.float64) - 1
    r = SteinDerivatives("sparse_grid", dim=D, sigma=SIGMA, level=level)(f, x)
    value, grad, second = smoothed(x, SIGMA)
    assert isinstance(r, SteinResult) and r.grad.dtype == torch.float64
    torch.testing.assert_close(r.value, value, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.grad, grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.second, second, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.laplacian(), second.sum(1), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.laplacian(range(D - 1)), second[:, : D - 1].sum(1), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.laplacian(slice(0, 2)), second[:, :2].sum(1), rtol=1e-9, atol=1e-9)


def test_level_2_second_derivatives_are_not_exact():
    """Level 2 (degree 3) cannot give second derivatives: shows the exactness test can fail."""
    f, smoothed = cubic_problem(4)
    x = torch.rand(5, 4, dtype=torch.float64)
    r = SteinDerivatives("sparse_grid", dim=4, sigma=SIGMA, level=2)(f, x)
    assert (r.second - smoothed(x, SIGMA)[2]).abs().max() > 0.1


# ---------------------------------------------------------------- sine network vs autograd


def test_sine_network_matches_autograd_up_to_smoothing_bias():
    """Level 3, σ = 0.1, 21-16-16-1 sine net (default nn.Linear init) vs autograd of the unsmoothed net.

    The estimates are derivatives of u_σ, not of f: the bias is O(σ²)
    (e.g. ∇u_σ − ∇f ≈ σ²/2 ∇Δf), and level 3's quadrature error on the second
    derivative is O(σ²) as well (it misses degree-6 terms, divided by σ²).
    Measured here: gradient 2.2e-3, Laplacian 2.4e-2 relative (σ = 0.05: 5.5e-4, 5.9e-3).
    Tolerances: 1e-2 and 1e-1 (about 4× the measured O(σ²) error).
    Halving σ must cut both errors by about 4 (checked between 3 and 5).
    """
    D = 21
    f = sine_net(D, 16)
    x = torch.rand(20, D, dtype=torch.float64)
    g_ref, s_ref = autograd_derivatives(f, x)
    errs = {}
    for sigma in (0.1, 0.05):
        r = SteinDerivatives("sparse_grid", dim=D, sigma=sigma, level=3)(f, x)
        errs[sigma] = rel(r.grad, g_ref), rel(r.laplacian(range(20)), s_ref[:, :20].sum(1))
        torch.testing.assert_close(r.value, f(x), rtol=0, atol=1e-2 * f(x).abs().max().item())
    assert errs[0.1][0] < 1e-2 and errs[0.1][1] < 1e-1, errs
    for k in range(2):
        assert 3.0 < errs[0.1][k] / errs[0.05][k] < 5.0, errs


# ---------------------------------------------------------------- Monte Carlo


def test_monte_carlo_converges():
    """Stochastic (fixed seeds): the RMS error over 10 seeds falls like 1/√samples;
    64× the samples must cut it by > 4× (expected 8×; measured 7.1× gradient, 5.6× Laplacian)."""
    D = 6
    f, smoothed = cubic_problem(D, seed=1)
    x = torch.rand(8, D, dtype=torch.float64)
    _, grad, second = smoothed(x, SIGMA)
    errs = []
    for samples in (64, 4096):
        e = []
        for seed in range(10):
            r = SteinDerivatives("monte_carlo", dim=D, sigma=SIGMA, samples=samples, seed=seed)(f, x)
            e.append((rel(r.grad, grad), rel(r.laplacian(), second.sum(1))))
        errs.append(np.sqrt(np.mean(np.square(e), axis=0)))
    assert np.all(errs[1] < errs[0] / 4), errs
    assert np.all(errs[1] < 0.1), errs


def test_monte_carlo_resample_and_seed():
    D = 3
    f, _ = cubic_problem(D)
    x = torch.rand(4, D, dtype=torch.float64)
    fixed = SteinDerivatives("monte_carlo", dim=D, samples=16, seed=5)
    assert torch.equal(fixed(f, x).grad, fixed(f, x).grad)
    assert torch.equal(fixed(f, x).grad, SteinDerivatives("monte_carlo", dim=D, samples=16, seed=5)(f, x).grad)
    fresh = SteinDerivatives("monte_carlo", dim=D, samples=16, seed=5, resample=True)
    a, b = fresh(f, x).grad, fresh(f, x).grad
    assert not torch.equal(a, b)
    again = SteinDerivatives("monte_carlo", dim=D, samples=16, seed=5, resample=True)
    assert torch.equal(again(f, x).grad, a)  # the sequence is reproducible from the seed


# ---------------------------------------------------------------- evaluation counts and chunking


@pytest.mark.parametrize(
    "kwargs,per_point",
    [
        (dict(rule="sparse_grid", dim=21, level=3), 925),
        (dict(rule="sparse_grid", dim=21, level=2), 43),
        (dict(rule="sparse_grid", dim=1, level=2), 3),  # nodes ±1 plus the added centre
        (dict(rule="monte_carlo", dim=21, samples=1024), 2049),
        (dict(rule="monte_carlo", dim=21, samples=100, antithetic=False), 201),
    ],
)
def test_evaluation_counts(kwargs, per_point):
    rule = kwargs.pop("rule")
    dim = kwargs["dim"]
    est = SteinDerivatives(rule, **kwargs)
    assert est.evaluations_per_point == per_point
    f = CountingF(lambda v: v.sum(1))
    r = est(f, torch.rand(7, dim, dtype=torch.float64))
    assert r.evaluations == sum(f.calls) == 7 * per_point
    assert len(f.calls) == 1  # one batched call when it fits in max_batch


def test_chunking_respects_max_batch_and_gives_identical_results():
    D = 21
    f = sine_net(D, 8)
    x = torch.rand(5, D, dtype=torch.float64)
    full = SteinDerivatives("sparse_grid", dim=D)(f, x)
    counting = CountingF(f)
    chunked = SteinDerivatives("sparse_grid", dim=D, max_batch=1000)(counting, x)
    assert max(counting.calls) <= 1000 and sum(counting.calls) == 5 * 925 == chunked.evaluations
    assert len(counting.calls) == -(-5 * 925 // 1000)
    torch.testing.assert_close(chunked.grad, full.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked.second, full.second, rtol=1e-12, atol=1e-12)


def test_symmetric_rule_kept_and_asymmetric_rule_symmetrised():
    z, w = smolyak_gauss_hermite(4, 3)
    z2, w2, centre = symmetrize_rule(z, w)
    assert len(w2) == len(w) and np.all(z2[centre] == 0)
    rng = np.random.default_rng(0)
    zr = rng.standard_normal((10, 3))
    z3, w3, centre = symmetrize_rule(zr, np.full(10, 0.1))
    assert len(w3) == 21 and np.all(z3[centre] == 0) and w3[centre] == 0 and abs(w3.sum() - 1) < 1e-14


def test_explicit_antithetic_formula_agrees():
    """The one-evaluation-per-node form equals the pair formulas of the docstring."""
    D = 5
    f = sine_net(D, 8, seed=2)
    x = torch.rand(6, D, dtype=torch.float64)
    z, w = (torch.as_tensor(np.array(a)) for a in smolyak_gauss_hermite(D, 3))
    fp = f((x[:, None] + SIGMA * z).reshape(-1, D)).reshape(6, -1)
    fm = f((x[:, None] - SIGMA * z).reshape(-1, D)).reshape(6, -1)
    f0 = f(x)[:, None]
    grad = ((fp - fm) * w) @ z / (2 * SIGMA)
    second = ((fp + fm - 2 * f0) * w) @ (z**2 - 1) / (2 * SIGMA**2)
    r = SteinDerivatives("sparse_grid", dim=D, sigma=SIGMA)(f, x)
    torch.testing.assert_close(r.grad, grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r.second, second, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(r.value, (fp * w).sum(1), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- numerics (docs/methods/stein-pinn.md, "Numerics")


def hjb_residual(r: SteinResult) -> torch.Tensor:
    """HJB-20 residual ∂_t u + Δ_x u − 0.05 ‖∇_x u‖² + 2 (x = dims 0..19, t = dim 20)."""
    return r.grad[:, 20] + r.laplacian(range(20)) - 0.05 * (r.grad[:, :20] ** 2).sum(1) + 2


def hjb_net(nn_out):
    """u = Σ x_i + (1 − t) NN(x, t), the hard terminal constraint."""
    return lambda v: v[:, :20].sum(1) + (1 - v[:, 20]) * nn_out(v)


def test_hjb_exact_solution_residual_is_zero_in_float64():
    x = torch.rand(50, 21, dtype=torch.float64)
    u = hjb_net(lambda v: torch.ones(v.shape[0], dtype=v.dtype))
    res = hjb_residual(SteinDerivatives("sparse_grid", dim=21)(u, x))
    assert res.abs().max() < 1e-8  # float64 rounding floor: eps·|u|·Σ|w(z²−1)|/σ² ≈ 1e-9 for |u| ≈ 10


def _longdouble_reference(Ws, bs, x, sigma, z, w):
    """The same level-3 Stein quadrature, network and sums in numpy.longdouble (pair formulas, no reordering)."""
    ld = np.longdouble
    Ws = [np.asarray(W, dtype=ld) for W in Ws]
    bs = [np.asarray(b, dtype=ld) for b in bs]
    sig = ld(sigma)

    def u(v):
        h = v
        for k, (W, b) in enumerate(zip(Ws, bs)):
            h = h @ W.T + b
            if k < len(Ws) - 1:
                h = np.sin(h)
        return v[:, :20].sum(1) + (1 - v[:, 20]) * h[:, 0]

    x, z, w = np.asarray(x, dtype=ld), np.asarray(z, dtype=ld), np.asarray(w, dtype=ld)
    B, n = x.shape[0], z.shape[0]
    fp = u((x[:, None] + sig * z).reshape(-1, 21)).reshape(B, n)
    fm = u((x[:, None] - sig * z).reshape(-1, 21)).reshape(B, n)
    f0 = u(x)[:, None]
    grad = ((fp - fm) * w) @ z / (2 * sig)
    second = ((fp + fm - 2 * f0) * w) @ (z * z - 1) / (2 * sig * sig)
    return grad[:, 20] + second[:, :20].sum(1) - ld(0.05) * (grad[:, :20] ** 2).sum(1) + 2


def test_float64_scheme_matches_extended_precision_and_float32_does_not():
    """The float64 HJB-20 residual of a random sine net equals the 80-bit reference to 1e-8 (measured 1e-9);
    float32 rows through a float32 net are far off (docs/methods/stein-pinn.md: ~0.46 on ~0.8)."""
    if np.finfo(np.longdouble).eps >= 1e-18:
        pytest.skip("numpy.longdouble is not extended precision on this platform")
    torch.manual_seed(1)
    lin = [torch.nn.Linear(21, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 1)]
    net = torch.nn.Sequential(lin[0], Sin(), lin[1], Sin(), lin[2]).double()
    x = torch.rand(8, 21, dtype=torch.float64)
    z, w = smolyak_gauss_hermite(21, 3)
    ref = _longdouble_reference(
        [m.weight.detach().numpy() for m in lin], [m.bias.detach().numpy() for m in lin], x.numpy(), SIGMA, z, w
    )
    ref = torch.as_tensor(ref.astype(np.float64))
    assert ref.abs().mean() > 0.1  # a non-trivial residual
    res64 = hjb_residual(SteinDerivatives("sparse_grid", dim=21, sigma=SIGMA)(hjb_net(lambda v: net(v)[:, 0]), x))
    assert (res64 - ref).abs().max() < 1e-8  # measured 1.1e-9 (the float64 rounding floor)
    net32 = net.float()
    res32 = hjb_residual(
        SteinDerivatives("sparse_grid", dim=21, sigma=SIGMA, dtype=torch.float32)(hjb_net(lambda v: net32(v)[:, 0]), x)
    )
    assert (res32 - ref).abs().max() > 1e-3


def test_float32_network_is_refused_by_default():
    net = torch.nn.Linear(3, 1)  # float32
    est = SteinDerivatives("sparse_grid", dim=3)
    with pytest.raises(TypeError, match="float64"):
        est(lambda v: net(v.float())[:, 0], torch.rand(2, 3))


def test_bad_arguments():
    with pytest.raises(ValueError):
        SteinDerivatives("quasi_mc", dim=3)
    with pytest.raises(ValueError):
        SteinDerivatives("sparse_grid", dim=3, sigma=0.0)
    est = SteinDerivatives("sparse_grid", dim=3)
    with pytest.raises(ValueError):
        est(lambda v: v.sum(1), torch.rand(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError):
        est(lambda v: v, torch.rand(4, 3, dtype=torch.float64))  # (N, D) output
    assert "level=3" in repr(est) and "evaluations_per_point=25" in repr(est)
