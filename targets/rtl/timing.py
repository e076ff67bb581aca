"""Cycles of the accelerator for a device recipe's forward pass and training step (docs/rtl.md §Cycles).

:func:`step_cycles` programs the Verilator model through :class:`~edgezo.targets.rtl.bus.RtlBus`
with exactly the commands the ``rtl`` firmware issues (``model_rtl.c``): the
layers (multiplier ``2^30``, shift ``22 + e``), the weights, one batch; then
one forward-difference RGE step: q + 1 evaluates (the unperturbed one, then
per seed: seed and range registers, GEN, the per-layer deltas, and per sample
FORWARD plus one RD_OUT per class) and the seed-SGD update (per seed: registers,
GEN, deltas, UPDATE per layer). Every bus cycle counts, single-cycle register
writes and reads included; the batch upload is reported apart.
"""

from __future__ import annotations

import numpy as np

from .bus import REG_HI, REG_LAYERS, REG_LO, REG_SEED, Layer, RtlBus, layer_reg
from .reference import RtlReference, delta_of

__all__ = ["step_cycles"]


def _program(bus: RtlBus, ref: RtlReference, rng: np.random.Generator) -> None:
    bus.cmd("wr_reg", REG_LAYERS, len(ref.slices))
    for i, ((w, b), ql) in enumerate(zip(ref.slices, ref.layers())):
        ly = Layer(ref.sizes[i], ref.sizes[i + 1], w.start, b.start if b is not None else w.stop, b is not None,
                   ref.relu and i < len(ref.slices) - 1, ql.multiplier, ql.shift)
        for a, v in ly.registers(i):
            bus.cmd("wr_reg", a, v)
    ref.theta = rng.integers(-8000, 8000, ref.dim)
    for p, t in enumerate(ref.theta):
        bus.cmd("wr_param", p, int(t) & 0xFFFF)


def _direction(bus: RtlBus, ref: RtlReference, seed: int, s: float) -> None:
    for reg, v in ((REG_SEED, seed), (REG_LO, 0), (REG_HI, ref.dim)):
        bus.cmd("wr_reg", reg, v)
    bus.cmd("gen")
    for i, e in enumerate(ref.exponents):
        bus.cmd("wr_reg", layer_reg(i, 7), delta_of(s, e))


def step_cycles(bus: RtlBus, sizes: list[int], batch: int, q: int, mu: float = 0.01, seed: int = 0) -> dict:
    """Cycles of one batch upload, one forward pass, one evaluate of each kind and one RGE + seed-SGD step."""
    rng = np.random.default_rng(seed)
    ref = RtlReference(sizes)
    _program(bus, ref, rng)
    n_in, n_out = sizes[0], sizes[-1]
    c = bus.cycles()
    for k, v in enumerate(rng.integers(0, 17, batch * n_in)):
        bus.cmd("wr_x", k, int(v))
    upload = bus.cycles() - c

    def evaluate(perturb_seed: int | None) -> int:
        c0 = bus.cycles()
        if perturb_seed is not None:
            _direction(bus, ref, perturb_seed, mu)
        for b in range(batch):
            bus.cmd("forward", b * n_in, int(perturb_seed is not None))
            for o in range(n_out):
                bus.cmd("rd_out", o)
        return bus.cycles() - c0

    c0 = bus.cycles()
    bus.cmd("forward", 0, 0)
    forward = bus.cycles() - c0
    plain = evaluate(None)
    perturbed = [evaluate(1000 + i) for i in range(q)]
    c0 = bus.cycles()
    for i in range(q):
        _direction(bus, ref, 1000 + i, -0.001)
        for layer in range(len(ref.slices)):
            bus.cmd("update", layer)
    update = bus.cycles() - c0
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return {"sizes": list(sizes), "batch": batch, "q": q, "params": ref.dim, "macs_per_sample": macs,
            "batch_upload": upload, "forward_pass": forward, "evaluate_unperturbed": plain,
            "evaluate_perturbed": int(np.mean(perturbed)), "update": update,
            "step": plain + sum(perturbed) + update}
