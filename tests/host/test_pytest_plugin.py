"""The edgezo pytest plugin's fixtures, used from a generated test file (pytester)."""

from __future__ import annotations

pytest_plugins = ["pytester"]

USER_TESTS = '''
import struct
import pytest
from edgezo import protocol as P
from edgezo.host.link import DeviceError

def test_sim_link(edgezo_sim_link):
    info = edgezo_sim_link.hello()
    assert info["version"] == 1 and info["name"] == "sim:cortex-m4-256k"

def test_profile(edgezo_device):
    assert edgezo_device("cortex-m7-512k").hello()["sram_bytes"] == 512 * 1024

def test_host_firmware(edgezo_device):
    assert edgezo_device(firmware="host").hello()["name"] == "fw-host:cortex-m4-256k"

def test_faults_are_survived(edgezo_faulty_device):
    link = edgezo_faulty_device(corrupt=0.02, drop=0.1, reset_every=0, seed=1)
    spec = P.ModelSpec((P.LayerSpec("dense", (2,), (3,), (), True, "identity"),), 4)
    for _ in range(5):
        assert struct.unpack("<II", link.request(P.SET_MODEL, spec.encode()))[0] == 9
    assert link.port.stats["corrupted"] + link.port.stats["dropped_frames"] > 0
'''


def test_fixtures_in_a_user_test_file(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    # Installed, the plugin is auto-loaded through its pytest11 entry point; naming it
    # again with -p would register it twice, so -p only where the entry point is absent.
    from importlib.metadata import entry_points

    installed = any(ep.value == "edgezo.host.pytest_plugin" for ep in entry_points(group="pytest11"))
    load = () if installed else ("-p", "edgezo.host.pytest_plugin")
    result = pytester.runpytest_subprocess(*load, "-p", "no:cacheprovider", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 4 and outcomes.get("passed", 0) >= 3
