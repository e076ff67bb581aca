"""A Python device simulator serving the edgezo device protocol (docs/protocol.md) on a pty.

It behaves like the C firmware (targets/firmware/): it holds θ, one batch and a
step counter in a memory budget (the profile's SRAM, counted with
:func:`edgezo.protocol.device_ram_bytes`), evaluates
``L(θ + m_i μ z(seed_i))`` for the host's seeds and applies the seed-SGD
update ``θ ← θ + a_i z(seed_i)`` with ``a_i = fl32(-(lr · c_i))``, one seed
after the other, each coordinate ``θ_j ← fl32(θ_j + fl32(a_i z_j))`` (the
rounding of ``ezdir_axpy``). Updates carry a step counter and are applied at
most once; the last response is cached per sequence number, so a retransmitted
request is answered, never re-executed. The compact messages (evaluate-chain,
update-last with the last evaluate's seeds kept, load-batch-u8) behave like
the firmware's, answers and errors included (tests/targets/test_firmware.py).

Forward passes run in numpy float32; the TT-matrix layer contracts its cores
one after the other (never forming W), like the firmware.

Run as a process: ``python -m edgezo.targets.sim --target cortex-m4-256k``
(or ``edgezo device sim --target ...``) prints ``PORT /dev/pts/N`` and serves
until killed. :class:`SimulatorThread` serves in-process (tests, benchmarks).
"""

from __future__ import annotations

import argparse
import os
import select
import struct
import sys
import threading
import tty
import zlib

import numpy as np

from edgezo import protocol as P
from edgezo.directions import directions
from edgezo.errors import DeviceError

from .profile import load_profile

__all__ = ["DeviceState", "Simulator", "SimulatorThread", "forward", "main"]


