"""``edgezo device``: serve a simulated device, train a recipe on a device.

    edgezo device sim [--target PROFILE | --firmware host|qemu]
    edgezo device train --port URL --recipe R [--out DIR] [--epochs N] [--max-steps N] [--set k=v ...]
    edgezo device train --sim PROFILE --recipe R          (an in-process simulator)
    edgezo device train --firmware host|qemu|rtl --recipe R
        (the C firmware: gcc build, Cortex-M4 on QEMU, or driving the Verilator model of the RTL accelerator)

The device holds the weights and runs the forward passes and the seed-SGD
update; the host sends seeds, scales and batches (docs/protocol.md). A device
trains with the rge estimator and the seed-sgd optimizer only; other recipes
are refused with the reason.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edgezo.io import out_dir


def register(subparsers) -> None:
    p = subparsers.add_parser("device", help="simulate a microcontroller / train on a device over a serial link")
    sub = p.add_subparsers(dest="device_cmd", required=True)
    s = sub.add_parser("sim", help="start a simulated device on a pty and print its port")
    s.add_argument("--target", default="cortex-m4-256k", help="target profile (Python simulator)")
    s.add_argument("--firmware", choices=("host", "qemu", "rtl"),
                   help="run the C firmware instead: built for the host (gcc), for Cortex-M4 under QEMU, or "
                        "driving the RTL int8 accelerator (Verilator; docs/rtl.md)")
    s.set_defaults(func=cmd_sim)
    t = sub.add_parser("train", help="train a recipe on a device (rge + seed-sgd)")
    t.add_argument("--port", help="pyserial port URL: /dev/ttyUSB0, a pty path, socket://HOST:PORT, loop://")
    t.add_argument("--sim", metavar="PROFILE", help="train on an in-process Python simulator of PROFILE instead")
    t.add_argument("--firmware", choices=("host", "qemu", "rtl"),
                   help="train on the C firmware started here: built for the host (gcc), a Cortex-M4 under QEMU, "
                        "or the RTL int8 accelerator (Verilator; dense MLP recipes such as digits-mlp-device)")
    t.add_argument("--recipe", required=True, help="recipe name or .toml path (rge estimator, seed-sgd optimizer)")
    t.add_argument("--out", help="output directory (default runs/device-<recipe>)")
    t.add_argument("--data", help="data path for recipes that need one")
    t.add_argument("--epochs", type=int)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe override, e.g. optimizer.lr=0.05")
    t.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each response (default 5)")
    t.add_argument("--checkpoint-every", type=int, default=20, help="updates between host-side checkpoints")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)


def cmd_sim(args) -> int:
    if args.firmware:
        from ..targets import qemu
        from . import CLIError

        reason = qemu.missing(args.firmware)
        if reason:
            raise CLIError(reason)
        if args.target != "cortex-m4-256k":
            raise CLIError("the firmware is built for its own profile (cortex-m4-256k; rtl: fpga-int8); drop --target")
        return qemu.main(["--firmware", args.firmware])
    from ..targets.sim import main

    return main(["--target", args.target])


def cmd_train(args) -> int:
    from ..overrides import parse_set
    from ..recipes import apply_overrides, get_recipe
    from . import CLIError

    if sum(map(bool, (args.port, args.sim, args.firmware))) != 1:
        raise CLIError("give exactly one of --port URL (a device or `edgezo device sim`), --sim PROFILE or "
                       "--firmware host|qemu|rtl")
    recipe = get_recipe(args.recipe)
    overrides = parse_set(args.set or [])
    for flag, key in (("epochs", "train.epochs"), ("seed", "train.seed"), ("max_steps", "train.max_steps")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    recipe = apply_overrides(recipe, overrides)
    from ..host.device_oracle import check_device_recipe

    try:
        check_device_recipe(recipe)
    except ValueError as err:
        raise CLIError(str(err)) from None
    from ..host.link import DeviceError, LinkError

    try:
        metrics, oracle, wire_bytes, out = _train_on_device(args, recipe)
    except (LinkError, DeviceError) as err:  # no device at the port, or it stopped answering
        raise CLIError(f"device link: {err}") from None
    acc = metrics.get("test_accuracy")
    print(f"{recipe.name} on {oracle.info['name']}: test_accuracy {acc} · {wire_bytes:,} bytes on the wire · {out}")
    return 0


def _train_on_device(args, recipe):
    """Start or open the device, train the recipe on it, write metrics.json; closes what it opened."""
    from .. import io
    from ..host.device_oracle import device_factory
    from ..host.link import DeviceLink
    from ..recipes import build_trainer
    from ..targets.rtl.reference import device_predictor
    from . import CLIError

    sim = link = None
    if args.firmware:
        from ..targets import qemu

        reason = qemu.missing(args.firmware)
        if reason:
            raise CLIError(reason)
        try:
            sim = qemu.FirmwareDevice(args.firmware)
        except qemu.FirmwareError as exc:
            raise CLIError(str(exc)) from None
    elif args.sim:
        from ..targets.sim import SimulatorThread

        sim = SimulatorThread(args.sim)
    out = out_dir(args.out) if args.out else Path("runs") / f"device-{recipe.name}"
    try:
        link = DeviceLink(sim.port if sim is not None else args.port, timeout=args.timeout)
        trainer = build_trainer(recipe, data_path=args.data, out_dir=out, progress=not args.no_progress,
                                oracle_factory=device_factory(link, checkpoint_every=args.checkpoint_every,
                                                               predictor_for=device_predictor))
        oracle = trainer.oracle
        print(f"edgezo: training {recipe.name} on {oracle.info['name']} ({oracle.dim} parameters, device RAM "
              f"{oracle.device_ram:,} of {oracle.info['sram_bytes']:,} bytes) -> {out}", file=sys.stderr)
        t0 = time.perf_counter()
        metrics = trainer.run()
        metrics.update(status="completed", device=oracle.info, device_ram_bytes=oracle.device_ram,
                       wire=link.stats.as_dict(), device_resets=oracle.resets,
                       device_wall_s=time.perf_counter() - t0)
        io.write_json(out / "metrics.json", metrics)
    finally:
        if link is not None:
            link.close()
        if sim is not None:
            sim.close()
    return metrics, oracle, link.stats.bytes_sent + link.stats.bytes_received, out
