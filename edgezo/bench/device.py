"""``edgezo bench device``: bytes on the wire, steps per second and device RAM of on-device ZO training.

Runs the digits TT-MLP (1,722 parameters) with forward-difference RGE (q
seeds) and seed-SGD on the Python device simulator over a pty and counts the
link's bytes per message type:

* bytes per query = (evaluate + update bytes, both directions) / queries;
  the batch upload is reported separately (a device that senses its own data
  does not need it);
* wire_ratio = dense float32 gradient bytes (4 d per step) / our control
  bytes per step; also vs sending dense weights;
* steps per second over the pty (unthrottled, measured) and at 115200 baud
  (10 bits per byte, computed from the bytes of a step: the link is the
  bottleneck there);
* device RAM (the protocol's memory model) vs the profile's SRAM;
* fault_identical: a short run through 1 % byte corruption, 3 % dropped frames
  and resets, compared bit for bit with the clean run.

* qemu_test_accuracy: the recipe digits-tt-device trained on the C firmware
  built for a Cortex-M4F and run under QEMU (mps2-an386), the host only
  sending seeds, coefficients and batches; the test accuracy is computed on the
  host from θ read back. ``--quick`` stops after a few steps (a smoke run, not
  the goal); without arm-none-eabi-gcc / qemu-system-arm it is None with the
  reason in ``qemu``. ``firmware_sram_bytes`` is arm-none-eabi-size's
  data + bss of the ELF (stack included).
"""

from __future__ import annotations

import time

import numpy as np
import torch


def _run(link, model, x, y, steps, q, batch, lr, frame_bytes=None, checkpoint_every=20):
    from ..estimators.rge import RGE
    from ..host.device_oracle import DeviceOracle
    from ..losses import cross_entropy
    from ..optim import seed_sgd_step

    oracle = DeviceOracle(model, cross_entropy, link=link, max_batch=batch, groups="per_tensor",
                          checkpoint_every=checkpoint_every, frame_bytes=frame_bytes)
    est = RGE(q=q, mu=0.01, difference="forward")
    before = {k: list(v) for k, v in link.stats.by_type.items()}
    t0 = time.perf_counter()
    for step in range(steps):
        lo = (step * batch) % (x.shape[0] - batch)
        seed_sgd_step(oracle, est.estimate(oracle, (x[lo:lo + batch], y[lo:lo + batch]), step=step, seed=0), lr)
    wall = time.perf_counter() - t0
    delta = {k: [a - b for a, b in zip(v, before.get(k, [0, 0, 0]))] for k, v in link.stats.by_type.items()}
    return oracle, wall, delta


def run(args) -> dict:
    from ..data import load_digits
    from ..host.faults import faulty_link
    from ..host.link import DeviceLink
    from ..models.ttm import TTMLP
    from ..targets.sim import SimulatorThread

    quick = bool(getattr(args, "quick", False))
    steps, q, batch = (10 if quick else 40), 10, 64
    data = load_digits()
    x, y = data.x_train, data.y_train

    def model():
        torch.manual_seed(0)
        return TTMLP([[[4, 4, 4], [8, 8, 8], 4], [[8, 8, 8], [1, 5, 2], 3]])

    with SimulatorThread("cortex-m4-256k") as sim:
        link = DeviceLink(sim.port)
        oracle, wall, delta = _run(link, model(), x, y, steps, q, batch, 0.05)
        sram = oracle.info["sram_bytes"]
        ram = oracle.device_ram
        link.close()
    d = oracle.dim
    control = sum(v[1] + v[2] for k, v in delta.items() if k in ("evaluate", "update"))
    batch_bytes = sum(v[1] + v[2] for k, v in delta.items() if k == "load_batch")
    queries = steps * (q + 1)
    per_step = control / steps
    per_step_total = (control + batch_bytes) / steps
    steps_per_s = steps / wall
    steps_per_s_115200 = 115200 / 10 / per_step_total

    # faults: bit-identical?
    tiny = lambda: (torch.manual_seed(0), TTMLP([[[4, 4, 4], [4, 4, 2], 3], [[4, 4, 2], [1, 5, 2], 2]]))[1]
    fsteps = 4 if quick else 10
    thetas = []
    for faulty in (False, True):
        with SimulatorThread("cortex-m4-256k") as sim:
            lk = (faulty_link(sim.port, corrupt=0.01, drop=0.03, reset_every=250, seed=3, timeout=0.04)
                  if faulty else DeviceLink(sim.port))
            o, _, _ = _run(lk, tiny(), x, y, fsteps, 4, 4, 0.05, frame_bytes=64, checkpoint_every=4)
            thetas.append(o.get_flat().numpy().view(np.uint32).copy())
            lk.close()
    identical = int(np.array_equal(thetas[0], thetas[1]))

    qemu_result = _qemu_training(quick)
    return {
        "qemu": qemu_result,
        "model": "digits TT-MLP 64-512-10 (1,722 params)", "steps": steps, "q": q, "batch": batch,
        "bytes_per_step_control": per_step, "bytes_per_step_with_batch": per_step_total,
        "dense_gradient_bytes": 4 * d, "dense_weights_bytes": 4 * d,
        "by_type": delta, "steps_per_s_pty": steps_per_s, "steps_per_s_115200_computed": steps_per_s_115200,
        "device_ram_bytes": ram, "sram_bytes": sram,
        "goals": {
            "bytes_per_query": control / queries,
            "wire_ratio": 4 * d / per_step,
            "qemu_test_accuracy": qemu_result.get("test_accuracy"),
            "device_ram_kb": ram / 1024,
            "fault_identical": identical,
        },
    }


def _qemu_training(quick: bool) -> dict:
    """Train digits-tt-device on the Cortex-M4 firmware under QEMU; {'skipped': reason} without the toolchain."""
    from ..commands.device import device_factory
    from ..host.link import DeviceLink
    from ..recipes import apply_overrides, build_trainer, get_recipe
    from ..targets import qemu

    reason = qemu.missing("qemu")
    if reason:
        return {"skipped": reason, "test_accuracy": None}
    import tempfile

    recipe = get_recipe("digits-tt-device")
    if quick:
        recipe = apply_overrides(recipe, {"train.max_steps": 10})
    elf = qemu.build("qemu")
    size = qemu.elf_size(elf)
    t0 = time.perf_counter()
    with qemu.FirmwareDevice("qemu", binary=elf) as dev, tempfile.TemporaryDirectory() as tmp:
        link = DeviceLink(dev.port, timeout=30)
        try:
            trainer = build_trainer(recipe, data_path=None, out_dir=tmp, progress=False,
                                    oracle_factory=device_factory(link))
            metrics = trainer.run()
            info = trainer.oracle.info
        finally:
            link.close()
    return {"test_accuracy": metrics.get("test_accuracy"), "steps": metrics.get("steps"),
            "wall_s": time.perf_counter() - t0, "device": info, "firmware_sram_bytes": size["sram"],
            "firmware_flash_bytes": size["flash"], "quick": quick, "recipe": recipe.name}


def plot(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["ours (control)", "ours + batch", "dense gradient"]
    vals = [result["bytes_per_step_control"], result["bytes_per_step_with_batch"], result["dense_gradient_bytes"]]
    ax[0].bar(labels, vals)
    ax[0].set_ylabel("bytes per step")
    ax[0].set_yscale("log")
    ax[0].set_title("bytes on the wire per step")
    ax[1].bar(["device RAM", "SRAM budget"], [result["device_ram_bytes"] / 1024, result["sram_bytes"] / 1024])
    ax[1].set_ylabel("KiB")
    ax[1].set_title("device memory")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
