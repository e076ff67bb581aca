"""Tests for the periodic 1-D CNN corrector (deterministic, float64, well under a second each)."""

import numpy as np
import pytest
import torch
from edgezo.models import build_model
from edgezo.models.corrector import PeriodicCorrector

from edgezo.params import ParamSpace


def _randomized(model: PeriodicCorrector, seed: int = 0) -> PeriodicCorrector:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def test_zero_init_is_identity_and_parameter_count():
    model = PeriodicCorrector((8,), 5).double()
    assert ParamSpace(model).dim == 1 * 8 * 5 + 8 + 8 * 1 * 5  # the flux layer has no bias
    u = torch.randn(4, 32, dtype=torch.float64)
    assert torch.equal(model(u), u)
    assert ParamSpace(PeriodicCorrector((8,), 5, conservative=False)).dim == 89


def test_single_stencil_matches_explicit_flux_formula():
    """channels=() is one linear stencil: F_j = Σ_k w_k u_{j+k-p}, δ_j = F_{j-1} - F_j (periodic)."""
    model = _randomized(PeriodicCorrector((), 3).double(), seed=1)
    w = model.convs[0].weight.detach().numpy()[0, 0]
    u = np.random.default_rng(0).standard_normal((2, 16))
    flux = sum(w[k] * np.roll(u, -(k - 1), axis=-1) for k in range(3))
    expected = u + np.roll(flux, 1, axis=-1) - flux
    out = model(torch.from_numpy(u)).detach().numpy()
    assert np.abs(out - expected).max() < 1e-14


@pytest.mark.parametrize("conservative", [True, False])
def test_conservation(conservative):
    model = _randomized(PeriodicCorrector((6, 4), 5, conservative=conservative).double())
    u = torch.randn(5, 32, dtype=torch.float64)
    drift = (model(u).sum(-1) - u.sum(-1)).abs().max()
    if conservative:
        assert drift < 1e-12
    else:
        assert drift > 1e-3


def test_translation_equivariance_on_the_periodic_grid():
    model = _randomized(PeriodicCorrector((8,), 5, activation="gelu").double(), seed=2)
    u = torch.randn(3, 32, dtype=torch.float64)
    for shift in (1, 7, 31):
        assert (model(torch.roll(u, shift, -1)) - torch.roll(model(u), shift, -1)).abs().max() < 1e-13


@pytest.mark.parametrize("shared_state", [True, False])
def test_forward_stacked_matches_forward_per_parameter_set(shared_state):
    model = _randomized(PeriodicCorrector((8, 4), 5).double(), seed=3)
    space = ParamSpace(model)
    q = 4
    block = space.get_flat().unsqueeze(0) + 0.1 * torch.randn(q, space.dim, dtype=torch.float64)
    params = space.layout.split(block)
    u = torch.randn(6, 32, dtype=torch.float64) if shared_state else torch.randn(q, 6, 32, dtype=torch.float64)
    out = model.forward_stacked(params, u)
    assert out.shape == (q, 6, 32)
    for i in range(q):
        row = {k: v[i] for k, v in params.items()}
        ref = torch.func.functional_call(model, row, (u if shared_state else u[i],))
        assert (out[i] - ref).abs().max() < 1e-13


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="odd"):
        PeriodicCorrector((8,), 4)
    with pytest.raises(ValueError, match="activation"):
        PeriodicCorrector((8,), 5, activation="swish")
    with pytest.raises(ValueError, match="positive"):
        PeriodicCorrector((0,), 5)
    model = PeriodicCorrector((8,), 5)
    with pytest.raises(ValueError, match=r"\(B, n\)"):
        model(torch.zeros(32))
    with pytest.raises(ValueError, match="wider"):
        PeriodicCorrector((), 9)(torch.zeros(1, 3))
    params = ParamSpace(model).layout.split(torch.zeros(2, ParamSpace(model).dim))
    with pytest.raises(ValueError, match="q=2"):
        model.forward_stacked(params, torch.zeros(3, 4, 32))


def test_registered_in_the_model_zoo():
    model = build_model({"kind": "corrector1d", "channels": [4], "kernel_size": 3})
    assert isinstance(model, PeriodicCorrector) and model.channels == [4] and model.kernel_size == 3
    assert "conservative=True" in repr(model)
