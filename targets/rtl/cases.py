"""Randomized test cases for the accelerator: command programs and the answers Python expects (docs/rtl.md).

A case is a :class:`~edgezo.targets.rtl.bus.CommandProgram` plus, for some of
its commands, the rdata the design must return. The expected values come from
the fpga-int8 datapath (:func:`edgezo.targets.numerics.int_linear`) and the
direction spec (:func:`edgezo.directions.words`); one case description drives
the Verilator model (:class:`~edgezo.targets.rtl.bus.RtlBus`) and the Icarus
test bench (cocotb, :mod:`edgezo.targets.rtl.cocotb_bench`) alike.

* :func:`forward_case`: 1-3 dense layers of random sizes, int16 masters mixing
  round-half-even ties, saturation at ±127 and the full int16 range, random
  biases, multipliers in [2^30, 2^31), shifts 1-70 (mostly where outputs are not
  all clamped), random int8 inputs at a random batch offset, and half the time a
  perturbation ``delta_l · z(seed)`` on a random range (deltas small or large
  enough to saturate); a third of the perturbed cases then run the update and
  read every parameter back.
* :func:`generator_case`: a random seed and range; the z words of the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ... import directions as D
from ..numerics import QuantizedLinear, int_linear
from .bus import CommandProgram, Layer
from .reference import rhe_shift

__all__ = ["Case", "forward_case", "generator_case", "check"]

M32 = 0xFFFFFFFF
INT16 = (-(2**15), 2**15 - 1)


@dataclass
class Case:
    kind: str
    prog: CommandProgram
    reads: list[int] = field(default_factory=list)      # indices of the commands whose rdata is checked
    expected: list[int] = field(default_factory=list)   # their expected rdata (uint32)


def check(case: Case, rdata: list[int]) -> bool:
    """The design's answers equal the expected ones, bit for bit."""
    return [rdata[i] & M32 for i in case.reads] == [e & M32 for e in case.expected]


def _masters(rng: np.random.Generator, n: int) -> np.ndarray:
    """int16 masters: random int8 grid points plus offsets (ties at ±128 included), or anything in int16."""
    base = rng.integers(-128, 128, n) * 256 + rng.choice([0, 128, -128, 1, -1, 127], n)
    wide = rng.integers(*INT16, n, endpoint=True)
    return np.clip(np.where(rng.random(n) < 0.8, base, wide), *INT16)


def _layers(rng: np.random.Generator, cap: dict) -> tuple[list[int], list[Layer]]:
    n_layers = int(rng.integers(1, min(3, cap["layers"]) + 1))
    top = min(24, cap["width"])
    sizes = [int(rng.integers(1, top + 1)) for _ in range(n_layers + 1)]
    layers, p = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        bias = bool(rng.random() < 0.7)
        shift = int(rng.integers(1, 71)) if rng.random() < 0.15 else int(rng.integers(30, 46))
        layers.append(Layer(a, b, p, p + a * b, bias, bool(rng.random() < 0.5), int(rng.integers(2**30, 2**31)),
                            shift))
        p += a * b + (b if bias else 0)
    return sizes, layers


def _expected_forward(x: np.ndarray, theta: np.ndarray, layers: list[Layer]) -> np.ndarray:
    h = torch.from_numpy(x.astype(np.int64))[None]
    for ly in layers:
        w = np.clip(rhe_shift(theta[ly.w_base:ly.w_base + ly.n_in * ly.n_out], 8), -127, 127)
        w = w.reshape(ly.n_out, ly.n_in)
        b = torch.from_numpy(rhe_shift(theta[ly.b_base:ly.b_base + ly.n_out], 4)) if ly.bias else None
        ql = QuantizedLinear(torch.from_numpy(w), b, 1.0, ly.m, ly.shift, 4, 4, 8, 32)
        h = int_linear(h, ql)
        if ly.relu:
            h = h.clamp(min=0)
    return h[0].numpy()


def forward_case(rng: np.random.Generator, cap: dict) -> Case:
    sizes, layers = _layers(rng, cap)
    dim = layers[-1].b_base + (layers[-1].n_out if layers[-1].bias else 0)
    theta = _masters(rng, dim)
    x = rng.integers(-128, 128, sizes[0])
    base = int(rng.integers(0, cap["inputs"] - sizes[0] + 1))
    prog = CommandProgram()
    prog.set_model(layers)
    prog.params(theta)
    prog.inputs(x, base)
    perturb = bool(rng.random() < 0.5)
    theta_eff = theta
    case = Case("forward-perturbed" if perturb else "forward", prog)
    if perturb:
        seed = int(rng.integers(0, 2**32))
        lo = int(rng.integers(0, dim))
        hi = int(rng.integers(lo + 1, dim + 1))
        deltas = [int(rng.integers(-3000, 3001)) if rng.random() < 0.8 else int(rng.integers(-2**31, 2**31))
                  for _ in layers]
        prog.range(seed, lo, hi)
        prog.deltas(deltas)
        prog.add("gen")
        z = D.directions([seed], lo, hi - lo, "rademacher")[0].numpy().astype(np.int64)
        per = np.zeros(dim, dtype=np.int64)
        for ly, d in zip(layers, deltas):
            end = ly.b_base + (ly.n_out if ly.bias else 0)
            per[ly.w_base:end] = d
        theta_eff = theta.copy()
        theta_eff[lo:hi] = np.clip(theta[lo:hi] + per[lo:hi] * z, *INT16)
    prog.add("forward", base, int(perturb))
    for o, y in enumerate(_expected_forward(x, theta_eff, layers)):
        case.reads.append(prog.add("rd_out", o))
        case.expected.append(int(y))
    if perturb and rng.random() < 1 / 3:
        case.kind = "update"
        for i in range(len(layers)):
            prog.add("update", i)
        for k, t in enumerate(theta_eff):
            case.reads.append(prog.add("rd_param", k))
            case.expected.append(int(t))
    return case


def generator_case(rng: np.random.Generator, cap: dict) -> Case:
    seed = int(rng.choice([0, 1, M32])) if rng.random() < 0.05 else int(rng.integers(0, 2**32))
    lo = int(rng.integers(0, cap["params"]))
    hi = int(rng.integers(lo + 1, min(cap["params"], lo + 256) + 1))
    prog = CommandProgram()
    prog.range(seed, lo, hi)
    prog.add("gen")
    case = Case("generator", prog)
    counters = torch.arange(lo >> 5, ((hi - 1) >> 5) + 1)
    for j, w in zip(counters.tolist(), D.words([seed], counters, "rademacher")[0].tolist()):
        case.reads.append(prog.add("rd_z", j))
        case.expected.append(int(w))
    return case
