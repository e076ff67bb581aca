"""``edgezo bench rtl``: the Verilog int8 accelerator (targets/rtl, docs/rtl.md) checked, sized, timed and trained.

* ``rtl_bit_exact``: 1 when every randomized case on the Verilator model gives
  the Python answer bit for bit: ``--cases`` forward cases (1-3 dense layers,
  perturbations, updates; edgezo.targets.rtl.cases) against the fpga-int8
  datapath, ``--draws`` generator draws against the Python and the C
  generators. A smaller Icarus run (cocotb) is reported beside it.
* ``rtl_test_accuracy``: digits-mlp-device trained through the ``rtl``
  firmware (the C protocol code driving the verilated design), the test
  accuracy of the int8 datapath on the weights read back.
* ``rtl_ice40_luts``: yosys ``synth_ice40`` LUT4 count of ez_accel sized for
  the recipe (2,048 parameters, a 64 x 64 batch); flip-flops, EBR and DSPs
  beside it, and nextpnr-ice40's maximum clock on an UP5K when installed.
* ``rtl_step_cycles``: cycles of one RGE (q = 10, batch 64) + seed-SGD step on
  the design (edgezo.targets.rtl.timing), and the steps per second it implies
  at the stated clock (24 MHz) against the Cortex-M4 firmware's instructions
  per step under QEMU (edgezo.bench.rtl_m4) at 25 MHz (the MPS2 board's clock)
  and one instruction per cycle (a bound in the M4's favour).
``--quick``: 500 cases, 100 draws, 10 training steps (a smoke run, not the goals).
"""

from __future__ import annotations

import time

import numpy as np

CLOCK_MHZ = 24.0      # iCE40 UP5K: the 48 MHz internal oscillator / 2; nextpnr checks it
M4_CLOCK_MHZ = 25.0   # QEMU mps2-an386 (the MPS2+ FPGA board's Cortex-M4 clock)
RECIPE = "digits-mlp-device"


def add_arguments(p) -> None:
    p.add_argument("--cases", type=int, default=10_000, help="randomized forward cases on Verilator")
    p.add_argument("--draws", type=int, default=1_000, help="randomized generator draws on Verilator")


def _bit_exact(n_cases: int, n_draws: int) -> dict:
    import ctypes

    from ..targets.rtl import build as B
    from ..targets.rtl import cases as C
    from ..targets.rtl.bus import RtlBus

    reason = B.missing("verilator")
    if reason:
        return {"skipped": reason}
    bus = RtlBus(B.build("lib"))
    lib = bus.lib
    lib.ezdir_key.restype = lib.ezdir_word.restype = ctypes.c_uint32
    lib.ezdir_key.argtypes, lib.ezdir_word.argtypes = (ctypes.c_uint32, ctypes.c_int), (ctypes.c_uint32,) * 2
    rng = np.random.default_rng(2024)
    counts: dict[str, list[int]] = {}
    t0 = time.perf_counter()
    for what in ["forward"] * n_cases + ["generator"] * n_draws:
        case = C.forward_case(rng, bus.capacity) if what == "forward" else C.generator_case(rng, bus.capacity)
        rdata = bus.run(case.prog)
        ok = C.check(case, rdata)
        if what == "generator":  # the C generator's words too
            key = lib.ezdir_key(case.prog.cmds[0][2], 0)
            ok = ok and [rdata[i] for i in case.reads] == [lib.ezdir_word(key, case.prog.cmds[i][1])
                                                           for i in case.reads]
        counts.setdefault(case.kind, [0, 0])
        counts[case.kind][0] += 1
        counts[case.kind][1] += int(ok)
    bus.close()
    return {"counts": counts, "wall_s": time.perf_counter() - t0, "seed": 2024,
            "all_exact": all(n == ok for n, ok in counts.values())}


def _icarus(quick: bool) -> dict:
    import importlib.util
    import tempfile

    from ..targets.rtl import build as B

    reason = B.missing("icarus") or (None if importlib.util.find_spec("cocotb") else "cocotb is not installed")
    if reason:
        return {"skipped": reason}
    from ..targets.rtl.cocotb_bench import run_icarus

    n = 20 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        counts = run_icarus(tmp, forward=n, generator=n, seed=7)
    return {"counts": counts, "all_exact": all(a == b for a, b in counts.values())}


def _hardware() -> dict:
    from ..targets.rtl import build as B
    from ..targets.rtl.bus import RtlBus
    from ..targets.rtl.timing import step_cycles

    out = {}
    if not B.missing("verilator"):
        bus = RtlBus(B.build("lib"))
        out["cycles"] = step_cycles(bus, [64, 16, 10], batch=64, q=10)
        bus.close()
    if not B.missing("yosys"):
        synth = B.synth_ice40()
        out["ice40"] = {k: v for k, v in synth.items() if k != "log"}
        out["ice40_report"] = synth["log"]
        out["place_and_route"] = B.place_and_route(CLOCK_MHZ)
    return out


