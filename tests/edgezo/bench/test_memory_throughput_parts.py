"""Parts of `edgezo bench memory` / `throughput` checked against analytic answers (no timing asserted)."""

import pytest
import torch
from edgezo.models import MLP

from edgezo.bench.mezo import mezo_step
from edgezo.bench.throughput import forward_flops, vmap_step
from edgezo.losses import cross_entropy


def test_mezo_step_is_the_two_point_update_with_regenerated_normals():
    torch.manual_seed(0)
    model = MLP([6, 5, 3])
    batch = (torch.randn(8, 6), torch.randint(0, 3, (8,)))
    theta = [p.detach().clone() for p in model.parameters()]
    mu, lr, seed = 1e-2, 0.1, 7
    torch.manual_seed(seed)
    z = [torch.normal(mean=0.0, std=1.0, size=p.size()) for p in theta]
    with torch.no_grad():
        for p, zi in zip(model.parameters(), z):
            p.add_(mu * zi)
        plus = float(cross_entropy(model(batch[0]), batch[1]))
        for p, zi in zip(model.parameters(), z):
            p.sub_(2 * mu * zi)
        minus = float(cross_entropy(model(batch[0]), batch[1]))
        for p, t in zip(model.parameters(), theta):
            p.copy_(t)
    g = (plus - minus) / (2 * mu)
    mezo_step(model, cross_entropy, batch, mu=mu, lr=lr, seeds=[seed])
    for p, t, zi in zip(model.parameters(), theta, z):
        assert torch.allclose(p, t - lr * g * zi, atol=1e-6)


def test_forward_flops_of_an_mlp_are_2_b_sum_of_layer_products():
    model = MLP([64, 32, 10])
    assert forward_flops(model, torch.randn(256, 64)) == 2 * 256 * (64 * 32 + 32 * 10)


def test_vmap_step_moves_theta_along_the_estimate():
    torch.manual_seed(0)
    model = MLP([6, 5, 3])
    batch = (torch.randn(16, 6), torch.randint(0, 3, (16,)))
    with torch.no_grad():
        before = float(cross_entropy(model(batch[0]), batch[1]))
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        vmap_step(model, cross_entropy, batch, 16, gen)
    with torch.no_grad():
        assert float(cross_entropy(model(batch[0]), batch[1])) < before


def test_memory_probe_counts_the_model_in_the_inference_peak():
    pytest.importorskip("transformers")
    from edgezo.bench.memory import probe

    # each measurement runs in a fresh interpreter, as the bench runs it: inside pytest the heap
    # already holds freed pages of earlier tests, which a new model may reuse without growing the RSS
    small = probe({"size": [1, 32, 2, 64], "batch": 2, "context": 8, "mode": "inference"}, timeout=300)
    big = probe({"size": [1, 32, 2, 300000], "batch": 2, "context": 8, "mode": "inference"}, timeout=300)
    assert small["peak_reset"] and big["parameters"] - small["parameters"] == (300000 - 64) * 32
    # the extra 9.6M parameters (38 MB of float32) show up in the peak, within allocator slack
    assert big["peak_mb"] - small["peak_mb"] > 0.8 * (300000 - 64) * 32 * 4 / 2**20
