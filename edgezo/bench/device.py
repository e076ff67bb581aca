"""``edgezo bench device``: bytes on the wire, steps per second and device RAM of on-device ZO training.

Runs the digits TT-MLP (1,722 parameters) with forward-difference RGE (q
seeds drawn as a seed chain) and seed-SGD on the Python device simulator over
a pty and counts the link's bytes per message type:

* bytes per query = (evaluate + update bytes, both directions) / queries,
  with the compact messages (evaluate-chain: seed_0, n, pattern; update-last:
  step, lr, coefficients; docs/protocol.md) and, for comparison, with the
  explicit ones (``bytes_per_query_explicit``);
* the batch upload is reported separately (a device that senses its own data
  does not need it): as u8 (load-batch-u8, digits pixels are k/16) and as
  float32;
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
  host from θ read back. ``qemu.step_profile`` times, on that device, one
  batch upload (float32 and u8) and one step's evaluate and update. ``--quick``
  stops after a few steps (a smoke run, not the goal); without arm-none-eabi-gcc / qemu-system-arm it is None with the
  reason in ``qemu``. ``firmware_sram_bytes`` is arm-none-eabi-size's
  data + bss of the ELF (stack included).
"""

from __future__ import annotations

import time

import numpy as np
import torch

CONTROL = ("evaluate", "update", "evaluate_chain", "update_last")
BATCH = ("load_batch", "load_batch_u8")


def _run(link, model, x, y, steps, q, batch, lr, frame_bytes=None, checkpoint_every=20, compact=True):
    from ..estimators.rge import RGE
    from ..host.device_oracle import DeviceOracle
    from ..losses import cross_entropy
    from ..optim import seed_sgd_step

    oracle = DeviceOracle(model, cross_entropy, link=link, max_batch=batch, groups="per_tensor",
                          checkpoint_every=checkpoint_every, frame_bytes=frame_bytes, compact=compact)
    est = RGE(q=q, mu=0.01, difference="forward", seed_chain=True)
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
        oracle, wall, delta = _run(link, model(), x, y, steps, q, batch, 0.025)
        sram = oracle.info["sram_bytes"]
        ram = oracle.device_ram
        theta = oracle.get_flat()
        link.close()
    with SimulatorThread("cortex-m4-256k") as sim:  # the same run with the explicit messages, for comparison
        link = DeviceLink(sim.port)
        oracle_x, _, delta_x = _run(link, model(), x, y, steps, q, batch, 0.025, compact=False)
        same_theta = bool(torch.equal(theta, oracle_x.get_flat()))
        link.close()
    d = oracle.dim
    control = sum(v[1] + v[2] for k, v in delta.items() if k in CONTROL)
    control_x = sum(v[1] + v[2] for k, v in delta_x.items() if k in CONTROL)
    batch_bytes = sum(v[1] + v[2] for k, v in delta.items() if k in BATCH)
    batch_bytes_f32 = sum(v[1] + v[2] for k, v in delta_x.items() if k in BATCH)
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
            o, _, _ = _run(lk, tiny(), x, y, fsteps, 4, 4, 0.025, frame_bytes=64, checkpoint_every=4)
            thetas.append(o.get_flat().numpy().view(np.uint32).copy())
            lk.close()
    identical = int(np.array_equal(thetas[0], thetas[1]))

    qemu_result = _qemu_training(quick)
    return {
        "qemu": qemu_result,
        "model": "digits TT-MLP 64-512-10 (1,722 params)", "steps": steps, "q": q, "batch": batch,
        "bytes_per_step_control": per_step, "bytes_per_step_with_batch": per_step_total,
        "bytes_per_query_explicit": control_x / queries, "bytes_per_step_control_explicit": control_x / steps,
        "batch_bytes_per_step_u8": batch_bytes / steps, "batch_bytes_per_step_f32": batch_bytes_f32 / steps,
        "compact_equals_explicit_theta": same_theta, "by_type_explicit": delta_x,
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
    from ..host.device_oracle import device_factory
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
            profile = _step_profile(link, recipe)
            t0 = time.perf_counter()
            trainer = build_trainer(recipe, data_path=None, out_dir=tmp, progress=False,
                                    oracle_factory=device_factory(link))
            metrics = trainer.run()
            info = trainer.oracle.info
        finally:
            link.close()
    wall = time.perf_counter() - t0
    steps = metrics.get("steps")
    return {"test_accuracy": metrics.get("test_accuracy"), "steps": steps, "wall_s": wall,
            "s_per_step": wall / steps if steps else None, "step_profile": profile, "device": info,
            "device_ram_bytes": trainer.oracle.device_ram, "firmware_sram_bytes": size["sram"],
            "firmware_flash_bytes": size["flash"], "quick": quick, "recipe": recipe.name,
            "estimator": dict(recipe.config.get("estimator", {})),
            "optimizer": dict(recipe.config.get("optimizer", {})),
            "train": dict(recipe.config.get("train", {}))}


def _step_profile(link, recipe, repeats: int = 3) -> dict:
    """Seconds on the device for one batch upload (float32 / u8) and one step's evaluate and update."""
    from ..data import load_digits
    from ..estimators.rge import RGE
    from ..host.device_oracle import DeviceOracle
    from ..losses import cross_entropy
    from ..models.ttm import TTMLP
    from ..optim import seed_sgd_step

    est_cfg = recipe.config["estimator"]
    bs = int(recipe.config["train"]["batch_size"])
    d = load_digits()
    torch.manual_seed(0)
    model = TTMLP(recipe.config["model"]["layer_specs"])
    est = RGE(q=est_cfg["q"], mu=est_cfg["mu"], difference=est_cfg["difference"],
              seed_chain=est_cfg.get("seed_chain", False))
    out = {}
    for compact in (False, True):
        oracle = DeviceOracle(model, cross_entropy, link=link, max_batch=bs, compact=compact, checkpoint_every=0)
        up, ev, upd = [], [], []
        for r in range(repeats):
            batch = (d.x_train[r * bs:(r + 1) * bs], d.y_train[r * bs:(r + 1) * bs])
            t = time.perf_counter()
            oracle.upload(batch)
            up.append(time.perf_counter() - t)
            t = time.perf_counter()
            e = est.estimate(oracle, batch, step=r, seed=0)
            ev.append(time.perf_counter() - t)
            t = time.perf_counter()
            seed_sgd_step(oracle, e, 0.0)
            upd.append(time.perf_counter() - t)
        key = "compact" if compact else "explicit"
        out[f"batch_upload_s_{'u8' if compact else 'f32'}"] = float(np.median(up))
        out[f"evaluate_s_{key}"] = float(np.median(ev))
        out[f"update_s_{key}"] = float(np.median(upd))
    return out


def plot(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["control\n(compact)", "control\n(explicit)", "+ batch u8", "dense\ngradient"]
    vals = [result["bytes_per_step_control"], result["bytes_per_step_control_explicit"],
            result["bytes_per_step_with_batch"], result["dense_gradient_bytes"]]
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
