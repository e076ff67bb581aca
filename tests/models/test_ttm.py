"""Tests for edgezo.models.ttm (tensor-train-matrix layers)."""

from __future__ import annotations

import fnmatch
import itertools
import math

import numpy as np
import pytest
import torch
from edgezo.models.ttm import (
    TTMLP,
    TTLinear,
    factorize,
    max_tt_ranks,
    parameter_report,
    tt_ranks,
    tt_svd,
)
from torch import nn
from torch.func import functional_call

F64 = torch.float64

# (in_modes, out_modes, ranks): MNIST layers, a digits-size layer, single core,
# explicit rank sequences, a mode of 1, five cores
SHAPES = [
    ([4, 7, 7, 4], [4, 4, 4, 4], 4),
    ([4, 4, 4, 4], [1, 5, 2, 1], 4),
    ([4, 4, 4], [2, 4, 4], 3),
    ([8, 8], [4, 8], 5),
    ([8], [4], 3),
    ([2, 3], [3, 2], [5]),
    ([2, 3, 2, 1, 3], [1, 2, 3, 2, 2], [1, 2, 3, 3, 2, 1]),
]
IDS = ["784-256", "256-10", "64-32-K3", "64-32-K2", "K1", "seq-ranks", "K5"]


def _tensorly_dense(layer: TTLinear) -> torch.Tensor:
    """Independent reference: tensorly's tt_matrix_to_tensor on the numpy backend."""
    import tensorly as tl
    from tensorly.tt_matrix import tt_matrix_to_tensor

    with tl.backend_context("numpy"):
        w = tt_matrix_to_tensor([c.detach().cpu().numpy() for c in layer.cores])
    return torch.from_numpy(np.ascontiguousarray(w)).reshape(layer.out_features, layer.in_features)


def _layer(in_modes, out_modes, ranks, seed=0, **kw) -> TTLinear:
    torch.manual_seed(seed)
    layer = TTLinear(in_modes, out_modes, ranks, dtype=F64, **kw)
    with torch.no_grad():  # a non-zero bias so that bias handling is exercised
        layer.bias.normal_()
    return layer


# --------------------------------------------------------------------------- structure


def test_parameter_names_and_shapes():
    layer = TTLinear([4, 7, 7, 4], [4, 4, 4, 4], 4)
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["core0", "core1", "core2", "core3", "bias"]
    assert [tuple(c.shape) for c in layer.cores] == [(1, 4, 4, 4), (4, 4, 7, 4), (4, 4, 7, 4), (4, 4, 4, 1)]
    assert layer.ranks == (1, 4, 4, 4, 1)
    assert (layer.in_features, layer.out_features) == (784, 256)
    assert TTLinear([4, 4], [2, 2], 2, bias=False).bias is None


def test_int_rank_is_capped_at_maximal_tt_ranks():
    assert max_tt_ranks([2, 4, 4], [4, 4, 4]) == (1, 8, 16, 1)
    layer = TTLinear([4, 4, 4], [2, 4, 4], 100)
    assert layer.ranks == (1, 8, 16, 1)
    assert tt_ranks(3, [2, 4, 4], [4, 4, 4]) == (1, 3, 3, 1)
    assert tt_ranks([3, 5], [2, 4, 4], [4, 4, 4]) == (1, 3, 5, 1)
    assert tt_ranks([1, 3, 5, 1], [2, 4, 4], [4, 4, 4]) == (1, 3, 5, 1)


