"""Target profiles (loading, validation) and the on-device memory model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from edgezo.targets.memory import BudgetError, MemoryBreakdown, check_fits, memory_breakdown
from edgezo.targets.profile import (
    FORMATS,
    PROFILES_DIR,
    TargetProfile,
    list_profiles,
    load_profile,
    profile_names,
)
from torch import nn

SHIPPED = {"host-cpu", "cortex-m4-256k", "cortex-m7-512k", "fpga-int8", "photonic-noisy"}

GOOD_TOML = """
name = "tiny"
description = "a test profile"
sram_bytes = 4096
flash_bytes = 8192
max_frame_bytes = 64

[format]
weight = "fp32"
activation = "fp32"
accumulator = "fp32"
"""


def mlp(*sizes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------


def test_all_five_shipped_profiles_present_and_load():
    assert SHIPPED <= set(profile_names())
    profiles = {p.name: p for p in list_profiles()}
    assert SHIPPED <= set(profiles)
    for name in SHIPPED:
        p = load_profile(name)
        assert p == profiles[name]
        assert p.source is not None and Path(p.source).parent == PROFILES_DIR
        assert p.sram_bytes > 0 and p.flash_bytes > 0 and p.max_frame_bytes > 0
        assert p.description


def test_shipped_profile_contents():
    m4 = load_profile("cortex-m4-256k")
    assert (m4.sram_bytes, m4.flash_bytes) == (256 * 1024, 1024 * 1024)
    assert m4.weight_format == m4.activation_format == "fp32"
    assert m4.max_frame_bytes == 256
    assert m4.triple == "thumbv7em-none-eabihf" and m4.cpu == "cortex-m4"
    assert m4.tvm_target() == {"kind": "llvm", "mtriple": "thumbv7em-none-eabihf", "mcpu": "cortex-m4"}

    m7 = load_profile("cortex-m7-512k")
    assert (m7.sram_bytes, m7.flash_bytes) == (512 * 1024, 2 * 1024 * 1024)
    assert m7.cpu == "cortex-m7"

    fpga = load_profile("fpga-int8")
    assert fpga.is_integer and fpga.weight_bytes == 1
    assert (fpga.weight_format, fpga.accumulator_format) == ("int8", "int32")
    assert fpga.activation_frac_bits == 4

    ph = load_profile("photonic-noisy")
    assert ph.has_noise and ph.noise == "multiplicative"
    assert ph.noise_relative_std == pytest.approx(0.02)
    assert ph.weight_format == "fp32" and not ph.is_integer

    host = load_profile("host-cpu")
    assert not host.has_noise and host.tvm_target() is None


def test_load_by_path_str_and_pathlike(tmp_path):
    p = write(tmp_path, GOOD_TOML)
    a, b = load_profile(str(p)), load_profile(p)
    assert a == b and a.name == "tiny" and a.source == str(p)
    assert load_profile(a) is a
    assert a.noise == "none" and a.triple is None


def test_to_dict_round_trip():
    for p in list_profiles():
        assert TargetProfile.from_dict(p.to_dict()) == p


def test_profile_is_frozen():
    p = load_profile("host-cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.sram_bytes = 1  # type: ignore[misc]


def test_unknown_name_lists_known_profiles():
    with pytest.raises(ValueError) as ei:
        load_profile("cortex-m9")
    msg = str(ei.value)
    assert "cortex-m9" in msg
    for name in SHIPPED:
        assert name in msg


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_profile(tmp_path / "nope.toml")


def test_bad_toml_names_file(tmp_path):
    p = write(tmp_path, "name = \nsram_bytes = 3\n", "broken.toml")
    with pytest.raises(ValueError) as ei:
        load_profile(p)
    assert "broken.toml" in str(ei.value) and "invalid TOML" in str(ei.value)


def test_missing_field_names_file_and_field(tmp_path):
    p = write(tmp_path, GOOD_TOML.replace("sram_bytes = 4096\n", ""), "nosram.toml")
    with pytest.raises(ValueError) as ei:
        load_profile(p)
    assert "nosram.toml" in str(ei.value) and "sram_bytes" in str(ei.value)

    p = write(tmp_path, GOOD_TOML.replace('accumulator = "fp32"\n', ""), "noacc.toml")
    with pytest.raises(ValueError, match=r"noacc\.toml.*format\.accumulator"):
        load_profile(p)


@pytest.mark.parametrize(
    "old,new,field",
    [
        ("sram_bytes = 4096", "sram_bytes = -1", "sram_bytes"),
        ("sram_bytes = 4096", 'sram_bytes = "4k"', "sram_bytes"),
        ("max_frame_bytes = 64", "max_frame_bytes = 0", "max_frame_bytes"),
        ('weight = "fp32"', 'weight = "int7"', "format.weight"),
        ('weight = "fp32"', 'weight = "int8"', "format.weight"),  # int weights with float activations
        ("sram_bytes = 4096", "sram_bytes = 4096\nsram_kb = 4", "sram_kb"),  # typo'd key
        ('accumulator = "fp32"', 'accumulator = "fp32"\nfrac = 3', "format.frac"),
    ],
)
def test_bad_field_named(tmp_path, old, new, field):
    p = write(tmp_path, GOOD_TOML.replace(old, new), "bad.toml")
    with pytest.raises(ValueError) as ei:
        load_profile(p)
    assert "bad.toml" in str(ei.value) and f"'{field}'" in str(ei.value)


def test_integer_and_noise_validation(tmp_path):
    int_fmt = GOOD_TOML.replace('weight = "fp32"', 'weight = "int8"').replace(
        'activation = "fp32"', 'activation = "int8"'
    )
    with pytest.raises(ValueError, match="activation_frac_bits"):  # fixed point needs frac bits
        load_profile(write(tmp_path, int_fmt.replace('accumulator = "fp32"', 'accumulator = "int32"')))
    int_fmt += "activation_frac_bits = 5\n"
    with pytest.raises(ValueError, match="format.accumulator"):  # int8 x int8 into fp32
        load_profile(write(tmp_path, int_fmt))
    with pytest.raises(ValueError, match="format.accumulator"):  # int8 x int8 into int8
        load_profile(write(tmp_path, int_fmt.replace('accumulator = "fp32"', 'accumulator = "int8"')))
    int_fmt = int_fmt.replace('accumulator = "fp32"', 'accumulator = "int32"')
    ok = load_profile(write(tmp_path, int_fmt))
    assert ok.is_integer and ok.activation_frac_bits == 5
    with pytest.raises(ValueError, match="activation_frac_bits"):
        load_profile(write(tmp_path, int_fmt.replace("frac_bits = 5", "frac_bits = 8")))
    with pytest.raises(ValueError, match="noise.kind"):  # analog noise on an integer datapath
        load_profile(write(tmp_path, int_fmt + '\n[noise]\nkind = "multiplicative"\nrelative_std = 0.1\n'))

    noisy = GOOD_TOML + '\n[noise]\nkind = "multiplicative"\n'
    with pytest.raises(ValueError, match="noise.relative_std"):
        load_profile(write(tmp_path, noisy))
    with pytest.raises(ValueError, match="noise.kind"):
        load_profile(write(tmp_path, GOOD_TOML + '\n[noise]\nkind = "thermal"\n'))
    p = load_profile(write(tmp_path, noisy + "relative_std = 0.05\n"))
    assert p.noise_relative_std == 0.05 and p.noise_granularity == "mac"


def test_direct_construction_validates():
    with pytest.raises(ValueError, match="format.weight"):
        TargetProfile(name="x", sram_bytes=1, flash_bytes=1, max_frame_bytes=1, weight_format="fp8")
    base = load_profile("cortex-m4-256k")
    with pytest.raises(ValueError, match="sram_bytes"):
        dataclasses.replace(base, sram_bytes=0)
    assert set(FORMATS) >= {"fp32", "int8", "int32"}


# --------------------------------------------------------------------------
# memory model
# --------------------------------------------------------------------------


def test_memory_breakdown_mlp_64_32_10():
    model = mlp(64, 32, 10)
    B, q = 32, 10
    bd = memory_breakdown(model, "cortex-m4-256k", input_shape=(64,), batch_size=B, queries_per_step=q)
    assert isinstance(bd, MemoryBreakdown)
    assert bd.params == 2410
    assert bd["weights"] == 2410 * 4
    # ping-pong buffers: Linear(64,32) output + Linear(32,10) output; ReLU runs in place,
    # the input batch lives in the I/O buffers
    assert bd["activations"] == (B * 32 + B * 10) * 4
    # q + 1 float32 losses and a restore copy of the fp32 weights
    assert bd["estimator"] == (q + 1) * 4 + 2410 * 4
    # seed-SGD: q (seed, coeff) pairs
    assert bd["optimizer"] == q * 8
    assert bd["io"] == B * 64 * 4 + B * 4 + 256
    assert bd.total == sum(bd.items.values())
    assert bd.budget == 256 * 1024 and bd.fits and bd.headroom > 0
    assert bd.suggestions() == []
    table = bd.format_table()
    for word in ("weights", "activations", "estimator", "optimizer", "io", "total", "budget", "fits: yes"):
        assert word in table
    assert bd.as_dict()["total"] == bd.total


def test_largest_activation_pair_is_found():
    model = mlp(16, 128, 256, 8)
    bd = memory_breakdown(model, "cortex-m7-512k", input_shape=(16,), batch_size=4)
    assert bd["activations"] == 4 * (128 + 256) * 4


def test_optimizer_state_adam_momentum_vs_seed_sgd():
    model = mlp(64, 32, 10)
    kw = dict(input_shape=(64,), batch_size=16, queries_per_step=4)
    seed = memory_breakdown(model, "cortex-m4-256k", optimizer="seed-sgd", **kw)
    mom = memory_breakdown(model, "cortex-m4-256k", optimizer="sgd-momentum", **kw)
    adam = memory_breakdown(model, "cortex-m4-256k", optimizer="adam", **kw)
    assert mom["optimizer"] - seed["optimizer"] == 2410 * 4
    assert adam["optimizer"] - seed["optimizer"] == 2 * 2410 * 4
    assert adam.total - seed.total == 2 * 2410 * 4
    for k in ("weights", "activations", "estimator", "io"):
        assert adam[k] == seed[k]


def test_estimator_variants_and_integer_weights():
    model = mlp(64, 32, 10)
    kw = dict(input_shape=(64,), batch_size=8, queries_per_step=5)
    central = memory_breakdown(model, "cortex-m4-256k", estimator="rge-central", **kw)
    assert central["estimator"] == 2 * 5 * 4 + 2410 * 4
    q8 = memory_breakdown(model, "fpga-int8", **kw)
    # int8 weights, int32 biases, one float32 scale per tensor
    assert q8["weights"] == (2048 + 320) * 1 + (32 + 10) * 4 + 4 * 4
    assert q8["estimator"] == 6 * 4  # integer perturbations restore exactly: no copy
    assert q8["activations"] == 8 * (32 + 10) * 1


def test_unknown_estimator_or_optimizer():
    model = mlp(4, 2)
    with pytest.raises(ValueError, match="estimator"):
        memory_breakdown(model, "host-cpu", input_shape=(4,), batch_size=1, estimator="spsa2")
    with pytest.raises(ValueError, match="optimizer"):
        memory_breakdown(model, "host-cpu", input_shape=(4,), batch_size=1, optimizer="lion")


def test_dense_784_512_10_exceeds_256k():
    model = mlp(784, 512, 10)
    with pytest.raises(BudgetError) as ei:
        check_fits(model, "cortex-m4-256k", input_shape=(784,), batch_size=8, queries_per_step=10)
    err = ei.value
    assert isinstance(err, ValueError)
    msg = str(err)
    assert "weights" in msg and "cortex-m4-256k" in msg
    assert "TT layer" in msg and "int8" in msg
    assert "fits: NO" in msg
    bd = err.breakdown
    assert not bd.fits and bd["weights"] == 407_050 * 4
    assert bd.suggestions()[0].startswith("weights are")


def test_batch_size_suggestion_when_activations_dominate():
    model = mlp(8, 256, 8)
    with pytest.raises(BudgetError) as ei:
        check_fits(model, "cortex-m4-256k", input_shape=(8,), batch_size=512)
    tips = ei.value.breakdown.suggestions()
    assert any(t.startswith("activations are") and "lower batch size" in t for t in tips)


def test_memory_probe_leaves_model_untouched():
    model = nn.Sequential(nn.Linear(6, 3), nn.BatchNorm1d(3), nn.ReLU())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bd = check_fits(model, "cortex-m4-256k", input_shape=(6,), batch_size=2)
    # Linear output and BatchNorm output (BatchNorm has parameters: not counted as in place)
    assert bd.fits and bd["activations"] == (2 * 3 + 2 * 3) * 4
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model[0]._forward_hooks
