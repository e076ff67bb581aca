"""SteinPINN (edgezo.adapters.pinn.model): the forward-only PDE residual, batched and chunked."""

import pytest
import torch
from edgezo.models.mlp import MLP
from edgezo.models.pinn import PINNMLP
from torch.func import functional_call

from edgezo.adapters.pinn.model import SteinPINN
from edgezo.adapters.pinn.pde import HJB
from edgezo.adapters.pinn.stein import SteinDerivatives


class RowRecorder(torch.nn.Module):
    """Wraps a network without batched forwards; records the rows of every call."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.net(x)


def reference_residual(net, pde, stein, x):
    """The residual computed by SteinDerivatives on the constrained network (the module-free formula)."""
    r = stein(lambda v: pde.constrain(v, net(v)[:, 0]), x)
    return pde.residual(x, r.value, r.grad, r.second)


def stacked(model, q, names, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    return {n: p.detach() + (scale * torch.randn(q, *p.shape, generator=g, dtype=p.dtype) if n in names
                             else torch.zeros(q, *p.shape, dtype=p.dtype))
            for n, p in model.named_parameters()}


@pytest.fixture
def hjb_setup():
    torch.manual_seed(0)
    pde = HJB(20)
    net = PINNMLP([21, 16, 16, 1])
    stein = SteinDerivatives("sparse_grid", dim=21)
    x = pde.sample(5, torch.Generator().manual_seed(1))
    return pde, net, stein, x


def test_forward_equals_the_stein_formula(hjb_setup):
    pde, net, stein, x = hjb_setup
    model = SteinPINN(net, pde, stein)
    with torch.no_grad():
        got = model(x)
    torch.testing.assert_close(got, reference_residual(net, pde, stein, x), rtol=1e-9, atol=1e-9)
    assert got.abs().mean() > 0.1  # a random net has a non-trivial residual


@pytest.mark.parametrize("names", [
    ("net.layers.2.weight", "net.layers.2.bias"),  # the output layer only: shared hidden features
    ("net.layers.0.weight", "net.layers.1.bias", "net.layers.2.weight"),
    (),  # nothing perturbed: the network runs once
])
def test_forward_stacked_matches_one_set_at_a_time(hjb_setup, names):
    pde, net, stein, x = hjb_setup
    model = SteinPINN(net, pde, stein)
    params = stacked(model, 3, names)
    with torch.no_grad():
        out = model.forward_stacked(params, x)
        ref = torch.stack([functional_call(model, {k: v[i] for k, v in params.items()}, (x,)) for i in range(3)])
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    assert model.network_evaluations == 3 * 5 * 925 + 3 * 5 * 925


def test_generic_networks_and_chunking_bound(hjb_setup):
    """An MLP (full stacked params) and a plain module (no batched forward) agree; no call exceeds max_rows."""
    pde, net, stein, x = hjb_setup
    mlp = MLP([21, 16, 16, 1], activation="sin").double()
    mlp.load_state_dict(net.state_dict())
    params = stacked(SteinPINN(net, pde, stein), 2, ("net.layers.1.weight",))
    with torch.no_grad():
        a = SteinPINN(net, pde, stein).forward_stacked(params, x)
        b = SteinPINN(mlp, pde, stein, max_rows=1000).forward_stacked(params, x)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        rec = RowRecorder(net)
        plain = SteinPINN(rec, pde, stein, max_rows=700)
        torch.testing.assert_close(plain(x), SteinPINN(net, pde, stein)(x), rtol=1e-9, atol=1e-9)
    assert max(rec.calls) <= 700 and sum(rec.calls) == 5 * 925  # nodes of one point split across calls


@pytest.mark.parametrize("max_rows", [925, 2000, 10**7])
def test_chunk_size_does_not_change_the_result(hjb_setup, max_rows, monkeypatch):
    """Results are independent of the chunking, and no network call sees more than max_rows (q·B·n) rows."""
    pde, net, stein, x = hjb_setup
    params = stacked(SteinPINN(net, pde, stein), 4, ("net.layers.0.bias", "net.layers.2.weight"))
    with torch.no_grad():
        ref = SteinPINN(net, pde, stein, max_rows=10**7).forward_stacked(params, x)
        sizes = []
        orig = net.forward_shifted
        monkeypatch.setattr(net, "forward_shifted", lambda p, xb, s, q: sizes.append(q * len(xb) * len(s))
                            or orig(p, xb, s, q=q))
        got = SteinPINN(net, pde, stein, max_rows=max_rows).forward_stacked(params, x)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    assert max(sizes) <= max_rows and sum(sizes) == 4 * 5 * 925


def test_exact_network_has_zero_residual_both_ways():
    """N ≡ 1 (zero weights, output bias 1) is the HJB-20 solution: Stein residual at the float64 floor, autograd 0."""
    pde = HJB(20)
    net = PINNMLP([21, 8, 1], output_init="zero")
    with torch.no_grad():
        net.layers[-1].bias.fill_(1.0)
    x = pde.sample(20, torch.Generator().manual_seed(0))
    stein = SteinDerivatives("sparse_grid", dim=21)
    with torch.no_grad():
        assert SteinPINN(net, pde, stein)(x).abs().max() < 1e-8
    assert SteinPINN(net, pde, None, derivatives="autograd")(x).abs().max() < 1e-12
    torch.testing.assert_close(SteinPINN(net, pde, stein).solution(x), pde.exact(x), rtol=0, atol=1e-12)


def test_autograd_residual_is_the_unsmoothed_one():
    """On a random net, Stein (σ = 0.1) and autograd residuals differ by the O(σ²) smoothing bias only;
    halving σ cuts the difference by about 4 (measured 2.3e-4 → 5.7e-5 relative)."""
    torch.manual_seed(3)
    pde = HJB(4)
    net = PINNMLP([5, 16, 16, 1])
    x = pde.sample(30, torch.Generator().manual_seed(2))
    auto = SteinPINN(net, pde, None, derivatives="autograd")(x).detach()
    diffs = []
    for sigma in (0.1, 0.05):
        with torch.no_grad():
            st = SteinPINN(net, pde, SteinDerivatives("sparse_grid", dim=5, sigma=sigma, level=4))(x)
        diffs.append(float(torch.linalg.norm(st - auto) / torch.linalg.norm(auto)))
    assert diffs[0] < 2e-3 and 3.0 < diffs[0] / diffs[1] < 5.0, diffs


def test_backprop_through_stein_and_autograd_both_work(hjb_setup):
    pde, net, stein, x = hjb_setup
    for model in (SteinPINN(net, pde, stein), SteinPINN(net, pde, None, derivatives="autograd")):
        net.zero_grad()
        model(x).pow(2).mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_monte_carlo_nodes_follow_the_batch():
    """Same collocation batch → same nodes (finite differences stay consistent); new batch → new nodes."""
    pde = HJB(3)
    net = PINNMLP([4, 8, 1])
    model = SteinPINN(net, pde, SteinDerivatives("monte_carlo", dim=4, samples=16, seed=0))
    x1 = pde.sample(4, torch.Generator().manual_seed(0))
    x2 = pde.sample(4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = model(x1)
        nodes_a = model.stein.nodes.copy()
        assert torch.equal(model(x1), a)
        model(x2)
        assert not (model.stein.nodes == nodes_a).all()
        assert torch.equal(model(x1), a)  # reproducible from the batch
        fixed = SteinPINN(net, pde, SteinDerivatives("monte_carlo", dim=4, samples=16, seed=0), mc_resample=False)
        fixed(x2)
        assert (fixed.stein.nodes == SteinDerivatives("monte_carlo", dim=4, samples=16, seed=0).nodes).all()


def test_smoothed_solution_of_an_affine_network():
    """N = w·x + b: u = Σx + (1 − t)N is quadratic with the t² coefficient −w_t, so u_σ = u − σ² w_t."""
    pde = HJB(20)
    net = PINNMLP([21, 1])
    x = pde.sample(6, torch.Generator().manual_seed(0))
    model = SteinPINN(net, pde, SteinDerivatives("sparse_grid", dim=21, sigma=0.1))
    expected = model.solution(x) - 0.01 * net.layers[0].weight[0, 20].item()
    torch.testing.assert_close(model.smoothed_solution(x), expected, rtol=0, atol=1e-10)


def test_errors():
    pde = HJB(3)
    with pytest.raises(ValueError, match="derivatives"):
        SteinPINN(PINNMLP([4, 1]), pde, None, derivatives="finite")
    with pytest.raises(ValueError, match="needs a SteinDerivatives"):
        SteinPINN(PINNMLP([4, 1]), pde, None)
    with pytest.raises(ValueError, match="4 inputs"):
        SteinPINN(PINNMLP([4, 1]), pde, SteinDerivatives("sparse_grid", dim=5))
    model = SteinPINN(PINNMLP([4, 1], dtype="float32"), pde, SteinDerivatives("sparse_grid", dim=4))
    with pytest.raises(TypeError, match="float64"):
        model(pde.sample(2, torch.Generator().manual_seed(0)))
    with pytest.raises(TypeError, match="float64"):
        model(torch.rand(2, 4))
    with pytest.raises(ValueError, match="unknown parameter"):
        model.forward_stacked({"layers.0.weight": torch.zeros(2, 1, 4)}, torch.rand(2, 4, dtype=torch.float64))


def test_tensor_train_network():
    """A TTMLP (models/ttm.py) inner network: batched residuals equal one set at a time (TT cores perturbed)."""
    ttm = pytest.importorskip("edgezo.models.ttm")
    torch.manual_seed(0)
    pde = HJB(20)
    net = ttm.TTMLP([(21, 8), ([2, 4], [2, 4], 2), (8, 1)], activation="sin").double()
    model = SteinPINN(net, pde, SteinDerivatives("sparse_grid", dim=21))
    x = pde.sample(3, torch.Generator().manual_seed(1))
    params = stacked(model, 2, ("net.layers.1.core0", "net.layers.1.core1", "net.layers.2.bias"))
    with torch.no_grad():
        out = model.forward_stacked(params, x)
        ref = torch.stack([functional_call(model, {k: v[i] for k, v in params.items()}, (x,)) for i in range(2)])
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
