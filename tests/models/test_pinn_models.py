"""PINNMLP (edgezo.models.pinn): batched forwards against the plain forward, float64."""

import pytest
import torch
from edgezo.models import build_model
from edgezo.models.pinn import PINNMLP
from torch.func import functional_call

TOL = dict(rtol=1e-12, atol=1e-12)


def stacked_params(net, q, seed=0, names=None, scale=0.1):
    """q perturbed copies of the named parameters (all when None), shape (q, *shape)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, p in net.named_parameters():
        if names is None or n in names:
            out[n] = p.detach() + scale * torch.randn(q, *p.shape, generator=g, dtype=p.dtype)
    return out


def loop_reference(net, params, x):
    """Copy i evaluated with functional_call (unlisted parameters are the module's own)."""
    q = next(iter(params.values())).shape[0]
    return torch.stack([functional_call(net, {k: v[i] for k, v in params.items()}, (x,)) for i in range(q)])


@pytest.mark.parametrize("sizes", [[5, 8, 1], [21, 16, 16, 1], [3, 4, 4, 4, 2]])
@pytest.mark.parametrize("activation", ["sin", "tanh"])
def test_forward_stacked_matches_loop(sizes, activation):
    net = PINNMLP(sizes, activation)
    x = torch.rand(7, sizes[0], dtype=torch.float64)
    params = stacked_params(net, 4)
    torch.testing.assert_close(net.forward_stacked(params, x), loop_reference(net, params, x), **TOL)


@pytest.mark.parametrize("names", [
    ["layers.2.weight", "layers.2.bias"],  # last layer only (shared hidden features)
    ["layers.1.bias"],  # a bias alone
    ["layers.0.weight"],  # first layer only
    ["layers.1.weight", "layers.2.bias"],
])
def test_partial_params_are_shared(names):
    net = PINNMLP([6, 8, 8, 1])
    x = torch.rand(5, 6, dtype=torch.float64)
    params = stacked_params(net, 3, names=names)
    out = net.forward_stacked(params, x)
    assert out.shape == (3, 5, 1)
    torch.testing.assert_close(out, loop_reference(net, params, x), **TOL)
    # no stacked parameter at all: q copies of the plain forward
    torch.testing.assert_close(net.forward_stacked({}, x, q=2), net(x).expand(2, 5, 1), **TOL)


@pytest.mark.parametrize("names", [None, ["layers.0.weight"], ["layers.0.bias"], ["layers.2.weight"], []])
def test_forward_shifted_equals_forward_on_rows(names):
    """f(x_b + s_j) with the separable first layer equals the network on the B·n rows."""
    net = PINNMLP([4, 8, 8, 1])
    x = torch.rand(6, 4, dtype=torch.float64)
    s = 0.1 * torch.randn(5, 4, dtype=torch.float64)
    rows = (x[:, None, :] + s[None]).reshape(-1, 4)
    params = stacked_params(net, 3, names=names) if names != [] else {}
    out = net.forward_shifted(params, x, s, q=3)
    assert out.shape == (3, 6, 5, 1)
    ref = loop_reference(net, params, rows) if params else net(rows).expand(3, -1, -1)
    torch.testing.assert_close(out.reshape(3, -1, 1), ref, rtol=1e-12, atol=1e-13)


def test_dtype_init_options_and_registry():
    net = build_model({"kind": "pinn-mlp", "sizes": [21, 32, 32, 1]})
    assert isinstance(net, PINNMLP) and all(p.dtype == torch.float64 for p in net.parameters())
    assert net.num_parameters() == 21 * 32 + 32 + 32 * 32 + 32 + 33 == 1793
    zero = PINNMLP([3, 4, 1], output_init="zero")
    assert torch.equal(zero(torch.rand(5, 3, dtype=torch.float64)), torch.zeros(5, 1, dtype=torch.float64))
    torch.manual_seed(0)
    a = PINNMLP([3, 4, 1])
    torch.manual_seed(0)
    b = PINNMLP([3, 4, 1], first_scale=30.0)
    torch.testing.assert_close(b.layers[0].weight, 30.0 * a.layers[0].weight)
    f32 = PINNMLP([3, 4, 1], dtype="float32")
    assert f32.layers[0].weight.dtype == torch.float32
    # autograd flows through the batched forwards (the in-place activation is skipped then)
    x = torch.rand(4, 3, dtype=torch.float64)
    a.forward_shifted({}, x, torch.zeros(2, 3, dtype=torch.float64), q=1).sum().backward()
    assert a.layers[0].weight.grad is not None


@pytest.mark.parametrize("kwargs", [
    dict(sizes=[3]), dict(sizes=[3, 0, 1]), dict(sizes=[3, 4, 1], activation="relu6"),
    dict(sizes=[3, 4, 1], dtype="float16"), dict(sizes=[3, 4, 1], output_init="ones"),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        PINNMLP(**kwargs)


def test_bad_stacked_params():
    net = PINNMLP([3, 4, 1])
    x = torch.rand(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown parameter"):
        net.forward_stacked({"layers.9.weight": torch.zeros(2, 4, 3)}, x)
    with pytest.raises(ValueError, match="shape"):
        net.forward_stacked({"layers.0.weight": torch.zeros(2, 3, 4, dtype=torch.float64)}, x)
    with pytest.raises(ValueError, match="inconsistent"):
        net.forward_stacked({"layers.0.bias": torch.zeros(2, 4, dtype=torch.float64),
                             "layers.1.bias": torch.zeros(3, 1, dtype=torch.float64)}, x)
    with pytest.raises(ValueError, match="q"):
        net.forward_stacked({}, x)


TT = [{"in_modes": [3, 7], "out_modes": [4, 4], "rank": 3}, {"in_modes": [4, 4], "out_modes": [4, 4], "rank": 2}]


@pytest.mark.parametrize("names", [None, ["layers.0.core1"], ["layers.1.core0", "layers.2.bias"], ["layers.2.weight"]])
def test_tt_hidden_layers_match_the_plain_forward(names):
    """TT hidden layers: forward_stacked / forward_shifted (dense W rebuilt per copy) equal functional_call."""
    torch.manual_seed(0)
    net = PINNMLP([21, 16, 16, 1], tt=TT)
    assert [type(layer).__name__ for layer in net.layers] == ["TTLinear", "TTLinear", "Linear"]
    # cores r_{k-1}·m_k·n_k·r_k: (1·4·3·3 + 3·4·7·1) + 16 bias, (1·4·4·2 + 2·4·4·1) + 16 bias, dense 16 + 1
    assert sum(p.numel() for p in net.parameters()) == (36 + 84 + 16) + (32 + 32 + 16) + 17
    x = torch.rand(5, 21, dtype=torch.float64)
    s = 0.1 * torch.randn(4, 21, dtype=torch.float64)
    rows = (x[:, None, :] + s[None]).reshape(-1, 21)
    params = stacked_params(net, 3, names=names)
    ref = loop_reference(net, params, rows)
    torch.testing.assert_close(net.forward_stacked(params, rows), ref, **TOL)
    torch.testing.assert_close(net.forward_shifted(params, x, s).reshape(3, -1, 1), ref, rtol=1e-12, atol=1e-13)


def test_tt_options_are_checked_and_first_scale_scales_the_first_weight():
    with pytest.raises(ValueError, match="give a 21->12 layer but sizes say 21->16"):
        PINNMLP([21, 16, 1], tt=[{"in_modes": [3, 7], "out_modes": [3, 4], "rank": 2}])
    with pytest.raises(ValueError, match="in_modes, out_modes and rank"):
        PINNMLP([21, 16, 1], tt=[{"in_modes": [3, 7], "out_modes": [4, 4]}])
    with pytest.raises(ValueError, match="output layer stays dense"):
        PINNMLP([21, 16], tt=[{"in_modes": [3, 7], "out_modes": [4, 4], "rank": 2}])
    torch.manual_seed(3)
    a = PINNMLP([21, 16, 1], tt=TT[:1])
    torch.manual_seed(3)
    b = PINNMLP([21, 16, 1], tt=TT[:1], first_scale=0.1)
    torch.testing.assert_close(b.layers[0].dense_weight(), 0.1 * a.layers[0].dense_weight(), **TOL)
