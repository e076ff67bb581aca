"""pytest fixtures for code that talks to an edgezo device (registered as the ``edgezo`` pytest11 plugin).

Fixtures (each hands back a connected :class:`edgezo.host.link.DeviceLink`
and closes it and its device afterwards):

* ``edgezo_device(profile="cortex-m4-256k", firmware="sim")`` - a factory:
  ``firmware="sim"`` serves the Python simulator of ``profile`` from a thread;
  ``"host"`` starts the C firmware built with gcc (skips the test with the
  reason when gcc/make is missing); ``"qemu"`` runs it on a Cortex-M4 under
  QEMU (skips without arm-none-eabi-gcc / qemu-system-arm); ``"rtl"`` runs
  the firmware driving the Verilator model of the int8 accelerator (profile
  fpga-int8, docs/rtl.md; skips without verilator).
* ``edgezo_sim_link`` - a link to a Python simulator of cortex-m4-256k.
* ``edgezo_faulty_device(corrupt=0.01, drop=0.03, reset_every=250, seed=0,
  firmware="sim", timeout=0.05)`` - a factory of links whose port corrupts
  bytes, drops frames and resets the device (:mod:`edgezo.host.faults`).

Example::

    def test_hello(edgezo_device):
        link = edgezo_device("cortex-m4-256k")
        assert link.hello()["version"] == 1
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

__all__ = ["edgezo_device", "edgezo_sim_link", "edgezo_faulty_device"]


def _start(firmware: str, profile: str):
    """A started device of kind ``firmware`` (edgezo.devices); skips the test when its toolchain is missing."""
    from edgezo.devices import DeviceUnavailable, open_device

    try:
        return open_device(firmware, profile)
    except DeviceUnavailable as err:
        pytest.skip(str(err))


@contextmanager
def _devices():
    """``open(firmware, profile, connect) -> link``: start a device, connect; everything is closed at exit."""
    opened = []

    def open_link(firmware: str, profile: str, connect):
        dev = _start(firmware, profile)
        try:
            link = connect(dev.port)
        except BaseException:
            dev.close()
            raise
        opened.append((dev, link))
        return link

    try:
        yield open_link
    finally:
        for dev, link in reversed(opened):
            link.close()
            dev.close()


@pytest.fixture
def edgezo_device():
    """Factory ``(profile="cortex-m4-256k", firmware="sim"|"host"|"qemu"|"rtl", timeout=5.0) -> DeviceLink``."""
    from edgezo.host.link import DeviceLink

    with _devices() as open_link:
        yield lambda profile="cortex-m4-256k", firmware="sim", timeout=5.0: open_link(
            firmware, profile, lambda port: DeviceLink(port, timeout=timeout))


@pytest.fixture
def edgezo_sim_link(edgezo_device):
    """A link to a Python simulator of cortex-m4-256k."""
    return edgezo_device("cortex-m4-256k", "sim")


@pytest.fixture
def edgezo_faulty_device():
    """Factory of links through a fault-injecting port (byte corruption, dropped frames, device resets)."""
    from edgezo.host.faults import faulty_link

    def make(open_link, profile: str = "cortex-m4-256k", firmware: str = "sim", *, corrupt: float = 0.01,
             drop: float = 0.03, reset_every: int = 250, seed: int = 0, timeout: float = 0.05):
        return open_link(firmware, profile, lambda port: faulty_link(
            port, corrupt=corrupt, drop=drop, reset_every=reset_every, seed=seed, timeout=timeout))

    with _devices() as open_link:
        yield lambda *args, **kwargs: make(open_link, *args, **kwargs)
