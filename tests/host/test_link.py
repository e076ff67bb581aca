"""Framing (COBS + CRC-16) and the request/response link over a pty and loop://."""

from __future__ import annotations

import binascii

import pytest
from cobs import cobs
from edgezo.host.link import DeviceError, DeviceLink, LinkError
from edgezo.targets.sim import SimulatorThread

from edgezo import protocol as P


def test_frame_roundtrip_and_no_zero_bytes():
    body = bytes(range(256)) * 2
    frame = P.encode_frame(P.EVALUATE, 0xBEEF, body)
    assert frame.endswith(b"\x00") and 0 not in frame[:-1]
    assert P.decode_frame(frame[:-1]) == (P.VERSION, P.EVALUATE, 0xBEEF, body)
    raw = cobs.decode(frame[:-1])
    assert int.from_bytes(raw[-2:], "little") == binascii.crc_hqx(raw[:-2], 0xFFFF)
    assert len(frame) <= P.wire_size(len(body))


def test_crc16_check_value():
    assert P.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


@pytest.mark.parametrize("pos", [0, 3, 10, 20])
def test_corrupt_frame_is_rejected(pos):
    frame = bytearray(P.encode_frame(P.HELLO, 7, b"abcdefghijklmnop")[:-1])
    frame[pos] ^= 0x5A
    with pytest.raises(P.FrameError):
        P.decode_frame(bytes(frame))


def test_max_body_fits_frame():
    for mf in (32, 64, 256, 1024):
        b = P.max_body(mf)
        assert P.wire_size(b) <= mf < P.wire_size(b + 2)


def test_scale_multipliers():
    assert P.scale_multipliers((0.0, 0.01, 0.01)) == (0.01, [0, 1, 1])
    assert P.scale_multipliers((0.01, -0.01)) == (0.01, [1, -1])
    with pytest.raises(ValueError, match="multiples"):
        P.scale_multipliers((0.01, 0.0137))


def test_hello_over_pty():
    with SimulatorThread("cortex-m4-256k") as sim, DeviceLink(sim.port) as link:
        info = link.hello()
        assert info["version"] == P.VERSION and info["max_frame_bytes"] == 256 and info["sram_bytes"] == 262144
        assert not info["model_loaded"]
        with pytest.raises(DeviceError, match="no_model"):
            link.request(P.READ_WEIGHTS, P.READ_REQ.pack(0, 1))
        with pytest.raises(DeviceError, match="unknown_type"):
            link.request(0x33)


def test_no_device_times_out_on_loop_url():
    # loop:// echoes our own request back: never a valid response
    with DeviceLink("loop://", timeout=0.05, retries=2) as link:
        with pytest.raises(LinkError, match="after 3 attempts"):
            link.hello()
        assert link.stats.retransmits == 2


def test_bad_port_has_clear_error():
    with pytest.raises(LinkError, match="cannot open port"):
        DeviceLink("/dev/does-not-exist-edgezo")
