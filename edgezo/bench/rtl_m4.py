"""Instructions per training step of the Cortex-M4 firmware under QEMU, for ``edgezo bench rtl``.

QEMU 7.2's ``-singlestep`` makes every translation block one guest
instruction, and ``-d exec,nochain`` logs every block executed, so the number
of ``Trace`` lines is the number of instructions executed. ``-dfilter`` drops
the UART polling loops (``main``, ``uart_send``: waiting for the host), so
what is counted is the firmware's own work: frame handling, forward passes
and loss (float32 MACs, double-precision cross-entropy in software on the
M4F), perturbations and updates. The log goes through a FIFO to a counting
thread (no file). One step = the difference between a run with the model and
batch loaded and the same run followed by one RGE + seed-SGD step.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

__all__ = ["m4_instructions_per_step"]


def _ranges(elf: Path) -> str:
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    sym = {p[3]: (int(p[0], 16), int(p[1], 16)) for p in (line.split() for line in nm.splitlines()) if len(p) == 4}
    skip = sorted(sym[name] for name in ("main", "uart_send"))
    out, lo = [], 0
    for start, size in skip:
        out.append(f"0x{lo:x}..0x{start - 1:x}")
        lo = start + size
    out.append(f"0x{lo:x}..0xffffffff")
    return ",".join(out)


def _count(fifo: Path, box: list) -> None:
    n = 0
    with open(fifo, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"Trace")
    box.append(n)


def _run(elf: Path, ranges: str, steps: int, workload) -> int:
    from ..host.link import DeviceLink
    from ..targets import qemu

    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "exec.log"
        os.mkfifo(fifo)
        box: list[int] = []
        reader = threading.Thread(target=_count, args=(fifo, box), daemon=True)
        reader.start()
        cmd = [qemu.QEMU, "-M", "mps2-an386", "-nographic", "-monitor", "none", "-kernel", str(elf), "-serial", "pty",
               "-singlestep", "-d", "exec,nochain", "-dfilter", ranges, "-D", str(fifo)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            port = None
            for line in proc.stdout:
                m = re.search(r"(/dev/pts/\d+)", line)
                if m:
                    port = m.group(1)
                    break
            if port is None:
                raise RuntimeError("qemu printed no pty")
            link = DeviceLink(port, timeout=120)
            try:
                workload(link, steps)
            finally:
                link.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        reader.join(timeout=120)
    return box[0]


def m4_instructions_per_step(workload) -> dict:
    """``workload(link, steps)`` loads a model and batch and runs ``steps`` steps; returns the instruction counts."""
    from ..targets import qemu

    reason = qemu.missing("qemu")
    if reason:
        return {"skipped": reason}
    elf = qemu.build("qemu")
    ranges = _ranges(elf)
    setup = _run(elf, ranges, 0, workload)
    one = _run(elf, ranges, 1, workload)
    return {"instructions_setup": setup, "instructions_per_step": one - setup, "qemu": "-singlestep -d exec,nochain",
            "excluded": "main, uart_send (UART polling)"}
