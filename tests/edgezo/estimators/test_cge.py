import torch
from torch import nn

from edgezo.estimators import CGE, FirstOrder
from edgezo.losses import cross_entropy
from edgezo.oracles.torch_oracle import TorchOracle


class Linear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w)
        self.theta = nn.Parameter(torch.randn(w.numel(), dtype=torch.float64))

    def forward(self, x):
        return self.theta @ self.w

    def forward_stacked(self, params, x):
        return params["theta"] @ self.w


def value(out, y):
    return out


BATCH = (torch.zeros(1, 1), torch.zeros(1))


def test_cge_is_exact_on_a_linear_loss():
    w = torch.randn(30, dtype=torch.float64)
    oracle = TorchOracle(Linear(w), value)
    for diff in ("forward", "central"):
        g = CGE(mu=1e-3, difference=diff).estimate(oracle, BATCH, step=0, seed=0).to_dense(oracle.layout,
                                                                                         dtype=torch.float64)
        assert torch.allclose(g, w, atol=1e-9, rtol=0)


def test_cge_subset_leaves_other_coordinates_zero_and_counts():
    w = torch.randn(30, dtype=torch.float64)
    oracle = TorchOracle(Linear(w), value)
    est = CGE(coords=[3, 7, 11])
    g = est.estimate(oracle, BATCH, step=0, seed=0).to_dense(oracle.layout, dtype=torch.float64)
    assert torch.allclose(g[[3, 7, 11]], w[[3, 7, 11]], atol=1e-9)
    assert torch.count_nonzero(g) == 3
    assert oracle.counters.forward_passes == 4


def test_cge_matches_autograd_on_mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    oracle = TorchOracle(net, cross_entropy)
    batch = (torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,)))
    exact = FirstOrder().estimate(oracle, batch, step=0, seed=0).dense
    g = CGE(mu=1e-5, difference="central").estimate(oracle, batch, step=0, seed=0).to_dense(oracle.layout,
                                                                                        dtype=torch.float64)
    assert torch.allclose(g, exact, atol=1e-8)


def test_cge_groups_and_bad_coords():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    oracle = TorchOracle(net, cross_entropy, groups={"biases": "*.bias"})
    idx = CGE(groups=["biases"]).active_coords(oracle)
    assert idx.tolist() == [0, 1, 2, 3]
    import pytest

    with pytest.raises(IndexError):
        CGE(coords=[99]).active_coords(oracle)
