"""sparse-cge: dense CGE restricted to a random mask with layer ratios, reshuffled every K epochs."""

import pytest
import torch
from edgezo.models.cnn import CNN

from edgezo.adapters.deepzero.grasp import keep_counts, prunable_entries
from edgezo.adapters.deepzero.sparse_cge import SparseCGE, random_mask
from edgezo.estimators import CGE, build_estimator
from edgezo.losses import cross_entropy
from edgezo.oracles.staged import StagedOracle
from edgezo.oracles.torch_oracle import TorchOracle


def setup():
    torch.manual_seed(0)
    model = CNN(2, 4, in_channels=1, image_size=8, min_size=2)
    batch = (torch.randn(10, 1, 8, 8), torch.randint(0, 10, (10,)))
    return model, batch


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_sparse_equals_dense_restricted_to_mask(f64, difference):
    model, batch = setup()
    staged = StagedOracle(model, cross_entropy)
    sparse = SparseCGE(mu=1e-4, difference=difference, sparsity=0.7, ratios="uniform")
    est = sparse.estimate(staged, batch, step=3, seed=11)
    mask = sparse.mask(staged.layout, 3, 11)
    dense = CGE(mu=1e-4, difference=difference).estimate(TorchOracle(model, cross_entropy, path="loop"), batch,
                                                         step=3, seed=11)
    g_sparse = est.to_dense(staged.layout, dtype=torch.float64)
    g_dense = dense.to_dense(staged.layout, dtype=torch.float64)
    on = torch.zeros(staged.dim, dtype=torch.bool)
    on[mask] = True
    assert (g_sparse[on] - g_dense[on]).abs().max() < 1e-10
    assert torch.count_nonzero(g_sparse[~on]) == 0
    assert est.forward_passes == (mask.numel() + 1 if difference == "forward" else 2 * mask.numel())
    assert abs(est.loss - dense.loss) < 1e-8


def test_mask_contents_and_reshuffle_schedule():
    model, batch = setup()
    oracle = StagedOracle(model, cross_entropy)
    layout = oracle.layout
    est = SparseCGE(sparsity=0.8, ratios="uniform", reshuffle_every=2, steps_per_epoch=5)
    est.prepare(oracle)
    counts = keep_counts(layout, est.ratios)
    m0 = est.mask(layout, 0, seed=1)
    for e in layout.entries:  # every bias / BN coordinate, and k_l random coordinates of each weight
        inside = ((m0 >= e.offset) & (m0 < e.offset + e.numel)).sum().item()
        assert inside == (counts[e.name] if len(e.shape) >= 2 else e.numel)
    assert torch.equal(est.mask(layout, 9, seed=1), m0)  # epochs 0-1 (steps 0-9) share the mask
    m1 = est.mask(layout, 10, seed=1)
    assert not torch.equal(m1, m0) and m1.numel() == m0.numel()
    assert torch.equal(est.mask(layout, 0, seed=1), m0)  # a pure function of (seed, period)
    assert not torch.equal(est.mask(layout, 0, seed=2), m0)
    assert torch.equal(m0, torch.unique(m0))  # sorted, no duplicates


def test_dense_when_sparsity_zero_and_registry():
    model, batch = setup()
    oracle = StagedOracle(model, cross_entropy)
    est = build_estimator({"kind": "sparse-cge", "sparsity": 0.0, "mu": 1e-3})
    assert isinstance(est, SparseCGE) and "sparsity=0.0" in repr(est)
    out = est.estimate(oracle, batch, step=0, seed=0)
    assert out.info["active"] == oracle.dim
    with pytest.raises(ValueError, match="bad options"):
        build_estimator({"kind": "sparse-cge", "q": 3})


def test_zo_grasp_prepare_is_deterministic():
    """ZO-GraSP ratios (RGE, q = 16 here) depend only on θ, the batch and the seed."""
    model, batch = setup()
    ratios = []
    for _ in range(2):
        oracle = StagedOracle(model, cross_entropy)
        est = SparseCGE(sparsity=0.9, grasp_q=16)
        ratios.append(est.prepare(oracle, batch, seed=4))
    assert ratios[0] == ratios[1]
    weights = sum(e.numel for e in prunable_entries(oracle.layout))
    kept = sum(keep_counts(oracle.layout, ratios[0]).values())
    assert kept == round(0.1 * weights)


def test_bad_options():
    with pytest.raises(ValueError, match="sparsity"):
        SparseCGE(sparsity=1.0)
    with pytest.raises(ValueError, match="ratios"):
        SparseCGE(ratios="magnitude")
    with pytest.raises(ValueError, match="reshuffle_every"):
        SparseCGE(reshuffle_every=0)
    model, _ = setup()
    layout = StagedOracle(model, cross_entropy).layout
    with pytest.raises(ValueError, match="cannot keep"):
        random_mask(layout, {"stages.0.conv.weight": 10_000}, seed=0, period=0)
    with pytest.raises(RuntimeError, match="prepare"):
        SparseCGE().mask(layout, 0, 0)