def test_mnist_parameter_counts():
    """arXiv:2308.09858 MNIST net: 1,504 core parameters (biases excluded) vs 203,264 dense weights."""
    l1 = TTLinear([4, 7, 7, 4], [4, 4, 4, 4], 4)
    l2 = TTLinear([4, 4, 4, 4], [1, 5, 2, 1], 4)
    r1, r2 = l1.compression_report(), l2.compression_report()
    assert (r1["tt_params"], r2["tt_params"]) == (1024, 480)
    assert r1["tt_params"] + r2["tt_params"] == 1504
    assert r1["dense_params"] + r2["dense_params"] == 203_264
    assert r1["params"] + r2["params"] == 1504 + 266 == 1770
    assert r1["ratio"] == pytest.approx(196.0)

    net = TTMLP([([4, 7, 7, 4], [4, 4, 4, 4], 4), ([4, 4, 4, 4], [1, 5, 2, 1], 4)])
    rep = parameter_report(net)
    assert rep["params"] == 1770 == sum(p.numel() for p in net.parameters())
    assert rep["tt_params"] == 1504
    assert rep["tt_dense_params"] == 203_264
    assert rep["dense_equivalent_params"] == 203_264 + 266
    assert rep["weight_ratio"] == pytest.approx(203_264 / 1504)  # ~135x


def test_core_name_patterns_select_one_core_per_layer():
    net = TTMLP([([4, 4], [4, 4], 2), ([4, 4], [2, 5], 2)])
    names = [n for n, _ in net.named_parameters()]
    assert fnmatch.filter(names, "*.core1") == ["layers.0.core1", "layers.1.core1"]
    assert "layers.0.bias" in names


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("in_modes,out_modes,ranks", SHAPES, ids=IDS)
def test_dense_weight_matches_tensorly(in_modes, out_modes, ranks):
    layer = _layer(in_modes, out_modes, ranks)
    w = layer.dense_weight()
    assert w.shape == (layer.out_features, layer.in_features)
    torch.testing.assert_close(w.detach(), _tensorly_dense(layer), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["contract", "dense", "auto"])
