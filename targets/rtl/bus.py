"""The accelerator's command bus from Python: ctypes over the Verilator-built model (docs/rtl.md §Interface).

:class:`RtlBus` loads the shared library :func:`edgezo.targets.rtl.build.verilator_library`
builds (``ezr_bus.cpp`` + the verilated ``ez_accel``) and issues the
commands of ``ez_accel.v``; the Icarus test bench (cocotb) issues the same
commands through :class:`CommandProgram`, so one description of a test drives
both simulators.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["OPS", "layer_reg", "Layer", "CommandProgram", "RtlBus"]

OPS = {"wr_param": 1, "rd_param": 2, "wr_x": 3, "wr_reg": 4, "gen": 5, "forward": 6, "rd_out": 7, "update": 8,
       "rd_z": 9}
REG_LAYERS, REG_SEED, REG_LO, REG_HI = 0, 1, 2, 3


def layer_reg(layer: int, k: int) -> int:
    """Register of layer ``layer``: k = 0 in, 1 out, 2 flags, 3 weight base, 4 bias base, 5 m, 6 shift, 7 delta."""
    return 8 + 8 * layer + k


@dataclass(frozen=True)
class Layer:
    """One dense layer as the design sees it."""

    n_in: int
    n_out: int
    w_base: int
    b_base: int
    bias: bool
    relu: bool
    m: int
    shift: int

    def registers(self, index: int) -> list[tuple[int, int]]:
        vals = (self.n_in, self.n_out, int(self.relu) | (int(self.bias) << 1), self.w_base, self.b_base,
                self.m, self.shift)
        return [(layer_reg(index, k), int(v)) for k, v in enumerate(vals)]


@dataclass
class CommandProgram:
    """A list of ``(op, addr, data)`` commands (reads included) and where their answers go."""

    cmds: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, op: str, addr: int = 0, data: int = 0) -> int:
        self.cmds.append((OPS[op], int(addr), int(data) & 0xFFFFFFFF))
        return len(self.cmds) - 1

    def set_model(self, layers: Sequence[Layer]) -> None:
        self.add("wr_reg", REG_LAYERS, len(layers))
        for i, ly in enumerate(layers):
            for a, v in ly.registers(i):
                self.add("wr_reg", a, v)

    def params(self, theta: np.ndarray, base: int = 0) -> None:
        for k, t in enumerate(np.asarray(theta, dtype=np.int64)):
            self.add("wr_param", base + k, int(t) & 0xFFFF)

    def inputs(self, x_q: np.ndarray, base: int = 0) -> None:
        for k, v in enumerate(np.asarray(x_q, dtype=np.int64).ravel()):
            self.add("wr_x", base + k, int(v) & 0xFF)

    def range(self, seed: int, lo: int, hi: int) -> None:
        self.add("wr_reg", REG_SEED, seed)
        self.add("wr_reg", REG_LO, lo)
        self.add("wr_reg", REG_HI, hi)

    def deltas(self, deltas: Sequence[int]) -> None:
        for i, d in enumerate(deltas):
            self.add("wr_reg", layer_reg(i, 7), int(d))


def signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


class RtlBus:
    """One Verilator model of ez_accel in this process (the library holds a single instance)."""

    def __init__(self, library: str | Path):
        self.lib = ctypes.CDLL(str(library))
        self.lib.ezr_cmd.restype = ctypes.c_uint32
        self.lib.ezr_cmd.argtypes = (ctypes.c_uint, ctypes.c_uint, ctypes.c_uint32)
        self.lib.ezr_cycles.restype = ctypes.c_uint64
        for name in ("ezr_max_params", "ezr_max_inputs", "ezr_max_width", "ezr_max_layers"):
            getattr(self.lib, name).restype = ctypes.c_uint
        self.lib.ezr_open()

    @property
    def capacity(self) -> dict:
        return {"params": self.lib.ezr_max_params(), "inputs": self.lib.ezr_max_inputs(),
                "width": self.lib.ezr_max_width(), "layers": self.lib.ezr_max_layers()}

    def reset(self) -> None:
        self.lib.ezr_open()

    def cycles(self) -> int:
        return int(self.lib.ezr_cycles())

    def cmd(self, op: str, addr: int = 0, data: int = 0) -> int:
        return int(self.lib.ezr_cmd(OPS[op], int(addr), int(data) & 0xFFFFFFFF))

    def run(self, prog: CommandProgram) -> list[int]:
        """Issue every command; the answers of all of them (rdata), in order."""
        f = self.lib.ezr_cmd
        return [int(f(op, addr, data)) for op, addr, data in prog.cmds]

    def forward(self, x_base: int, n_out: int, perturb: bool = False) -> np.ndarray:
        self.cmd("forward", x_base, int(perturb))
        return np.array([signed(self.cmd("rd_out", o), 8) for o in range(n_out)], dtype=np.int64)

    def read_params(self, n: int, base: int = 0) -> np.ndarray:
        return np.array([signed(self.cmd("rd_param", base + k), 16) for k in range(n)], dtype=np.int64)

    def read_z(self, lo_word: int, hi_word: int) -> np.ndarray:
        return np.array([self.cmd("rd_z", j) for j in range(lo_word, hi_word)], dtype=np.uint32)

    def close(self) -> None:
        self.lib.ezr_close()
