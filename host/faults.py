"""A fault-injecting serial port wrapper: byte corruption, dropped frames, device resets.

``FaultyPort(port, corrupt=0.01, drop=0.02, reset_every=0, seed=0)`` wraps a
pyserial port (anything with ``write``/``read``/``in_waiting``/``close``):

* every byte written or read is flipped (XOR with a random non-zero byte)
  with probability ``corrupt``;
* every frame written (up to its 0x00 delimiter) is dropped whole with
  probability ``drop``, and so is every frame read;
* every ``reset_every``-th frame written is preceded by a RESET frame to the
  device (a watchdog reset: the device loses θ, the batch and its step).

The host link detects corruption (COBS + CRC-16) and drops (timeout) and
retransmits; the DeviceOracle sees a reset as "no model" and reloads its last
checkpoint (docs/protocol.md §5). ``stats`` counts what was injected.
"""

from __future__ import annotations

import random

from edgezo import protocol as P

from .link import DeviceLink

__all__ = ["FaultyPort", "faulty_link"]


class FaultyPort:
    def __init__(self, port, *, corrupt: float = 0.01, drop: float = 0.02, reset_every: int = 0, seed: int = 0):
        self.port = port
        self.corrupt, self.drop, self.reset_every = corrupt, drop, reset_every
        self.rng = random.Random(seed)
        self.stats = {"bytes": 0, "corrupted": 0, "dropped_frames": 0, "resets": 0, "frames_written": 0}
        self._out = bytearray()
        self._in = bytearray()
        self._in_ready = bytearray()

    @property
    def name(self):
        return getattr(self.port, "name", "faulty")

    @property
    def timeout(self):
        return self.port.timeout

    def _mangle(self, data: bytes) -> bytearray:
        out = bytearray(data)
        for i in range(len(out)):
            if self.rng.random() < self.corrupt:
                out[i] ^= self.rng.randrange(1, 256)
                self.stats["corrupted"] += 1
        self.stats["bytes"] += len(out)
        return out

    def write(self, data: bytes) -> int:
        self._out += data
        while True:
            i = self._out.find(0)
            if i < 0:
                break
            frame, self._out = bytes(self._out[:i + 1]), self._out[i + 1:]
            self.stats["frames_written"] += 1
            if self.reset_every and self.stats["frames_written"] % self.reset_every == 0:
                self.port.write(P.encode_frame(P.RESET, 0))
                self.stats["resets"] += 1
            if self.rng.random() < self.drop:
                self.stats["dropped_frames"] += 1
                self.stats["bytes"] += len(frame)
                continue
            self.port.write(bytes(self._mangle(frame)))
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self._in_ready) or self.port.in_waiting

    def read(self, size: int = 1) -> bytes:
        if not self._in_ready:
            data = self.port.read(size)
            for b in data:  # decide per received frame whether it is dropped
                self._in.append(b)
                if b == 0:
                    frame, self._in = bytes(self._in), bytearray()
                    if self.rng.random() < self.drop:
                        self.stats["dropped_frames"] += 1
                        self.stats["bytes"] += len(frame)
                    else:
                        self._in_ready += self._mangle(frame)
        out, self._in_ready = bytes(self._in_ready[:size]), self._in_ready[size:]
        return out

    def close(self) -> None:
        self.port.close()


def faulty_link(url: str, *, corrupt: float = 0.01, drop: float = 0.02, reset_every: int = 0, seed: int = 0,
                timeout: float = 0.3, retries: int = 50) -> DeviceLink:
    """A :class:`DeviceLink` on ``url`` through a :class:`FaultyPort`."""
    from .link import open_port

    port = FaultyPort(open_port(url), corrupt=corrupt, drop=drop, reset_every=reset_every, seed=seed)
    return DeviceLink(port, timeout=timeout, retries=retries)
