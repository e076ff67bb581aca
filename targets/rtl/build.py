"""Build the RTL target: Verilator (bus library, ``rtl`` firmware), Icarus, and the yosys iCE40 report.

* :func:`missing` says why a tool chain cannot run here (``"verilator"`` also
  needs make, gcc and g++; ``"icarus"`` is iverilog + vvp; ``"yosys"``), for
  CLI errors and test skips.
* :func:`build` runs ``make lib`` / ``make fw`` in this folder (Verilator
  ``--cc`` then g++), into ``$EDGEZO_FIRMWARE_BUILD/rtl`` (default
  ``~/.cache/edgezo/firmware/rtl``) so an installed package stays read-only.
* :func:`synth_ice40` runs ``yosys -p "synth_ice40 -top ez_accel"`` on the
  design sized by ``params`` and returns the cell counts (LUT4, flip-flops,
  EBR block RAM, SB_MAC16 DSPs) with the log; :func:`place_and_route` runs
  nextpnr-ice40 (UP5K) on it behind a serial port and returns the maximum clock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from . import RTL_DIR, SOURCES, TOP

__all__ = ["missing", "build", "DEFAULT_SIZE", "synth_ice40", "place_and_route"]

#: the design sized for the digits-mlp-device recipe: 2,048 parameters, a 64 x 64 batch, layers up to 128 wide, 4 layers
DEFAULT_SIZE = {"PAW": 11, "XAW": 12, "AAW": 7, "LAW": 2}
TOOLS = {"verilator": ("make", "gcc", "g++", "verilator"), "icarus": ("iverilog", "vvp"), "yosys": ("yosys",)}
HINT = "apt-get install -y verilator iverilog yosys"


class RtlBuildError(RuntimeError):
    """A build or synthesis step failed (the message carries its output)."""


def missing(kind: str) -> str | None:
    """None when ``kind`` (verilator, icarus, yosys) can run here, else the reason."""
    if kind not in TOOLS:
        raise ValueError(f"RTL tool chain {kind!r}: use one of {', '.join(TOOLS)}")
    gone = [t for t in TOOLS[kind] if shutil.which(t) is None]
    return f"the RTL target's {kind} flow needs {', '.join(gone)} (not on PATH): {HINT}" if gone else None


def build_dir() -> Path:
    base = Path(os.environ.get("EDGEZO_FIRMWARE_BUILD", Path.home() / ".cache" / "edgezo" / "firmware"))
    return base / "rtl"


def build(what: str = "lib", out: str | os.PathLike | None = None, size: dict | None = None) -> Path:
    """``what`` = "lib" (libezr.so) or "fw" (edgezo-fw-rtl); make is incremental. Returns the file."""
    reason = missing("verilator")
    if reason:
        raise RtlBuildError(reason)
    from ..build_lock import make_locked

    out = Path(out) if out is not None else build_dir()
    size = {**DEFAULT_SIZE, **(size or {})}
    args = [f"{k}={v}" for k, v in size.items()]
    proc = make_locked(["make", "-s", "-C", str(RTL_DIR), f"BUILD={out.resolve()}", *args, what], out)
    if proc.returncode:
        raise RtlBuildError(f"make {what} failed:\n{proc.stdout}{proc.stderr}")
    return out / ("libezr.so" if what == "lib" else "edgezo-fw-rtl")


def icarus_sources() -> list[Path]:
    return [RTL_DIR / s for s in SOURCES]


_CELL = re.compile(r"^\s+(\S+)\s+(\d+)\s*$")


def synth_ice40(size: dict | None = None, timeout: float = 900.0) -> dict:
    """yosys ``synth_ice40`` of ez_accel: {"cells": {...}, "luts", "ffs", "bram", "dsp", "log"}."""
    reason = missing("yosys")
    if reason:
        raise RtlBuildError(reason)
    size = {**DEFAULT_SIZE, **(size or {})}
    chparams = " ".join(f"-set {k} {v}" for k, v in size.items())
    script = (f"read_verilog {' '.join(str(p) for p in icarus_sources())}; chparam {chparams} {TOP}; "
              f"synth_ice40 -top {TOP}; stat")
    proc = subprocess.run(["yosys", "-q", "-p", script, "-l", "/dev/stdout"], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode:
        raise RtlBuildError(f"yosys failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    stat = proc.stdout[proc.stdout.rfind("Number of cells"):]
    cells = {m.group(1): int(m.group(2)) for m in map(_CELL.match, stat.splitlines()) if m}
    ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    return {"cells": cells, "luts": cells.get("SB_LUT4", 0), "carries": cells.get("SB_CARRY", 0), "ffs": ffs,
            "bram": cells.get("SB_RAM40_4K", 0), "dsp": cells.get("SB_MAC16", 0), "log": stat}


_FMAX = re.compile(r"Max frequency for clock '[^']*': ([0-9.]+) MHz \((PASS|FAIL) at ([0-9.]+) MHz\)")


def place_and_route(clock_mhz: float = 24.0, size: dict | None = None, seed: int = 1, timeout: float = 1200.0) -> dict:
    """nextpnr-ice40 (UP5K, SG48) of ez_accel behind its serial port (ez_serial_top.v): the maximum frequency and
    the logic cells; {"skipped": reason} without nextpnr-ice40."""
    if shutil.which("nextpnr-ice40") is None or missing("yosys"):
        return {"skipped": "needs yosys and nextpnr-ice40 (apt-get install -y yosys nextpnr-ice40)"}
    import tempfile

    size = {**DEFAULT_SIZE, **(size or {})}
    chparams = " ".join(f"-set {k} {v}" for k, v in size.items())
    with tempfile.TemporaryDirectory() as tmp:
        net = Path(tmp) / "top.json"
        srcs = " ".join(str(p) for p in [*icarus_sources(), RTL_DIR / "ez_serial_top.v"])
        subprocess.run(["yosys", "-q", "-p", f"read_verilog {srcs}; chparam {chparams} {TOP}; "
                        f"synth_ice40 -top ez_serial_top -json {net}"], check=True, capture_output=True,
                       timeout=timeout)
        proc = subprocess.run(["nextpnr-ice40", "--up5k", "--package", "sg48", "--json", str(net), "--freq",
                               str(clock_mhz), "--pcf-allow-unconstrained", "--seed", str(seed)],
                              capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    found = _FMAX.findall(log)
    if not found:
        raise RtlBuildError(f"nextpnr-ice40 reported no frequency:\n{log[-3000:]}")
    fmax, verdict, target = found[-1]
    cells = dict(re.findall(r"(ICESTORM_\w+|SB_IO):\s+(\d+)/", log))
    return {"fmax_mhz": float(fmax), "clock_mhz": float(target), "meets_clock": verdict == "PASS",
            "device": "iCE40UP5K-SG48", "seed": seed, "cells": {k: int(v) for k, v in cells.items()}}
