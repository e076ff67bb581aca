"""The host end of the device link: request/response over any pyserial port URL.

``DeviceLink(url)`` opens ``serial.serial_for_url(url)`` — a device node
(``/dev/ttyUSB0``), a pty (``/dev/pts/7``), ``socket://host:port``,
``loop://`` … — and sends requests with :meth:`DeviceLink.request`. Each
request gets a new 16-bit sequence number; when no valid response with that
number arrives within ``timeout`` seconds (corrupt frame, dropped frame) the
same frame is sent again, up to ``retries`` times. The device answers a
retransmission from its cache of the last response, so a request is executed
at most once (docs/protocol.md §4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import serial

from edgezo import protocol as P
from edgezo.errors import DeviceError, EdgezoError

__all__ = ["DeviceLink", "LinkError", "DeviceError", "DeviceReset", "LinkStats", "open_port"]


class LinkError(EdgezoError, RuntimeError):
    """No valid response after every retry (device gone, wrong port, baud mismatch)."""


def refused(code: int, detail: str, request: int) -> DeviceError:
    """The :class:`~edgezo.errors.DeviceError` for an error frame (a reset device: :class:`DeviceReset`)."""
    name = P.ERROR_NAMES.get(code, f"error {code}")
    cls = DeviceReset if code in (P.E_NO_MODEL, P.E_NO_BATCH) else DeviceError
    return cls(code, detail, request, message=f"device refused {P.NAMES.get(request, hex(request))}: {name}: {detail}")


class DeviceReset(DeviceError):
    """The device lost its state (no model / no batch): it was reset."""


@dataclass
class LinkStats:
    bytes_sent: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    retransmits: int = 0
    bad_frames: int = 0
    by_type: dict = field(default_factory=dict)  # name -> [requests, bytes out, bytes in]

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


def open_port(url: str, *, baudrate: int = 115200, timeout: float = 0.05):
    """``serial.serial_for_url`` with raw settings; a clear error when the port cannot be opened."""
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise LinkError(f"cannot open port {url!r}: {exc} (a /dev/tty* path, a pty, socket://HOST:PORT or "
                        "loop:// are accepted; start a simulator with `edgezo device sim`)") from None


class DeviceLink:
    """Framed request/response with sequence numbers, timeouts and retransmission."""

    def __init__(self, port, *, timeout: float = 2.0, retries: int = 20, baudrate: int = 115200,
                 max_frame_bytes: int | None = None):
        self.port = open_port(port, baudrate=baudrate) if isinstance(port, str) else port
        self.url = port if isinstance(port, str) else getattr(port, "name", repr(port))
        self.timeout, self.retries = timeout, retries
        self.seq = 0
        self.stats = LinkStats()
        self._rx = bytearray()
        self.max_frame_bytes = max_frame_bytes

    def close(self) -> None:
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------
    def _read_frame(self, deadline: float) -> bytes | None:
        while True:
            i = self._rx.find(0)
            if i >= 0:
                frame, self._rx = bytes(self._rx[:i]), self._rx[i + 1:]
                self.stats.bytes_received += i + 1
                return frame
            if time.monotonic() >= deadline:
                return None
            chunk = self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 1))
            if chunk:
                self._rx += chunk

    def request(self, ftype: int, body: bytes = b"", *, timeout: float | None = None) -> bytes:
        """Send one request and return the response body; raises DeviceError / LinkError."""
        self.seq = (self.seq + 1) & 0xFFFF
        seq = self.seq
        frame = P.encode_frame(ftype, seq, body)
        if self.max_frame_bytes and len(frame) > self.max_frame_bytes:
            raise ValueError(f"{P.NAMES.get(ftype)} frame of {len(frame)} bytes exceeds the device's "
                             f"{self.max_frame_bytes}-byte frames")
        name = P.NAMES.get(ftype, hex(ftype))
        rec = self.stats.by_type.setdefault(name, [0, 0, 0])
        rec[0] += 1
        wait = self.timeout if timeout is None else timeout
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retransmits += 1
            self.port.write(frame)
            self.stats.bytes_sent += len(frame)
            self.stats.frames_sent += 1
            rec[1] += len(frame)
            deadline = time.monotonic() + wait
            while True:
                raw = self._read_frame(deadline)
                if raw is None:
                    break  # timeout: retransmit
                if not raw:
                    continue
                try:
                    _, rtype, rseq, rbody = P.decode_frame(raw)
                except P.FrameError:
                    self.stats.bad_frames += 1
                    continue
                if rseq != seq or rtype not in (ftype | P.RESPONSE, P.ERROR):
                    continue  # a stale answer to an earlier attempt
                rec[2] += len(raw) + 1
                if rtype == P.ERROR:
                    code = rbody[0] if rbody else 0
                    detail = rbody[1:].decode(errors="replace")
                    raise refused(code, detail, ftype)
                return rbody
        raise LinkError(f"no valid response to {name} (seq {seq}) from {self.url} after {self.retries + 1} "
                        f"attempts of {wait:.2f} s")

    def send_raw(self, ftype: int, body: bytes = b"") -> None:
        """Send a frame that gets no answer (RESET)."""
        self.seq = (self.seq + 1) & 0xFFFF
        frame = P.encode_frame(ftype, self.seq, body)
        self.port.write(frame)
        self.stats.bytes_sent += len(frame)

    def hello(self) -> dict:
        body = self.request(P.HELLO)
        version, max_frame, sram, boot, step, flags = P.HELLO_RESP.unpack_from(body)
        return {"version": version, "max_frame_bytes": max_frame, "sram_bytes": sram, "boot_id": boot,
                "step": step, "model_loaded": bool(flags & P.FLAG_MODEL_LOADED),
                "compact": bool(flags & P.FLAG_COMPACT), "name": body[P.HELLO_RESP.size:].decode()}
