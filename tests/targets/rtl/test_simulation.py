"""The Verilog accelerator (targets/rtl) against Python: Icarus through cocotb, and the Verilator model.

Randomized layers, inputs, perturbations and updates (edgezo.targets.rtl.cases)
must give the int8 datapath's outputs (edgezo.targets.numerics.int_linear) bit
for bit, and the design's direction generator the words of the Python and the
C generators. Small counts here; ``edgezo bench rtl`` runs >= 10,000 forward
cases and >= 1,000 generator draws.
"""

from __future__ import annotations

import ctypes
import importlib.util

import numpy as np
import pytest
import torch
from edgezo.targets.rtl import build as B
from edgezo.targets.rtl import cases as C

from edgezo import directions as D

pytestmark = pytest.mark.rtl


def _need(kind):
    reason = B.missing(kind)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def bus():
    _need("verilator")
    from edgezo.targets.rtl.bus import RtlBus

    b = RtlBus(B.build("lib"))
    yield b
    b.close()


def test_icarus_cocotb_bench_matches_python(tmp_path):
    _need("icarus")
    if importlib.util.find_spec("cocotb") is None:
        pytest.skip("cocotb is not installed: pip install -e '.[rtl]'")
    from edgezo.targets.rtl.cocotb_bench import run_icarus

    counts = run_icarus(tmp_path / "icarus", forward=6, generator=6, seed=1)
    assert sum(v[0] for v in counts.values()) == 12
    assert all(n == ok for n, ok in counts.values()), counts


def test_verilator_forward_perturb_update_match_python(bus):
    rng = np.random.default_rng(2)
    cap = bus.capacity
    seen = {}
    for _ in range(300):
        case = C.forward_case(rng, cap)
        seen[case.kind] = seen.get(case.kind, 0) + 1
        assert C.check(case, bus.run(case.prog)), f"{case.kind} case differs"
    assert set(seen) == {"forward", "forward-perturbed", "update"}


def test_verilator_generator_matches_python_and_c(bus):
    lib = bus.lib
    lib.ezdir_key.restype = lib.ezdir_word.restype = ctypes.c_uint32
    lib.ezdir_key.argtypes = (ctypes.c_uint32, ctypes.c_int)
    lib.ezdir_word.argtypes = (ctypes.c_uint32, ctypes.c_uint32)
    rng = np.random.default_rng(3)
    for _ in range(100):
        case = C.generator_case(rng, bus.capacity)
        rdata = bus.run(case.prog)
        assert C.check(case, rdata)
        seed = case.prog.cmds[0][2]
        words = [rdata[i] for i in case.reads]
        key = lib.ezdir_key(seed, 0)
        assert words == [lib.ezdir_word(key, case.prog.cmds[i][1]) for i in case.reads]
    # and the design's bits are the ±1 coordinates of directions() (docs/directions.md §4)
    seed, lo, hi = 12345, 37, 300
    bus.cmd("wr_reg", 1, seed), bus.cmd("wr_reg", 2, lo), bus.cmd("wr_reg", 3, hi), bus.cmd("gen")
    w = bus.read_z(lo >> 5, ((hi - 1) >> 5) + 1)
    bits = np.array([(int(w[(i >> 5) - (lo >> 5)]) >> (i & 31)) & 1 for i in range(lo, hi)])
    assert torch.equal(torch.from_numpy(1.0 - 2.0 * bits).float(), D.directions([seed], lo, hi - lo)[0])


def test_forward_issues_one_mac_per_cycle(bus):
    """Per output neuron: n_in (+1 bias) MAC issues, then a fixed overhead (pipeline drain, the serial requantizer:
    31 steps for m in [2^30, 2^31), write-back) of at most 50 cycles."""
    from edgezo.targets.rtl.bus import CommandProgram, Layer

    def cycles(n_in):
        prog = CommandProgram()
        prog.set_model([Layer(n_in, 3, 0, 3 * n_in, True, False, 2**30 + 12345, 40)])
        bus.run(prog)
        c0 = bus.cycles()
        bus.cmd("forward", 0, 0)
        return bus.cycles() - c0

    c20, c40 = cycles(20), cycles(40)
    assert c40 - c20 == 3 * 20
    assert 3 * 21 < c20 <= 3 * (21 + 50)


@pytest.mark.slow
def test_yosys_ice40_fits_an_up5k():
    _need("yosys")
    r = B.synth_ice40()
    assert 0 < r["luts"] <= 5280 and r["bram"] <= 30 and r["dsp"] <= 8, r
