"""cocotb test bench of ez_accel (run by :func:`run_icarus` under Icarus through cocotb's Python runner).

The test drives the design's command bus pin by pin (inputs change on the
falling clock edge, the design samples on the rising one) with the randomized
cases of :mod:`edgezo.targets.rtl.cases` and compares every answer with the
Python int8 datapath and the direction spec. Environment: ``EZR_FORWARD`` and
``EZR_GENERATOR`` (case counts), ``EZR_SEED``, ``EZR_REPORT`` (a JSON file
for the counts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from . import RTL_DIR, SOURCES, TOP
from . import cases as C

__all__ = ["run_icarus"]


async def _command(dut, op: int, addr: int, data: int) -> int:
    while dut.busy.value:
        await FallingEdge(dut.busy)
        await FallingEdge(dut.clk)
    dut.cmd_op.value = op
    dut.cmd_addr.value = addr
    dut.cmd_data.value = data
    dut.cmd_valid.value = 1
    await FallingEdge(dut.clk)
    dut.cmd_valid.value = 0
    while dut.busy.value:
        await FallingEdge(dut.busy)
        await FallingEdge(dut.clk)
    return int(dut.rdata.value)


@cocotb.test()
async def randomized_cases(dut):
    """RTL answers == Python (numerics.int_linear, directions.words) on randomized layers, inputs and seeds."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.cmd_valid.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    rng = np.random.default_rng(int(os.environ.get("EZR_SEED", "0")))
    cap = {"params": 1 << int(dut.PAW.value), "inputs": 1 << int(dut.XAW.value),
           "width": 1 << int(dut.AAW.value), "layers": 1 << int(dut.LAW.value)}
    counts: dict[str, list[int]] = {}
    plan = ["forward"] * int(os.environ.get("EZR_FORWARD", "10")) + ["generator"] * int(
        os.environ.get("EZR_GENERATOR", "10"))
    for what in plan:
        case = C.forward_case(rng, cap) if what == "forward" else C.generator_case(rng, cap)
        rdata = [await _command(dut, op, addr, data) for op, addr, data in case.prog.cmds]
        ok = C.check(case, rdata)
        counts.setdefault(case.kind, [0, 0])
        counts[case.kind][0] += 1
        counts[case.kind][1] += int(ok)
    report = os.environ.get("EZR_REPORT")
    if report:
        Path(report).write_text(json.dumps(counts))
    bad = {k: v[0] - v[1] for k, v in counts.items() if v[0] != v[1]}
    assert not bad, f"RTL differs from Python on {bad} cases ({counts})"


def run_icarus(build_dir: str | os.PathLike, *, forward: int, generator: int, seed: int = 0) -> dict:
    """Build ez_accel with Icarus, run :func:`randomized_cases`; returns {kind: [cases, bit-exact]}."""
    from cocotb_tools.runner import get_results, get_runner

    build_dir = Path(build_dir)
    runner = get_runner("icarus")
    runner.build(sources=[RTL_DIR / s for s in SOURCES], hdl_toplevel=TOP, build_dir=build_dir,
                 build_args=["-g2005"], timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    report = build_dir / "counts.json"
    report.unlink(missing_ok=True)
    xml = runner.test(test_module=__name__, hdl_toplevel=TOP, build_dir=build_dir, test_dir=build_dir,
                      extra_env={"EZR_FORWARD": str(forward), "EZR_GENERATOR": str(generator),
                                 "EZR_SEED": str(seed), "EZR_REPORT": str(report)},
                      log_file=build_dir / "test.log")
    total, failed = get_results(xml)
    counts = json.loads(report.read_text()) if report.exists() else {}
    if failed or not counts:
        log = (build_dir / "test.log").read_text()[-3000:] if (build_dir / "test.log").exists() else ""
        raise AssertionError(f"cocotb: {failed} of {total} tests failed; counts {counts}\n{log}")
    return counts
