"""One ``make`` at a time per build directory, across processes.

The firmware and RTL builds share a cache directory (``~/.cache/edgezo/firmware`` unless
``EDGEZO_FIRMWARE_BUILD`` says otherwise). Two processes building there at once (two test
runs, a test run and a user's session) could link into an executable the other is running
("Text file busy") or link a half-written object. ``make_locked`` holds an exclusive
``fcntl.flock`` on ``<dir>/.build.lock`` for the whole ``make`` call; the Makefiles also link
to a temporary name and rename, so a rebuilt binary never replaces a running one in place.
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path


def make_locked(args: list[str], build: Path) -> subprocess.CompletedProcess:
    """``subprocess.run(args)`` (captured text output) while holding ``build``'s build lock."""
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return subprocess.run(args, capture_output=True, text=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