@pytest.mark.parametrize("in_modes,out_modes,ranks", SHAPES, ids=IDS)
def test_forward_equals_reconstructed_dense_layer(in_modes, out_modes, ranks, mode):
    """float64, absolute tolerance 1e-10, for inputs with extra leading dims too."""
    layer = _layer(in_modes, out_modes, ranks, mode=mode)
    w = _tensorly_dense(layer)
    torch.manual_seed(1)
    for shape in [(1,), (7,), (2, 3)]:
        x = torch.randn(*shape, layer.in_features, dtype=F64)
        ref = x @ w.T + layer.bias.detach()
        y = layer(x)
        assert y.shape == (*shape, layer.out_features)
        torch.testing.assert_close(y.detach(), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("in_modes,out_modes,ranks", SHAPES[:4], ids=IDS[:4])
def test_contract_and_dense_paths_agree_including_gradients(in_modes, out_modes, ranks):
    torch.manual_seed(0)
    layer = TTLinear(in_modes, out_modes, ranks)  # float32
    x = torch.randn(16, layer.in_features)
    outs, grads = [], []
    for mode in ["contract", "dense"]:
        layer.mode = mode
        layer.zero_grad()
        y = layer(x)
        y.square().sum().backward()
        outs.append(y.detach())
        grads.append([p.grad.clone() for p in layer.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1, rtol=1e-4, atol=1e-5)


def test_auto_rule_choices():
    """The documented rule: contract for small batches of large layers, dense for large batches."""
    l1 = TTLinear([4, 7, 7, 4], [4, 4, 4, 4], 4)
    assert [l1.choose_path(b) for b in (1, 4, 16, 64, 2000)] == ["contract"] * 3 + ["dense"] * 2
    l2 = TTLinear([4, 4, 4, 4], [1, 5, 2, 1], 4)
    assert l2.choose_path(1) == "contract" and l2.choose_path(64) == "dense"
    l2.mode = "contract"
    assert l2.choose_path(2000) == "contract"


@pytest.mark.parametrize("path", ["contract", "dense"])
@pytest.mark.parametrize("in_modes,out_modes,ranks", SHAPES, ids=IDS)
def test_forward_stacked_equals_loop(in_modes, out_modes, ranks, path):
    """Every pattern of stacked / shared / own cores, shared or stacked x, three bias forms."""
    layer = _layer(in_modes, out_modes, ranks)
    k, q, b = layer.num_cores, 3, 5
    gen = torch.Generator().manual_seed(2)
    stacked = [c.detach() + 0.1 * torch.randn(q, *c.shape, generator=gen, dtype=F64) for c in layer.cores]
    shared = [c.detach() + 0.1 * torch.randn(c.shape, generator=gen, dtype=F64) for c in layer.cores]
    bias_q = torch.randn(q, layer.out_features, generator=gen, dtype=F64)
    bias_1 = torch.randn(layer.out_features, generator=gen, dtype=F64)
    x_shared = torch.randn(b, layer.in_features, generator=gen, dtype=F64)
    x_stacked = torch.randn(q, b, layer.in_features, generator=gen, dtype=F64)
    ref_layer = TTLinear(in_modes, out_modes, ranks, bias=False, dtype=F64)

    def weights(choice):  # the q dense weights of the loop reference
        ws = []
        for j in range(q):
            with torch.no_grad():
                for i, (p, c) in enumerate(zip(ref_layer.cores, choice)):
                    p.copy_({0: layer.cores[i], 1: shared[i], 2: stacked[i][j]}[c])
                ws.append(ref_layer.dense_weight().clone())
        return ws

    def loop(ws, bias, x):
        outs = []
        for j, w in enumerate(ws):
            bj = layer.bias if bias is None else bias if bias.ndim == 1 else bias[j]
            outs.append(torch.nn.functional.linear(x if x.ndim == 2 else x[j], w, bj))
        return torch.stack(outs).detach()

    choices = list(itertools.product([0, 1, 2], repeat=k))
    if len(choices) > 27:  # K >= 4: a fixed subset, always with all-own and all-stacked
        choices = choices[:: 7 if k == 4 else 17] + [(2,) * k]
    for choice in choices:
        ws = weights(choice)
        cores = [{0: None, 1: shared[i], 2: stacked[i]}[c] for i, c in enumerate(choice)]
        for bias, x in [(None, x_shared), (bias_q, x_shared), (bias_1, x_stacked), (bias_q, x_stacked)]:
            if 2 not in choice and bias is None and x.ndim == 2:
                y = layer.forward_stacked(cores, bias, x, q=q, path=path)
            else:
                y = layer.forward_stacked(cores, bias, x, path=path)
            assert y.shape == (q, b, layer.out_features)
            torch.testing.assert_close(y.detach(), loop(ws, bias, x), rtol=0, atol=1e-10)


def test_forward_stacked_auto_and_default_cores():
    layer = _layer([4, 4, 4], [2, 4, 4], 3)
    x = torch.randn(4, 64, dtype=F64)
    y = layer.forward_stacked(None, None, x, q=2)
    torch.testing.assert_close(y, layer(x).unsqueeze(0).expand(2, 4, 32))


# --------------------------------------------------------------------------- TT-SVD


def test_from_linear_error_falls_with_rank_and_is_exact_at_full_rank():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32, dtype=F64)
    in_modes, out_modes = [4, 4, 4], [2, 4, 4]
    full = max(max_tt_ranks(out_modes, in_modes))
    errs = []
    for r in range(1, full + 1):
        tt = TTLinear.from_linear(lin, in_modes, out_modes, r)
        assert tt.cores[0].dtype == F64
        errs.append(((tt.dense_weight() - lin.weight).norm() / lin.weight.norm()).item())
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:])), errs
    assert errs[0] > 0.5 and errs[-2] > 1e-3  # a random matrix is not low-rank
    assert errs[-1] < 1e-8
    tt = TTLinear.from_linear(lin, in_modes, out_modes, full)
    x = torch.randn(9, 64, dtype=F64)
    torch.testing.assert_close(tt(x), lin(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(tt.bias, lin.bias)


def test_tt_svd_matches_tensorly_error():
    """Same truncation error as tensorly's tensor_train_matrix (both TT-SVD)."""
    import tensorly as tl
    from tensorly.decomposition import tensor_train_matrix
    from tensorly.tt_matrix import tt_matrix_to_tensor

    torch.manual_seed(3)
    w = torch.randn(32, 64, dtype=F64)
    in_modes, out_modes = [4, 4, 4], [2, 4, 4]
    for r in [2, 4, 6]:
        cores = tt_svd(w, out_modes, in_modes, r)
        mine = TTLinear(in_modes, out_modes, r, dtype=F64)
        with torch.no_grad():
            for p, c in zip(mine.cores, cores):
                p.copy_(c)
        with tl.backend_context("numpy"):
            ttm = tensor_train_matrix(w.numpy().reshape(out_modes + in_modes), tt_ranks(r, out_modes, in_modes))
            ref = tt_matrix_to_tensor(ttm).reshape(32, 64)
        e_mine = ((mine.dense_weight() - w).norm() / w.norm()).item()
        e_ref = float(np.linalg.norm(ref - w.numpy()) / np.linalg.norm(w.numpy()))
        assert e_mine == pytest.approx(e_ref, rel=1e-8)


def test_tt_svd_zero_pads_non_sequential_ranks():
    torch.manual_seed(0)
    w = torch.randn(16, 16, dtype=F64)
    in_modes = out_modes = [2, 2, 2, 2]
    cores = tt_svd(w, out_modes, in_modes, [1, 1, 16, 4, 1])  # r_2 = 16 > r_1 * 4
    assert [tuple(c.shape) for c in cores] == [(1, 2, 2, 1), (1, 2, 2, 16), (16, 2, 2, 4), (4, 2, 2, 1)]
    assert torch.all(cores[1][..., 4:] == 0)


# --------------------------------------------------------------------------- init


def test_init_std_formula_is_exact():
    for in_modes, out_modes, ranks in SHAPES:
        layer = TTLinear(in_modes, out_modes, ranks)
        stds = layer.init_std()
        var = math.prod(layer.ranks[1:-1]) * math.prod(s * s for s in stds)
        assert var == pytest.approx(1.0 / (3 * layer.in_features), rel=1e-12)


def test_init_variance_matches_dense_linear():
    """Stochastic, fixed seeds. The mean of W_ij^2 over a layer, averaged over R
    independent initializations, estimates Var(W_ij); target 1/(3N) (nn.Linear).

    Entries of one layer share cores, so per-layer means are noisy (measured std of
    the per-layer ratio: ~0.28 for the 784-256 layer, ~0.34 for 64-32); with R = 100
    and 2000 draws the standard errors are ~0.028 and ~0.0075, and the tolerances
    (0.15 and 0.05) are > 5 standard errors. The output check Var(y_i | x) =
    ||x||^2 / (3N) has a similar standard error and twice the tolerance.
    """
    cases = [(([4, 7, 7, 4], [4, 4, 4, 4], 4), 100, 0.15), (([4, 4, 4], [2, 4, 4], 4), 2000, 0.05)]
    for (in_modes, out_modes, ranks), reps, tol in cases:
        torch.manual_seed(1234)
        layer = TTLinear(in_modes, out_modes, ranks, bias=False, dtype=F64)
        target = 1.0 / (3 * layer.in_features)
        x = torch.randn(layer.in_features, dtype=F64)
        w_ratio, y_ratio = [], []
        with torch.no_grad():
            for _ in range(reps):
                layer.reset_parameters()
                w = layer.dense_weight()
                w_ratio.append(w.square().mean().item() / target)
                y_ratio.append(layer(x).square().mean().item() / (target * x.square().sum().item()))
        assert abs(np.mean(w_ratio) - 1.0) < tol, np.mean(w_ratio)
        assert abs(np.mean(y_ratio) - 1.0) < 2 * tol, np.mean(y_ratio)
        assert np.std(w_ratio) / math.sqrt(reps) < tol / 5  # the stated tolerance is > 5 s.e.


def test_bias_init_matches_linear_bounds():
    torch.manual_seed(0)
    layer = TTLinear([4, 4], [4, 4], 2)
    bound = 1 / math.sqrt(16)
    assert layer.bias.abs().max() <= bound


def test_dtype_and_device_kwargs():
    layer = TTLinear([2, 2], [2, 2], 2, dtype=F64, device="cpu")
    assert all(p.dtype == F64 for p in layer.parameters())


# --------------------------------------------------------------------------- factorize, TTMLP


def test_factorize():
    assert factorize(784, 4) == [7, 7, 4, 4]
    assert factorize(256, 4) == [4, 4, 4, 4]
    assert factorize(10, 4) == [5, 2, 1, 1]
    assert factorize(13, 3) == [13, 1, 1]
    assert factorize(1, 2) == [1, 1]
    for n in range(1, 200):
        for k in range(1, 5):
            f = factorize(n, k)
            assert len(f) == k and math.prod(f) == n
    # balanced: for 2 factors the greedy result is the best split of 64, 60, 36
    assert factorize(64, 2) == [8, 8] and factorize(60, 2) == [10, 6] and factorize(36, 2) == [6, 6]


def _mnist_net(**kw):
    torch.manual_seed(0)
    return TTMLP(
        [([4, 7, 7, 4], [4, 4, 4, 4], 4), ([4, 4, 4, 4], [1, 5, 2, 1], 4)], dtype=F64, **kw
    )


def test_ttmlp_forward_and_layers():
    net = _mnist_net()
    assert isinstance(net.layers, nn.ModuleList) and len(net.layers) == 2
    x = torch.randn(3, 1, 28, 28, dtype=F64)
    h = torch.relu(net.layers[0](x.reshape(3, -1)))
    torch.testing.assert_close(net(x), net.layers[1](h))

    mixed = TTMLP([([4, 4, 4], [2, 4, 4], 3), (32, 16)], activation="tanh", final_dense=10)
    assert [type(m).__name__ for m in mixed.layers] == ["TTLinear", "Linear", "Linear"]
    assert mixed(torch.randn(5, 64)).shape == (5, 10)
    assert "layers.1.weight" in dict(mixed.named_parameters())

    auto = TTMLP.from_sizes([784, 256, 10], rank=4)
    assert isinstance(auto.layers[0], TTLinear) and isinstance(auto.layers[1], nn.Linear)
    assert auto.layers[0].in_modes == (7, 7, 4, 4)


def test_ttmlp_forward_stacked_equals_loop():
    torch.manual_seed(0)
    net = TTMLP([([4, 4, 4], [2, 4, 4], 3), (32, 16), ([4, 4], [2, 5], 2)], activation="tanh", dtype=F64)
    own = dict(net.named_parameters())
    q, b = 4, 6
    x = torch.randn(b, 64, dtype=F64)
    xq = torch.randn(q, b, 64, dtype=F64)

    def perturb(names):
        return {n: own[n].detach() + 0.1 * torch.randn(q, *own[n].shape, dtype=F64) for n in names}

    subsets = [
        ["layers.0.core1"],
        ["layers.2.core0", "layers.2.bias"],  # late layer: earlier layers run once, unstacked
        ["layers.1.weight"],
        ["layers.1.bias", "layers.0.core2"],
        list(own),
    ]
    for names in subsets:
        params = perturb(names)
        for inp in (x, xq):
            y = net.forward_stacked(params, inp)
            ref = torch.stack(
                [
                    functional_call(net, {n: t[j] for n, t in params.items()}, (inp if inp.ndim == 2 else inp[j],))
                    for j in range(q)
                ]
            )
            assert y.shape == (q, b, 10)
            torch.testing.assert_close(y, ref, rtol=0, atol=1e-10)
    # nothing perturbed: broadcast of the plain forward
    torch.testing.assert_close(net.forward_stacked({}, x, q=3), net(x).expand(3, b, 10))


def test_ttmlp_forward_stacked_flattens_images():
    net = _mnist_net()
    params = {"layers.1.core1": net.layers[1].core1.detach().expand(2, -1, -1, -1, -1) * 1.0}
    x = torch.randn(5, 1, 28, 28, dtype=F64)
    torch.testing.assert_close(net.forward_stacked(params, x), net(x).expand(2, 5, 10))


# --------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_value_errors():
    with pytest.raises(ValueError, match="same length"):
        TTLinear([4, 4], [2, 2, 2], 2)
    with pytest.raises(ValueError, match="positive"):
        TTLinear([4, 4], [4, 4], 0)
    with pytest.raises(ValueError, match="positive"):
        TTLinear([4, 4], [4, 4], -3)
    with pytest.raises(ValueError, match="positive"):
        TTLinear([4, 4], [4, 4], [0])
    with pytest.raises(ValueError, match="positive"):
        TTLinear([4, 0], [4, 4], 2)
    with pytest.raises(ValueError, match="inner ranks"):
        TTLinear([4, 4, 4], [4, 4, 4], [2, 2, 2])
    with pytest.raises(ValueError, match="boundary ranks"):
        TTLinear([4, 4], [4, 4], [2, 2, 1])
    with pytest.raises(ValueError, match="maximal TT rank"):
        TTLinear([2, 2], [2, 2], [5])
    with pytest.raises(ValueError, match="mode must be one of"):
        TTLinear([2, 2], [2, 2], 2, mode="fast")

    layer = TTLinear([4, 4], [4, 4], 2)
    with pytest.raises(ValueError, match=r"expects input \(\.\.\., 16\)"):
        layer(torch.randn(3, 15))
    with pytest.raises(ValueError, match="expects 2 cores"):
        layer.forward_stacked([None], None, torch.randn(3, 16), q=2)
    with pytest.raises(ValueError, match="core1 must have shape"):
        layer.forward_stacked([None, torch.randn(2, 3, 3, 3, 3)], None, torch.randn(3, 16))
    with pytest.raises(ValueError, match="inconsistent"):
        layer.forward_stacked([torch.randn(2, *layer.core0.shape), None], torch.randn(3, 16), torch.randn(3, 16))
    with pytest.raises(ValueError, match="nothing is stacked"):
        layer.forward_stacked(None, None, torch.randn(3, 16))
    with pytest.raises(ValueError, match=r"x must have shape"):
        layer.forward_stacked(None, None, torch.randn(3, 17), q=2)

    lin = nn.Linear(64, 32)
    with pytest.raises(ValueError, match="modes do not match"):
        TTLinear.from_linear(lin, [4, 4, 2], [2, 4, 4], 2)
    with pytest.raises(ValueError, match="matrix must be 32x64"):
        tt_svd(torch.randn(32, 60), [2, 4, 4], [4, 4, 4], 2)

    with pytest.raises(ValueError, match="layer 1 expects 16 inputs but layer 0 gives 32"):
        TTMLP([([4, 4, 4], [2, 4, 4], 2), (16, 10)])
    with pytest.raises(ValueError, match="unknown activation"):
        TTMLP([(4, 4)], activation="swish2")
    net = TTMLP([([4, 4, 4], [2, 4, 4], 2), (32, 10)])
    with pytest.raises(ValueError, match="unknown parameter"):
        net.forward_stacked({"layers.0.core9": torch.randn(2, 1)}, torch.randn(3, 64))
    with pytest.raises(ValueError, match=r"must have shape \(q, 10, 32\)"):
        net.forward_stacked({"layers.1.weight": torch.randn(10, 32)}, torch.randn(3, 64))

    with pytest.raises(ValueError, match="n must be a positive int"):
        factorize(0, 2)
    with pytest.raises(ValueError, match="k must be a positive int"):
        factorize(12, 0)
