"""PDE definitions (edgezo.adapters.pinn.pde): residuals, hard constraints, exact solutions."""

import math

import numpy as np
import pytest
import torch

from edgezo.adapters.pinn.pde import HJB, Heat, HJBSines, PoissonBall, build_pde, relative_l2
from edgezo.adapters.pinn.sparse_grid import gauss_hermite_1d


def autograd_terms(u_fn, x):
    """u, ∇u and the diagonal of ∇²u by autograd (reference derivatives)."""
    x = x.clone().requires_grad_(True)
    u = u_fn(x)
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    if not g.requires_grad:  # u linear in x
        return u.detach(), g.detach(), torch.zeros_like(x)
    second = torch.stack([torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0][:, i]
                          for i in range(x.shape[1])], dim=1)
    return u.detach(), g.detach(), second.detach()


@pytest.mark.parametrize("pde", [HJB(20), HJB(3), Heat(10), Heat(2), Heat(10, rate=1.0),
                                 Heat(10, rate=1.0, modes=[3, 2] + [1] * 8), Heat(2, modes=[2, 3]), HJBSines(10),
                                 HJBSines(3, freq=3.0), PoissonBall(10), PoissonBall(3, freq=2.0)], ids=repr)
def test_exact_solution_has_zero_residual_and_wrong_ones_do_not(pde):
    x = pde.sample(50, torch.Generator().manual_seed(0))
    res = pde.residual(x, *autograd_terms(pde.exact, x))
    assert res.abs().max() < 1e-12
    wrong = pde.residual(x, *autograd_terms(lambda v: pde.exact(v) + 0.1 * v[:, 0] ** 2, x))
    assert wrong.abs().max() > 5e-4  # ≥ 0.2·κ (κ = 1/(21 π²) for the heat with modes (3, 2, 1, …), rate 1)


@pytest.mark.parametrize("pde", [HJB(20), Heat(10), Heat(3), Heat(3, modes=[2, 1, 3])], ids=repr)
def test_hard_constraint_holds_for_any_network_output(pde):
    x = pde.sample(40, torch.Generator().manual_seed(1))
    outs = (torch.zeros(40, dtype=torch.float64), 10 * torch.randn(40, dtype=torch.float64))
    x[:, -1] = 1.0 if isinstance(pde, HJB) else 0.0  # the terminal / initial time
    for out in outs:
        torch.testing.assert_close(pde.constrain(x, out), pde.exact(x), rtol=0, atol=1e-14)
    if isinstance(pde, Heat):  # the faces of the cube, at any time
        x[:, -1] = torch.rand(40, dtype=torch.float64)
        x[:20, 0], x[20:, 1] = 0.0, 1.0
        for out in outs:
            torch.testing.assert_close(pde.constrain(x, out), pde.exact(x), rtol=0, atol=1e-14)
            assert pde.exact(x).abs().max() < 1e-15
    # inside the domain the network output matters
    x = pde.sample(40, torch.Generator().manual_seed(2))
    assert (pde.constrain(x, outs[1]) - pde.constrain(x, outs[0])).abs().min() > 0


def test_hjb_constraint_output_one_is_the_exact_solution_and_zero_net_scores_5_5e_2():
    pde = HJB(20)
    x = pde.sample(10_000, torch.Generator().manual_seed(1234))
    torch.testing.assert_close(pde.constrain(x, torch.ones(10_000, dtype=torch.float64)), pde.exact(x),
                               rtol=0, atol=1e-12)
    zero = relative_l2(pde.constrain(x, torch.zeros(10_000, dtype=torch.float64)), pde.exact(x))
    # analytic: ‖1 − t‖ / ‖Σx + 1 − t‖ = sqrt((1/3) / E[(Σx + 1 − t)²]), E[...] = 10.5² + 20/12 + 1/12
    expected = math.sqrt((1 / 3) / (10.5**2 + 20 / 12 + 1 / 12))
    assert zero == pytest.approx(expected, rel=0.02) and zero == pytest.approx(0.055, abs=0.001)


def test_heat_solution_is_its_own_gaussian_average():
    """e^{−π√d t} Π sin(π x_i) is harmonic in (x, t): E u(x + σz) = u(x) (tensor Gauss–Hermite, 2+1 dims)."""
    pde = Heat(2)
    z1, w1 = gauss_hermite_1d(30)
    grid = np.stack(np.meshgrid(z1, z1, z1, indexing="ij"), -1).reshape(-1, 3)
    w = torch.as_tensor(np.einsum("i,j,k->ijk", w1, w1, w1).reshape(-1))
    x = pde.sample(10, torch.Generator().manual_seed(2))
    for sigma in (0.1, 0.3):
        smoothed = pde.exact(x[:, None, :] + sigma * torch.as_tensor(grid)[None]) @ w
        torch.testing.assert_close(smoothed, pde.exact(x), rtol=0, atol=1e-12)
    # a non-harmonic function is changed by the averaging (the check can fail)
    smoothed = torch.sin(math.pi * (x[:, None, 0] + 0.3 * torch.as_tensor(grid)[None, :, 0])) @ w
    assert (smoothed - torch.sin(math.pi * x[:, 0])).abs().max() > 1e-2


