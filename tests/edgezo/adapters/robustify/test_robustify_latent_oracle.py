"""LatentOracle: the engine's RGE/CGE estimate ∇_z of the black-box loss in latent space."""

import pytest
import torch

from edgezo.adapters.robustify.blackbox import CallableBlackBox
from edgezo.adapters.robustify.latent_oracle import LatentOracle, nll
from edgezo.estimators import CGE, RGE
from edgezo.oracle import CoordQueries, SeedQueries

B, D, C = 4, 3, 5


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, C, generator=g, dtype=torch.float64)
    dec = torch.randn(D, 6, generator=g, dtype=torch.float64)
    z = torch.randn(B, D, generator=g)
    y = torch.randint(0, C, (B,), generator=g)

    def f(x):  # the "model owner's" classifier, logits of 6-dim inputs
        return x.double() @ w

    def decoder(codes):
        return (codes.double() @ dec).float()

    def loss(codes):  # reference: mean NLL of f(Dec(z)), differentiable, float64
        return nll(torch.softmax((codes @ dec) @ w, -1), y).mean()

    bb = CallableBlackBox(f, input_shape=(6,), scores="logits")
    return bb, decoder, z, y, loss


def _true_grad(loss, z):
    zz = z.double().clone().requires_grad_(True)
    loss(zz).backward()
    return zz.grad.float()


def test_cge_matches_autograd_and_costs_d_plus_one_per_sample():
    bb, decoder, z, y, loss = _setup()
    oracle = LatentOracle(bb, decoder)
    oracle.set_point(z, y)
    est = CGE(mu=1e-3, difference="forward").estimate(oracle, (y,), step=0, seed=0)
    a = oracle.gradient_from(est)
    assert torch.allclose(a, _true_grad(loss, z), atol=2e-3, rtol=2e-2)
    assert bb.queries == B * (D + 1)
    assert torch.allclose(a, est.to_dense(oracle.layout).view(B, D))


def test_rge_per_sample_groups_cost_and_direction():
    """RGE over the per-sample groups: B (q + 1) queries; with q ≫ d each sample's estimate aligns with
    its gradient (stochastic, fixed seeds; cos > 0.9 fails with negligible probability at q = 400, d = 3)."""
    bb, decoder, z, y, loss = _setup()
    oracle = LatentOracle(bb, decoder)
    oracle.set_point(z, y)
    q = 400
    rge = RGE(q=q, mu=1e-3, difference="forward", direction="sphere", groups=[f"s{b}" for b in range(B)])
    est = rge.estimate(oracle, (y,), step=3, seed=7)
    assert bb.queries == B * (q + 1)  # q perturbed points per sample + the B centre losses
    a = oracle.gradient_from(est)
    assert torch.allclose(a, est.to_dense(oracle.layout).view(B, D), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(a, _true_grad(loss, z), dim=1)
    assert bool((cos > 0.9).all()), cos


def test_group_query_equals_full_batch_loss_with_one_sample_moved():
    bb, decoder, z, y, loss = _setup()
    oracle = LatentOracle(bb, decoder)
    oracle.set_point(z, y)
    seeds, scales = (11, 12), (0.1, -0.2)
    got = oracle.evaluate(SeedQueries(seeds, scales, group="s2", kind="gaussian"), (y,))
    dirs = oracle._directions(seeds, oracle.layout.group("s2"), "gaussian")
    for i in range(2):
        moved = z.double().clone()
        moved[2] += scales[i] * dirs[i].double()
        assert float(got[i]) == pytest.approx(float(loss(moved)), rel=1e-5)
    coords = oracle.evaluate(CoordQueries((4,), (0.05,)), (y,))  # sample 1, coordinate 1
    moved = z.double().clone()
    moved[1, 1] += 0.05
    assert float(coords[0]) == pytest.approx(float(loss(moved)), rel=1e-5)
    assert oracle.loss((y,)) == pytest.approx(float(loss(z.double())), rel=1e-5)


def test_identity_decoder_is_pixel_space_zo_ds():
    bb, _, z, y, _ = _setup()
    oracle = LatentOracle(CallableBlackBox(lambda x: x.double()[:, :C], input_shape=(D,), scores="logits"))
    oracle.set_point(z, y)
    assert oracle.layout.dim == B * D and oracle.layout.group_names == tuple(f"s{b}" for b in range(B))


def test_requires_a_point():
    bb, decoder, z, y, _ = _setup()
    with pytest.raises(RuntimeError, match="set_point"):
        LatentOracle(bb, decoder).loss((y,))
    with pytest.raises(ValueError, match="codes"):
        LatentOracle(bb, decoder).set_point(z, y[:2])
