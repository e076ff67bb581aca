"""Devices that speak the wire protocol (docs/protocol.md), opened by kind.

``open_device(kind, profile)`` starts a device and returns a handle with a
``port`` (a pyserial URL or pty path for :class:`edgezo.host.link.DeviceLink`)
and ``close()``. Kinds come from the ``edgezo.devices`` entry-point group:
``sim`` (the Python simulator of a target profile, ``edgezo.targets.sim``),
``host`` (the C firmware built with gcc) and ``qemu`` (the firmware on a
Cortex-M4 under qemu-system-arm), both in ``edgezo.targets.qemu``. Host-side
code opens devices through this registry, so ``host/`` and ``targets/``
import nothing of each other but :mod:`edgezo.protocol`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .registry import Registry

__all__ = ["DEVICES", "DeviceUnavailable", "open_device"]


class DeviceUnavailable(RuntimeError):
    """The device kind needs a tool that is missing here (the message names it and how to install it)."""


DEVICES: Registry[Callable[[str], Any]] = Registry("device", group="edgezo.devices", packaged=True)


def open_device(kind: str, profile: str = "cortex-m4-256k") -> Any:
    """Start a ``kind`` device for ``profile``; raises :class:`DeviceUnavailable` when its toolchain is missing."""
    return DEVICES.get(kind)(profile)