def forward(spec: P.ModelSpec, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Logits (B, out) of the described network with flat parameters ``theta`` (float32)."""
    h = x.astype(np.float32, copy=False)
    pos = 0
    B = h.shape[0]
    for L in spec.layers:
        shapes = L.param_shapes()
        tensors = []
        for s in shapes:
            n = int(np.prod(s))
            tensors.append(theta[pos:pos + n].reshape(s))
            pos += n
        if L.kind == "dense":
            h = h @ tensors[0].T
        else:
            K = len(L.in_modes)
            n, r = L.in_modes, L.ranks
            T = h.reshape(B, int(np.prod(n[:K - 1])), n[K - 1], 1, 1)
            for k in range(K - 1, -1, -1):
                new = np.einsum("rmnq,bpnqs->bprms", tensors[k], T)  # (B, P_k, r_{k-1}, m_k, S)
                S = new.shape[3] * new.shape[4]
                if k:
                    T = new.reshape(B, int(np.prod(n[:k - 1])), n[k - 1], r[k], S)
                else:
                    T = new
            h = np.ascontiguousarray(T.reshape(B, L.out_features))
        if L.bias:
            h = h + tensors[-1]
        if L.act == "relu":
            h = np.maximum(h, np.float32(0))
    return h


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


class DeviceState:
    """What the device's SRAM holds. ``handle(type, body) -> (type, body)``."""

    def __init__(self, profile, boot_id: int = 1, *, compact: bool = True):
        self.profile = load_profile(profile)
        self.compact = compact  # False: behave like a version-1 device without messages 0x09-0x0B
        self.boot_id = boot_id
        self.spec: P.ModelSpec | None = None
        self.theta: np.ndarray | None = None
        self.step = 0
        self.batch_x = self.batch_y = None
        self.batch_id = None
        self.batch_total = self.batch_loaded = 0
        self.batch_width = 4  # bytes per feature of the batch being loaded (4 float32, 1 u8)
        self.ram = 0
        self.last_eval: tuple[int, int, int, list[int]] | None = None  # kind, offset, count, seeds (update-last)

    # -- helpers -------------------------------------------------------------
    def _need_model(self):
        if self.spec is None:
            raise DeviceError(P.E_NO_MODEL, "no model loaded (device was reset?)")

    def _range(self, offset: int, count: int):
        if offset + count > self.theta.size:
            raise DeviceError(P.E_ARG, f"range [{offset}, {offset + count}) outside {self.theta.size} params")

    def handle(self, ftype: int, body: bytes) -> tuple[int, bytes]:
        try:
            fn = self.HANDLERS.get(ftype)
            if fn is None or (not self.compact and ftype in P.COMPACT_TYPES):
                raise DeviceError(P.E_TYPE, f"unknown message type 0x{ftype:02x}")
            with np.errstate(all="ignore"):  # NaN / inf parameters or inputs are values, not errors
                return ftype | P.RESPONSE, fn(self, body)
        except DeviceError as err:
            return P.ERROR, bytes([err.code]) + str(err).encode()
        except (struct.error, ValueError) as exc:
            return P.ERROR, bytes([P.E_LENGTH]) + f"malformed {P.NAMES.get(ftype, ftype)}: {exc}".encode()

    # -- messages ------------------------------------------------------------
    def hello(self, body):
        flags = int(self.spec is not None) | (P.FLAG_COMPACT if self.compact else 0)
        return P.HELLO_RESP.pack(P.VERSION, self.profile.max_frame_bytes, self.profile.sram_bytes, self.boot_id,
                                 self.step, flags) + f"sim:{self.profile.name}".encode()

    def set_model(self, body):
        spec = P.ModelSpec.decode(body)
        ram = P.device_ram_bytes(spec, self.profile.max_frame_bytes)
        total = sum(ram.values())
        if total > self.profile.sram_bytes:
            detail = ", ".join(f"{k} {v}" for k, v in ram.items())
            raise DeviceError(P.E_MEMORY, f"model needs {total} bytes of SRAM ({detail}), "
                                          f"{self.profile.name} has {self.profile.sram_bytes}; "
                                          "use a TT model or a smaller batch")
        self.spec, self.ram = spec, total
        self.last_eval = None
        self.theta = np.zeros(spec.num_params, np.float32)
        self.step = 0
        self.batch_id = None
        self.batch_x = np.zeros((spec.max_batch, spec.in_features), np.float32)
        self.batch_y = np.zeros(spec.max_batch, np.uint8)
        return struct.pack("<II", spec.num_params, total)

    def write_weights(self, body):
        self._need_model()
        (offset,) = struct.unpack_from("<I", body)
        vals = np.frombuffer(body, "<f4", offset=4)
        self._range(offset, vals.size)
        self.theta[offset:offset + vals.size] = vals
        return b""

    def load_batch(self, body):
        bid, total, feats, offset = P.BATCH_HEAD.unpack_from(body)
        return self._load_batch(bid, total, feats, offset, body[P.BATCH_HEAD.size:], 4, None)

    def load_batch_u8(self, body):
        bid, total, feats, scale, offset = P.BATCH_U8_HEAD.unpack_from(body)
        return self._load_batch(bid, total, feats, offset, body[P.BATCH_U8_HEAD.size:], 1, np.float32(scale))

    def _load_batch(self, bid, total, feats, offset, data, width, scale):
        """Chunks of ``x[total][feats]`` (float32, or u8 times ``scale``) then ``u8 y[total]``."""
        self._need_model()
        if feats != self.spec.in_features:
            raise DeviceError(P.E_ARG, f"batch has {feats} features, the model takes {self.spec.in_features}")
        if not 0 < total <= self.spec.max_batch:
            raise DeviceError(P.E_MEMORY, f"batch of {total} exceeds the model's max batch {self.spec.max_batch}")
        size = total * (width * feats + 1)
        if offset == 0:
            self.batch_id, self.batch_total, self.batch_loaded = bid, total, 0
            self.batch_width, self._bbuf = width, bytearray(size)
        if (bid != self.batch_id or total != self.batch_total or width != self.batch_width
                or offset > self.batch_loaded or offset + len(data) > size):
            raise DeviceError(P.E_ARG, "load_batch: chunks must come in order from offset 0")
        self._bbuf[offset:offset + len(data)] = data
        self.batch_loaded = max(self.batch_loaded, offset + len(data))
        if self.batch_loaded == size:
            nx = total * feats
            if width == 4:
                x = np.frombuffer(bytes(self._bbuf), "<f4", count=nx)
            else:
                x = np.frombuffer(bytes(self._bbuf), np.uint8, count=nx).astype(np.float32) * scale
            self.batch_x[:total] = x.reshape(total, feats)
            self.batch_y[:total] = np.frombuffer(bytes(self._bbuf), np.uint8, offset=width * nx)
        return struct.pack("<I", self.batch_loaded)

    def _batch_complete(self) -> bool:
        return (self.batch_id is not None
                and self.batch_loaded >= self.batch_total * (self.batch_width * self.spec.in_features + 1))

    def evaluate(self, body):
        self._need_model()
        return self._evaluate(*P.unpack_evaluate(body))

    def evaluate_chain(self, body):
        self._need_model()
        kind, offset, count, mu, seed0, n, pattern = P.EVAL_CHAIN.unpack(body)
        if pattern not in (P.PATTERN_FORWARD, P.PATTERN_CENTRAL) or n == 0:
            raise DeviceError(P.E_ARG, f"evaluate_chain: pattern {pattern}, n {n}")
        seeds, mults = P.chain_queries(seed0, n, pattern)
        return self._evaluate(kind, offset, count, mu, seeds, mults)

    def _evaluate(self, kind, offset, count, mu, seeds, mults):
        if not self._batch_complete():
            raise DeviceError(P.E_NO_BATCH, "no complete batch loaded")
        self._range(offset, count)
        if kind not in P.KIND_NAMES:
            raise DeviceError(P.E_ARG, f"unknown direction kind {kind}")
        if len(mults) > P.last_seeds_capacity(self.profile.max_frame_bytes):
            raise DeviceError(P.E_ARG, "evaluate: too many queries for one response frame")
        n = self.batch_total
        if int(self.batch_y[:n].max(initial=0)) >= self.spec.out_features:
            raise DeviceError(P.E_ARG, "a label is not a class of the model")
        x, y = self.batch_x[:n], self.batch_y[:n]
        z = directions(list(seeds), offset, count, P.KIND_NAMES[kind]).numpy() if seeds else None
        out = []
        for i, m in enumerate(mults):
            pert = self.theta.copy()
            if m:
                s = np.float32(m) * np.float32(mu)
                pert[offset:offset + count] += s * z[i]
            out.append(cross_entropy(forward(self.spec, pert, x), y))
        self.last_eval = (kind, offset, count, P.distinct_seeds(seeds, mults))
        return struct.pack(f"<{len(out)}f", *out)

    def update(self, body):
        self._need_model()
        return self._update(*P.unpack_update(body))

    def update_last(self, body):
        self._need_model()
        step, lr, coeffs = P.unpack_update_last(body)
        if step <= self.step:
            return P.UPDATE_RESP.pack(self.step, 0)
        if self.last_eval is None or not self.last_eval[3] or len(self.last_eval[3]) != len(coeffs):
            raise DeviceError(P.E_ARG, "update_last: the coefficients do not match the last evaluate's seeds")
        kind, offset, count, seeds = self.last_eval
        return self._update(step, kind, offset, count, lr, seeds, coeffs)

    def _update(self, step, kind, offset, count, lr, seeds, coeffs):
        if step <= self.step:
            return P.UPDATE_RESP.pack(self.step, 0)  # already applied: idempotent
        if step != self.step + 1:
            raise DeviceError(P.E_STEP, f"update {step} but the device is at step {self.step}")
        self._range(offset, count)
        if kind not in P.KIND_NAMES:
            raise DeviceError(P.E_ARG, f"unknown direction kind {kind}")
        z = directions(list(seeds), offset, count, P.KIND_NAMES[kind]).numpy()
        th = self.theta[offset:offset + count]
        for i, c in enumerate(coeffs):
            a = -(np.float32(lr) * np.float32(c))
            th += a * z[i]
        self.step = step
        return P.UPDATE_RESP.pack(self.step, 1)

    def read_weights(self, body):
        self._need_model()
        offset, count = P.READ_REQ.unpack(body)
        self._range(offset, count)
        return self.theta[offset:offset + count].astype("<f4").tobytes()

    def checkpoint(self, body):
        self._need_model()
        op, step = P.CKPT_REQ.unpack(body)
        if op == 1:
            self.step = step
        return P.CKPT_RESP.pack(self.step, self.theta.size, zlib.crc32(self.theta.astype("<f4").tobytes()))

    HANDLERS = {P.HELLO: hello, P.SET_MODEL: set_model, P.WRITE_WEIGHTS: write_weights, P.LOAD_BATCH: load_batch,
                P.EVALUATE: evaluate, P.UPDATE: update, P.READ_WEIGHTS: read_weights, P.CHECKPOINT: checkpoint,
                P.EVALUATE_CHAIN: evaluate_chain, P.UPDATE_LAST: update_last, P.LOAD_BATCH_U8: load_batch_u8}


class Simulator:
    """Frames in, frames out: the device's receive loop on a file descriptor."""

    def __init__(self, profile, *, compact: bool = True):
        self.state = DeviceState(profile, compact=compact)
        self.buf = bytearray()
        self.last: tuple[int, int, bytes] | None = None  # (seq, type, response frame)
        self.frames = 0

    def feed(self, data: bytes) -> bytes:
        """Bytes received; returns the bytes to send back."""
        out = b""
        self.buf += data
        while True:
            i = self.buf.find(0)
            if i < 0:
                break
            frame, self.buf = bytes(self.buf[:i]), self.buf[i + 1:]
            if frame:
                out += self._frame(frame)
        if len(self.buf) > 4 * self.state.profile.max_frame_bytes:  # no delimiter: garbage
            self.buf.clear()
        return out

    def _frame(self, frame: bytes) -> bytes:
        try:
            version, ftype, seq, body = P.decode_frame(frame)
        except P.FrameError:
            return b""  # corrupt: drop; the host times out and retransmits
        self.frames += 1
        if ftype == P.RESET:
            self.state = DeviceState(self.state.profile, boot_id=(self.state.boot_id + 1) & 0xFFFF)
            self.last = None
            return b""
        if self.last is not None and self.last[0] == seq and self.last[1] == ftype:
            return self.last[2]  # a retransmission: answer again, do not execute again
        if version != P.VERSION:
            detail = f"protocol version {version}, device speaks {P.VERSION}".encode()
            rtype, rbody = P.ERROR, bytes([P.E_VERSION]) + detail
        else:
            rtype, rbody = self.state.handle(ftype, body)
        resp = P.encode_frame(rtype, seq, rbody)
        self.last = (seq, ftype, resp)
        return resp


def open_pty() -> tuple[int, int, str]:
    """(master fd, slave fd, slave path) of a raw pty."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def serve(sim: Simulator, master: int, stop: threading.Event | None = None) -> None:
    while stop is None or not stop.is_set():
        r, _, _ = select.select([master], [], [], 0.05)
        if not r:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        out = sim.feed(data)
        while out:
            n = os.write(master, out)
            out = out[n:]


class SimulatorThread:
    """A simulator served from a thread on a fresh pty; ``.port`` is the path to open."""

    def __init__(self, profile="cortex-m4-256k", *, compact: bool = True):
        self.sim = Simulator(profile, compact=compact)
        self.master, self.slave, self.port = open_pty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=serve, args=(self.sim, self.master, self._stop), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgezo.targets.sim", description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="cortex-m4-256k", help="target profile (name or .toml path)")
    args = ap.parse_args(argv)
    sim = Simulator(args.target)
    master, slave, path = open_pty()
    print(f"PORT {path}", flush=True)
    try:
        serve(sim, master)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
