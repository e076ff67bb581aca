"""Build and run the C reference firmware (targets/firmware/): on the host, or on a Cortex-M4 under QEMU.

* ``build("host")`` runs ``make host`` (gcc, ``-std=c99 -O2 -ffp-contract=off``)
  and returns the executable; ``build("qemu")`` runs ``make m4``
  (arm-none-eabi-gcc for a Cortex-M4F, linked for QEMU's ``mps2-an386``) and
  returns the ELF. Builds go to ``$EDGEZO_FIRMWARE_BUILD`` (default
  ``~/.cache/edgezo/firmware``) so an installed package stays read-only.
* :class:`FirmwareDevice` starts one and exposes ``.port``, a pty path for
  :class:`edgezo.host.link.DeviceLink`: the host build opens the pty itself and
  prints ``PORT /dev/pts/N``; QEMU is started as
  ``qemu-system-arm -M mps2-an386 -nographic -monitor none -kernel fw.elf -serial pty``
  and its ``char device redirected to /dev/pts/N`` line is parsed.
* :func:`missing` says why a kind cannot run here (no gcc, no
  arm-none-eabi-gcc, no qemu-system-arm, no verilator), for CLI errors and test skips.
* ``"rtl"``: the same protocol handling driving the Verilator model of the
  int8 accelerator in targets/rtl/ (:mod:`edgezo.targets.rtl.build`, docs/rtl.md).
* :func:`elf_size` reads ``arm-none-eabi-size``: ``text`` (flash) and
  ``data + bss`` (SRAM, the stack included; the linker script caps it at the
  cortex-m4-256k profile's 256 KiB).

``python -m edgezo.targets.qemu --firmware host|qemu`` builds, starts, prints
``PORT /dev/pts/N`` and serves until killed (``edgezo device sim --firmware``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from edgezo.errors import ConfigError, EdgezoError

__all__ = ["FIRMWARE_DIR", "missing", "build", "FirmwareDevice", "elf_size", "main"]

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
KINDS = ("host", "qemu", "rtl")
QEMU = "qemu-system-arm"
ARM_CC = "arm-none-eabi-gcc"
INSTALL_HINT = "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


class FirmwareError(EdgezoError, RuntimeError):
    """The firmware could not be built or started (the message says what is missing)."""


def _tools(kind: str) -> list[str]:
    if kind == "host":
        return ["make", os.environ.get("CC", "gcc")]
    if kind == "qemu":
        return ["make", ARM_CC, "arm-none-eabi-size", QEMU]
    if kind == "rtl":  # the protocol code driving the Verilator model of targets/rtl (docs/rtl.md)
        return ["make", os.environ.get("CC", "gcc"), "g++", "verilator"]
    raise ConfigError(f"firmware kind {kind!r}: use one of {KINDS}")


def missing(kind: str) -> str | None:
    """None when ``kind`` can be built and run here, else the reason (the missing tools)."""
    gone = [t for t in _tools(kind) if shutil.which(t) is None]
    if not gone:
        return None
    hint = {"host": "install gcc and make", "rtl": "apt-get install -y verilator g++"}.get(kind, INSTALL_HINT)
    return f"firmware {kind} needs {', '.join(gone)} (not on PATH): {hint}"


def open_firmware(kind: str, profile: str = "cortex-m4-256k") -> FirmwareDevice:
    """The ``edgezo.devices`` opener of the C firmware (``host``: gcc build; ``qemu``: Cortex-M4 under QEMU)."""
    from edgezo.devices import DeviceUnavailable

    reason = missing(kind)
    if reason:
        raise DeviceUnavailable(reason)
    own = "fpga-int8" if kind == "rtl" else "cortex-m4-256k"
    if profile not in (own, "cortex-m4-256k"):  # the opener's default profile stands for "the firmware's own"
        raise ConfigError(f"the {kind} firmware is built for {own}, not {profile!r}; use the sim device")
    return FirmwareDevice(kind)


def open_host(profile: str = "cortex-m4-256k") -> FirmwareDevice:
    """``edgezo.devices`` entry ``host``: the firmware built for this machine with gcc."""
    return open_firmware("host", profile)


def open_rtl(profile: str = "fpga-int8") -> FirmwareDevice:
    """``edgezo.devices`` entry ``rtl``: the protocol code driving the Verilator model of targets/rtl."""
    return open_firmware("rtl", profile)


def open_qemu(profile: str = "cortex-m4-256k") -> FirmwareDevice:
    """``edgezo.devices`` entry ``qemu``: the firmware on a Cortex-M4 under qemu-system-arm."""
    return open_firmware("qemu", profile)


def build_dir() -> Path:
    return Path(os.environ.get("EDGEZO_FIRMWARE_BUILD", Path.home() / ".cache" / "edgezo" / "firmware"))


def build(kind: str, out: str | os.PathLike | None = None) -> Path:
    """Build the host executable or the Cortex-M4 ELF (make is incremental); return its path."""
    reason = missing(kind)
    if reason:
        raise FirmwareError(reason)
    if kind == "rtl":
        from .rtl import build as rtl_build

        try:
            return rtl_build.build("fw", None if out is None else Path(out) / "rtl")
        except rtl_build.RtlBuildError as exc:
            raise FirmwareError(str(exc)) from None
    from .build_lock import make_locked

    out = Path(out) if out is not None else build_dir()
    target = "host" if kind == "host" else "m4"
    proc = make_locked(["make", "-s", "-C", str(FIRMWARE_DIR), f"BUILD={out.resolve()}", target], out)
    if proc.returncode:
        raise FirmwareError(f"make {target} failed:\n{proc.stdout}{proc.stderr}")
    return out / ("host/edgezo-fw" if kind == "host" else "m4/edgezo-fw.elf")


def elf_size(elf: str | os.PathLike) -> dict[str, int]:
    """``arm-none-eabi-size`` of the ELF: text, data, bss, flash (text + data), sram (data + bss)."""
    lines = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    text, data, bss = (int(v) for v in lines[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "sram": data + bss}


_PTY = re.compile(r"(/dev/pts/\d+)")


class FirmwareDevice:
    """A running firmware (``"host"`` or ``"qemu"``) whose serial port is the pty at ``.port``."""

    def __init__(self, kind: str = "host", *, binary: str | os.PathLike | None = None, startup_timeout: float = 30.0):
        self.kind = kind
        self.binary = Path(binary) if binary else build(kind)
        if kind in ("host", "rtl"):
            cmd = [str(self.binary)]
        else:
            cmd = [QEMU, "-M", "mps2-an386", "-nographic", "-monitor", "none", "-kernel", str(self.binary),
                   "-serial", "pty"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True)
        self.port = self._wait_port(startup_timeout, cmd)
        # keep draining the process's output so it never blocks on a full pipe
        self._drain = threading.Thread(target=self._consume, daemon=True)
        self._drain.start()

    def _wait_port(self, timeout: float, cmd) -> str:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = _PTY.search(line)
            if m and ("PORT" in line or "redirected" in line):
                return m.group(1)
        self.close()
        raise FirmwareError(f"{' '.join(cmd)} printed no pty path:\n{''.join(seen)}")

    def _consume(self) -> None:
        try:
            for _ in self.proc.stdout:
                pass
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgezo.targets.qemu", description=__doc__.splitlines()[0])
    ap.add_argument("--firmware", choices=KINDS, default="host")
    args = ap.parse_args(argv)
    try:
        dev = FirmwareDevice(args.firmware)
    except FirmwareError as exc:
        print(f"edgezo: error: {exc}", file=sys.stderr)
        return 2
    print(f"PORT {dev.port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `finally` stops the firmware process too
    try:
        code = dev.proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        dev.close()
    print(f"edgezo: error: the {args.firmware} firmware process stopped (exit status {code}); "
          "the device is gone", file=sys.stderr)
    return code if code > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
