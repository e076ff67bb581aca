"""RGE against analytic gradients.

Stochastic but seeded: each check averages N estimates and allows 5 standard
errors per coordinate (derived from the estimator's variance), so it fails
with negligible probability for any seed — and certainly for the fixed ones.
"""

import math

import pytest
import torch
from torch import nn

from edgezo.estimators import RGE, build_estimator
from edgezo.oracles.torch_oracle import TorchOracle


class Quadratic(nn.Module):
    def __init__(self, d=12):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        m = torch.randn(d, d, generator=g, dtype=torch.float64)
        self.register_buffer("A", m @ m.T / d + torch.eye(d, dtype=torch.float64))
        self.register_buffer("b", torch.randn(d, generator=g, dtype=torch.float64))
        self.theta = nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64))

    def f(self, t):
        return 0.5 * ((t @ self.A) * t).sum(-1) + t @ self.b

    def forward(self, x):
        return self.f(self.theta)

    def forward_stacked(self, params, x):
        return self.f(params["theta"])

    def grad(self):
        return (self.A @ self.theta + self.b).detach()


def value(out, y):
    return out


BATCH = (torch.zeros(1, 1), torch.zeros(1))


@pytest.mark.parametrize("direction", ["rademacher", "gaussian", "sphere"])
@pytest.mark.parametrize("difference", ["forward", "central"])
def test_rge_mean_matches_gradient(direction, difference):
    model = Quadratic()
    oracle = TorchOracle(model, value)
    g = model.grad()
    d, q, n = g.numel(), 8, 600
    est = RGE(q=q, mu=1e-4, difference=difference, direction=direction)
    samples = torch.stack([est.estimate(oracle, BATCH, step=s, seed=3).to_dense(oracle.layout, dtype=torch.float64)
                           for s in range(n)])
    mean = samples.mean(0)
    # Var of one coordinate of (u^T g) u is <= c * |g|^2 (c = 1 Rademacher, 3 Gaussian, ~3 sphere·d/(d+2));
    se = math.sqrt(3 * float(g @ g) / (q * n))
    assert torch.all((mean - g).abs() < 5 * se), (mean - g).abs().max() / se
    # and the empirical spread agrees with the d/q variance law to within a factor 2
    emp = float(((samples - g) ** 2).sum(1).mean())
    theory = {"rademacher": (d - 1), "gaussian": (d + 1), "sphere": (d - 1)}[direction] * float(g @ g) / q
    assert 0.5 * theory < emp < 2 * theory


def test_seed_pairs_reproduce_dense_estimate():
    model = Quadratic()
    oracle = TorchOracle(model, value)
    e = RGE(q=5, direction="gaussian").estimate(oracle, BATCH, step=2, seed=9)
    (term,) = e.seed_terms
    assert len(term.seeds) == 5 and len(term.coeffs) == 5
    from edgezo.directions import directions

    z = directions(list(term.seeds), 0, oracle.dim, "gaussian", dtype=torch.float64)
    assert torch.allclose(e.to_dense(oracle.layout, dtype=torch.float64), torch.tensor(term.coeffs).double() @ z)


def test_forward_pass_counts():
    model = Quadratic()
    oracle = TorchOracle(model, value)
    RGE(q=7, difference="central").estimate(oracle, BATCH, step=0, seed=0)
    assert oracle.counters.forward_passes == 14
    RGE(q=7, difference="forward").estimate(oracle, BATCH, step=0, seed=0)
    assert oracle.counters.forward_passes == 14 + 8
    assert RGE(q=7).forward_passes_per_step(100) == 14


def test_layerwise_cycles_groups():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    from edgezo.losses import cross_entropy

    oracle = TorchOracle(net, cross_entropy, groups="per_module")
    est = RGE(q=2, layerwise="cycle")
    batch = (torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    groups = [est.estimate(oracle, batch, step=s, seed=0).info["groups"][0] for s in range(4)]
    assert groups == ["0", "2", "0", "2"]
    g = est.estimate(oracle, batch, step=1, seed=0).to_dense(oracle.layout)
    assert torch.count_nonzero(g[:16]) == 0 and torch.count_nonzero(g[16:]) > 0


def test_bad_options():
    with pytest.raises(ValueError, match="q must be"):
        RGE(q=0)
    with pytest.raises(ValueError, match="mu must be"):
        RGE(mu=0)
    with pytest.raises(ValueError, match="direction must be"):
        RGE(direction="uniform")
    with pytest.raises(ValueError, match="unknown estimator"):
        build_estimator({"kind": "magic"})
    with pytest.raises(ValueError, match="bad options"):
        build_estimator({"kind": "rge", "qq": 3})
    assert repr(RGE(q=64)) == "RGE(q=64)"


def test_seed_chain_option():
    """seed_chain: s_0 from step_seeds, s_i = H(H(i) ^ s_0) (the directions' hash); the default is unchanged."""
    from edgezo.directions import chain_seeds, hash32
    from edgezo.estimators.base import step_seeds

    model = Quadratic()
    oracle = TorchOracle(model, value)
    plain = RGE(q=5, mu=1e-3, difference="forward").estimate(oracle, BATCH, step=3, seed=7).seed_terms[0]
    assert plain.seeds == step_seeds(7, 3, 5)
    chained = RGE(q=5, mu=1e-3, difference="forward", seed_chain=True).estimate(oracle, BATCH, step=3, seed=7)
    seeds = chained.seed_terms[0].seeds
    s0 = step_seeds(7, 3, 1)[0]
    h = lambda v: int(hash32(torch.tensor([v], dtype=torch.int64))[0])
    assert seeds[0] == s0 and seeds == chain_seeds(s0, 5)
    assert list(seeds[1:]) == [h(h(i) ^ s0) for i in range(1, 5)]
    assert len(set(seeds)) == 5 and seeds != plain.seeds
    assert RGE(q=5, seed_chain=True).options()["seed_chain"] is True
    assert "seed_chain" not in RGE(q=5).options()
    # the chained estimate is still an RGE estimate: mean over steps matches the gradient direction
    est = RGE(q=8, mu=1e-4, difference="central", seed_chain=True)
    d = model.theta.numel()
    mean = sum(est.estimate(oracle, BATCH, step=s, seed=1).to_dense(oracle.layout, dtype=torch.float64)
               for s in range(400)) / 400
    cos = torch.nn.functional.cosine_similarity(mean, model.grad(), dim=0)
    assert cos > 0.95, cos  # q·steps = 3200 directions in d = 12: the mean is close to the gradient
    assert d == 12
