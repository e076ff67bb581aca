"""The RTL device's Python model (targets/rtl/reference.py) is the fpga-int8 datapath (numerics) on its weights."""

from __future__ import annotations

import math

import numpy as np
import torch
from edgezo.models.mlp import MLP
from edgezo.targets.numerics import SimulatedForward
from edgezo.targets.rtl.reference import RtlReference, delta_of, from_master, layer_exponent, predictor_for, to_master


def test_layer_exponent_is_the_smallest_power_of_two_above_four_init_bounds():
    for n in list(range(1, 300)) + [784, 1024, 4095, 4096]:
        e = layer_exponent(n)
        r = 2.0 ** (15 - e)  # the int16 range ±r
        assert r >= 4 / math.sqrt(n) > r / 2 or (r >= 4 / math.sqrt(n) and e == 13)


def test_masters_round_trip_exactly():
    rng = np.random.default_rng(0)
    t = rng.integers(-(2**15), 2**15, 1000)
    for e in (13, 16, 20):
        w = from_master(t, e)
        assert w.dtype == np.float32 and np.array_equal(to_master(w, e), t)
    assert delta_of(0.01, 16) == round(float(np.float32(0.01)) * 2**16)
    assert delta_of(1e12, 16) == 2**31 - 1


def test_reference_equals_the_fpga_int8_profile_on_grid_weights():
    """Weights k · 2^(8-e) with max |k| = 127 per layer: the profile's per-tensor scale is exactly 2^(8-e)."""
    torch.manual_seed(0)
    model = MLP([64, 16, 10])
    ref = RtlReference([64, 16, 10])
    with torch.no_grad():
        for layer, e in zip(model.layers, ref.exponents):
            k = torch.randint(-127, 128, layer.weight.shape)
            k.view(-1)[0] = 127
            layer.weight.copy_(k.to(torch.float64) * 2.0 ** (8 - e))
            layer.bias.copy_(torch.randint(-4000, 4000, layer.bias.shape).to(torch.float64) * 2.0 ** -e)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    x = torch.randint(0, 17, (50, 64)).float() / 16
    want = SimulatedForward(model, "fpga-int8")(x)
    got = predictor_for(model)(x, flat)
    ref.load_float(flat.numpy())
    assert torch.equal(got, want) and torch.equal(ref.logits(x), want)


def test_perturb_and_update_saturate_to_int16():
    ref = RtlReference([4, 2], bias=False)
    ref.theta = np.array([32000, -32000, 5, -5, 0, 1, 2, 3])
    z = np.array([1, -1, 1, -1, 1, 1, 1, 1])
    d = delta_of(0.05, ref.exponents[0])  # 0.05 · 2^14 = 819
    assert d == 819
    ref.update(z, 0.05)
    assert ref.theta.tolist() == [32767, -32768, 824, -824, 819, 820, 821, 822]