def _train(quick: bool) -> dict:
    import tempfile

    from ..host.device_oracle import device_factory
    from ..host.link import DeviceLink
    from ..recipes import apply_overrides, build_trainer, get_recipe
    from ..targets import qemu
    from ..targets.rtl import reference as R

    reason = qemu.missing("rtl")
    if reason:
        return {"skipped": reason, "test_accuracy": None}
    recipe = get_recipe(RECIPE)
    if quick:
        recipe = apply_overrides(recipe, {"train.max_steps": 10})
    t0 = time.perf_counter()
    with qemu.FirmwareDevice("rtl") as dev, tempfile.TemporaryDirectory() as tmp:
        link = DeviceLink(dev.port, timeout=30)
        try:
            trainer = build_trainer(recipe, data_path=None, out_dir=tmp, progress=False,
                                    oracle_factory=device_factory(link, predictor_for=R.device_predictor))
            metrics = trainer.run()
            info = trainer.oracle.info
        finally:
            link.close()
    return {"test_accuracy": metrics.get("test_accuracy"), "steps": metrics.get("steps"),
            "wall_s": time.perf_counter() - t0, "device": info, "recipe": recipe.name,
            "wire": link.stats.as_dict()}


def _m4_workload(link, steps: int) -> None:
    import torch

    from ..data import load_digits
    from ..estimators.rge import RGE
    from ..host.device_oracle import DeviceOracle
    from ..losses import cross_entropy
    from ..models.mlp import MLP
    from ..optim import seed_sgd_step

    d = load_digits()
    torch.manual_seed(0)
    oracle = DeviceOracle(MLP([64, 16, 10]), cross_entropy, link=link, max_batch=64, checkpoint_every=0)
    batch = (d.x_train[:64], d.y_train[:64])
    oracle._set_batch(batch)
    oracle._upload_batch()
    est = RGE(q=10, mu=0.01, difference="forward", seed_chain=True)
    for step in range(steps):
        seed_sgd_step(oracle, est.estimate(oracle, batch, step=step, seed=0), 0.05)


def run(args) -> dict:
    from .rtl_m4 import m4_instructions_per_step

    quick = bool(getattr(args, "quick", False))
    n_cases, n_draws = (500, 100) if quick else (int(args.cases), int(args.draws))
    exact = _bit_exact(n_cases, n_draws)
    icarus = _icarus(quick)
    hw = _hardware()
    train = _train(quick)
    m4 = m4_instructions_per_step(_m4_workload)
    cyc = hw.get("cycles", {})
    step = cyc.get("step")
    rtl_sps = CLOCK_MHZ * 1e6 / step if step else None
    m4_ipstep = m4.get("instructions_per_step")
    m4_sps = M4_CLOCK_MHZ * 1e6 / m4_ipstep if m4_ipstep else None
    ice = hw.get("ice40", {})
    n_exact = sum(v[0] for k, v in exact.get("counts", {}).items() if k != "generator")
    n_draw = exact.get("counts", {}).get("generator", [0])[0]
    enough = n_exact >= 10_000 and n_draw >= 1_000
    return {
        "bit_exact": exact, "icarus": icarus, "cycles": cyc, "ice40": ice,
        "ice40_report": hw.get("ice40_report"), "place_and_route": hw.get("place_and_route"),
        "training": train, "m4": m4, "clock_mhz": CLOCK_MHZ, "m4_clock_mhz": M4_CLOCK_MHZ,
        "clock_note": "24 MHz = the UP5K's 48 MHz oscillator / 2; place_and_route gives nextpnr-ice40's fmax. "
                      "The M4 figure assumes 1 instruction per cycle at 25 MHz (optimistic for the M4).",
        "step_includes": "RTL: every bus cycle of q+1 evaluates (GEN, deltas, forward, logits read-out) and the "
                         "q-seed update; the cross-entropy of the logits is the firmware's (C). M4: every "
                         "instruction but the UART polling, cross-entropy (software double) included.",
        "goals": {
            "rtl_bit_exact": (int(bool(exact.get("all_exact")) and enough) if "counts" in exact else None),
            "rtl_forward_cases": n_exact, "rtl_generator_draws": n_draw,
            "rtl_test_accuracy": train.get("test_accuracy"),
            "rtl_ice40_luts": ice.get("luts"), "rtl_ice40_ffs": ice.get("ffs"), "rtl_ice40_bram": ice.get("bram"),
            "rtl_ice40_dsp": ice.get("dsp"),
            "rtl_fmax_mhz": (hw.get("place_and_route") or {}).get("fmax_mhz"),
            "rtl_forward_cycles": cyc.get("forward_pass"), "rtl_step_cycles": step,
            "rtl_steps_per_s_at_clock": rtl_sps, "m4_instructions_per_step": m4_ipstep,
            "m4_steps_per_s_at_25mhz": m4_sps, "rtl_speedup_vs_m4": (rtl_sps / m4_sps if rtl_sps and m4_sps else None),
        },
    }


def plot(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = result["goals"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].bar(["RTL @ 24 MHz", "Cortex-M4 @ 25 MHz\n(QEMU instr., CPI 1)"],
              [g.get("rtl_steps_per_s_at_clock") or 0, g.get("m4_steps_per_s_at_25mhz") or 0])
    ax[0].set_ylabel("training steps per second")
    ax[0].set_title(f"{RECIPE}: one RGE (q=10, batch 64) + seed-SGD step")
    ice = result.get("ice40") or {}
    caps = {"LUT4": 5280, "FF": 5280, "EBR": 30, "DSP": 8}
    used = {"LUT4": ice.get("luts", 0), "FF": ice.get("ffs", 0), "EBR": ice.get("bram", 0), "DSP": ice.get("dsp", 0)}
    ax[1].bar(list(caps), [100 * used[k] / caps[k] for k in caps])
    ax[1].set_ylabel("% of an iCE40 UP5K")
    ax[1].set_title("yosys synth_ice40")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