def test_second_dims_and_sampling():
    assert HJB(20).second_dims == tuple(range(20)) and HJB(20).dim == 21
    assert Heat(10).second_dims == tuple(range(10)) and Heat(10).dim == 11
    x = HJB(4).sample(1000, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64 and x.shape == (1000, 5) and 0 <= x.min() and x.max() <= 1
    a = HJB(4).sample(5, torch.Generator().manual_seed(3))
    assert torch.equal(a, HJB(4).sample(5, torch.Generator().manual_seed(3)))


def test_residual_broadcasts_over_a_leading_axis():
    pde = HJB(3)
    x = pde.sample(6, torch.Generator().manual_seed(0))
    u, g, s = (torch.randn(2, 6, *shape, dtype=torch.float64) for shape in ((), (4,), (4,)))
    r = pde.residual(x, u, g, s)
    assert r.shape == (2, 6)
    torch.testing.assert_close(r[1], pde.residual(x, u[1], g[1], s[1]))


def test_build_pde_and_errors():
    assert isinstance(build_pde({"kind": "hjb", "space_dim": 5}), HJB) and build_pde("heat").dim == 4
    with pytest.raises(ValueError, match="unknown PDE"):
        build_pde({"kind": "wave"})
    with pytest.raises(ValueError, match="bad options"):
        build_pde({"kind": "hjb", "dims": 3})
    with pytest.raises(ValueError):
        HJB(0)
    assert "space_dim=20" in repr(HJB())


@pytest.mark.parametrize("pde", [HJBSines(4), Heat(2, rate=1.0)], ids=repr)
def test_gaussian_average_of_the_exact_solution_has_zero_residual(pde):
    """HJBSines: u* harmonic in (x, t), so E u*(x + σz) = u*; Heat with any rate: the average is c·u*, c constant,
    which solves the (linear, homogeneous) equation too. Either way the Stein residual vanishes at u*."""
    k = pde.dim
    z1, w1 = gauss_hermite_1d(12)
    grid = torch.as_tensor(np.stack(np.meshgrid(*[z1] * k, indexing="ij"), -1).reshape(-1, k))
    w = torch.as_tensor(np.einsum(",".join("ijklm"[:k]) + "->" + "ijklm"[:k], *[w1] * k).reshape(-1))
    x = pde.sample(6, torch.Generator().manual_seed(3))
    sigma = 0.2
    smoothed = pde.exact(x[:, None, :] + sigma * grid[None]) @ w
    ratio = smoothed / pde.exact(x)
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-9, atol=0)
    if isinstance(pde, HJBSines):
        torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=1e-9, atol=0)
    else:
        assert abs(ratio[0] - 1) > 1e-3  # not harmonic: the average is a different multiple of u*


def test_hjb_sines_terminal_constraint_and_options():
    pde = build_pde({"kind": "hjb-sines", "space_dim": 10, "freq": 2.0})
    x = pde.sample(30, torch.Generator().manual_seed(4))
    x[:, -1] = 1.0
    torch.testing.assert_close(pde.constrain(x, torch.randn(30, dtype=torch.float64)), pde.exact(x), rtol=0, atol=1e-14)
    assert pde.second_dims == tuple(range(10)) and pde.describe()["freq"] == 2.0
    with pytest.raises(ValueError, match="freq"):
        HJBSines(10, freq=0.0)
    with pytest.raises(ValueError, match="rate"):
        Heat(3, rate=-1.0)


@pytest.mark.parametrize("modes", [[2, 1], [0, 1, 1], [1.5, 1, 1]])
def test_heat_modes_must_be_one_positive_integer_per_space_coordinate(modes):
    with pytest.raises(ValueError, match="modes must be 3 positive integers"):
        Heat(3, modes=modes)


def test_poisson_ball_constraint_sampling_and_exact_network_output():
    """Zero on the unit sphere for any network output; N* = sin(k₁·x) + cos(k₂·x) gives u* inside; the points are
    uniform in the ball: P(|x| < r) = r^d (d = 3, r = 1/2: 1/8, 20,000 points, binomial sd 0.0023)."""
    pde = build_pde({"kind": "poisson-ball", "space_dim": 3, "freq": 4.0})
    assert pde.dim == 3 and pde.second_dims == (0, 1, 2) and pde.describe()["freq"] == 4.0
    x = pde.sample(20_000, torch.Generator().manual_seed(5))
    radius = torch.linalg.norm(x, dim=-1)
    assert x.dtype == torch.float64 and radius.max() < 1
    assert abs(float((radius < 0.5).double().mean()) - 0.125) < 0.01
    assert abs(float((x[:, 0] < 0).double().mean()) - 0.5) < 0.02  # no preferred direction
    sphere = x[:40] / torch.linalg.norm(x[:40], dim=-1, keepdim=True)
    for out in (torch.zeros(40, dtype=torch.float64), 10 * torch.randn(40, dtype=torch.float64)):
        assert pde.constrain(sphere, out).abs().max() < 1e-14
    inside = x[:200]
    waves = torch.sin(inside @ pde.k1) + torch.cos(inside @ pde.k2)
    torch.testing.assert_close(pde.constrain(inside, waves), pde.exact(inside), rtol=0, atol=1e-14)
    assert torch.linalg.norm(pde.k1) == pytest.approx(4.0) and torch.linalg.norm(pde.k2) == pytest.approx(4.0)
    assert float(pde.k1 @ pde.k2) == pytest.approx(4.0 ** 2 / 3)  # d odd: the two directions are not orthogonal


@pytest.mark.parametrize("options, match", [({"space_dim": 1}, "space_dim"), ({"freq": 0.0}, "freq"),
                                            ({"freq": -2.0}, "freq")])
def test_poisson_ball_rejects_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        PoissonBall(**options)
