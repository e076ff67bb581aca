"""ZO-GraSP scores against autograd, and the layer ratios they give."""

import numpy as np
import pytest
import torch
from edgezo.models.cnn import CNN

from edgezo.adapters.deepzero.grasp import (
    keep_counts,
    layer_keep_ratios,
    prunable_entries,
    uniform_keep_ratios,
    zo_grasp_scores,
)
from edgezo.estimators import CGE
from edgezo.losses import cross_entropy
from edgezo.oracles.staged import StagedOracle


def setup(seed=0):
    torch.manual_seed(seed)
    model = CNN(2, 3, in_channels=1, image_size=8, min_size=2)
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    return model, batch, StagedOracle(model, cross_entropy)


def test_scores_match_autograd_hessian_gradient_product(f64):
    """With an exact inner gradient (central CGE, float64) the finite-difference score is −θ ⊙ H g."""
    model, batch, oracle = setup()
    theta = oracle.get_flat()
    params = oracle.space.parameters()
    loss = cross_entropy(model(batch[0]), batch[1])
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g = torch.cat([t.reshape(-1) for t in grads])
    hg = torch.cat([t.reshape(-1) for t in torch.autograd.grad(g @ g.detach(), params)])
    reference = (-theta * hg).detach()
    scores = zo_grasp_scores(oracle, batch, mu=1e-4, estimator=CGE(mu=1e-5, difference="central"))
    assert torch.equal(oracle.get_flat(), theta)  # θ restored exactly
    assert (scores - reference).abs().max() < 1e-3 * reference.abs().max()


def test_rge_scores_are_finite_and_restore_theta():
    """Stochastic (RGE, q = 192, fixed seed): only finiteness and the exact restore are asserted."""
    _, batch, oracle = setup()
    theta = oracle.get_flat()
    scores = zo_grasp_scores(oracle, batch, q=192, seed=3)
    assert scores.shape == (oracle.dim,) and torch.isfinite(scores).all()
    assert torch.equal(oracle.get_flat(), theta)
    assert oracle.counters.forward_passes == 2 * 193


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_ratios_give_the_target_sparsity(sparsity):
    _, _, oracle = setup()
    layout = oracle.layout
    scores = torch.randn(layout.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ratios = layer_keep_ratios(layout, scores, sparsity)
    entries = prunable_entries(layout)
    assert set(ratios) == {e.name for e in entries} and all(len(e.shape) >= 2 for e in entries)
    counts = keep_counts(layout, ratios)
    total = sum(e.numel for e in entries)
    assert sum(counts.values()) == max(len(entries), round((1 - sparsity) * total))
    assert min(counts.values()) >= 1


def test_ratios_follow_the_scores():
    _, _, oracle = setup()
    layout = oracle.layout
    scores = torch.zeros(layout.dim, dtype=torch.float64)
    fc = layout.entry("stages.2.fc.weight")
    scores[fc.offset : fc.offset + fc.numel] = -5.0  # magnitudes decide, not signs
    ratios = layer_keep_ratios(layout, scores, 0.9)
    kept = round(0.1 * sum(e.numel for e in prunable_entries(layout)))
    assert ratios["stages.2.fc.weight"] == pytest.approx(min(1.0, (kept - 2) / fc.numel))
    assert ratios["stages.0.conv.weight"] * 27 == 1  # min_keep = 1 for the others
    uniform = uniform_keep_ratios(layout, 0.75)
    assert set(uniform.values()) == {0.25}


def test_bad_inputs():
    _, _, oracle = setup()
    with pytest.raises(ValueError, match="sparsity"):
        layer_keep_ratios(oracle.layout, torch.zeros(oracle.dim), 1.0)
    with pytest.raises(ValueError, match="entries"):
        layer_keep_ratios(oracle.layout, torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="not finite"):
        layer_keep_ratios(oracle.layout, torch.full((oracle.dim,), np.nan), 0.5)
    with pytest.raises(KeyError, match="unknown parameters"):
        keep_counts(oracle.layout, {"nope": 0.5})
