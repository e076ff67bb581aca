"""The edgezo device protocol v1: framing and message layouts (docs/protocol.md).

A frame on the wire is ``COBS(header + body + crc16) + b"\\x00"``:

* COBS (Cheshire & Baker 1999) removes every zero byte, so ``0x00`` delimits
  frames and a receiver resynchronises after any corruption (the maintained
  ``cobs`` package).
* ``header = <B version, B type, H seq>`` (little endian). A response carries
  the request's ``seq`` and ``type | 0x80``; an error response has type
  ``0xFF``.
* ``crc16 = binascii.crc_hqx(header + body, 0xFFFF)`` (CRC-16/CCITT-FALSE,
  polynomial 0x1021), little endian.

Compact forms (0x09 evaluate-chain, 0x0A update-last, 0x0B load-batch-u8;
docs/protocol.md §2.1) shrink a forward-RGE step's control bytes from 22.5 to
13.5 per query; every explicit message still works.

This module knows bytes only (no serial port, no torch): the host link, the
Python simulator and the tests share it; the C firmware implements the same
layouts by hand (targets/firmware/device.c).
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cobs import cobs

from edgezo.directions import chain_seeds
from edgezo.errors import EdgezoError

VERSION = 1

HELLO = 0x01
SET_MODEL = 0x02
WRITE_WEIGHTS = 0x03
LOAD_BATCH = 0x04
EVALUATE = 0x05
UPDATE = 0x06
READ_WEIGHTS = 0x07
CHECKPOINT = 0x08
EVALUATE_CHAIN = 0x09
UPDATE_LAST = 0x0A
LOAD_BATCH_U8 = 0x0B
COMPACT_TYPES = frozenset({EVALUATE_CHAIN, UPDATE_LAST, LOAD_BATCH_U8})  # announced by hello flag bit 1
RESET = 0x0F
RESPONSE = 0x80
ERROR = 0xFF

NAMES = {HELLO: "hello", SET_MODEL: "set_model", WRITE_WEIGHTS: "write_weights", LOAD_BATCH: "load_batch",
         EVALUATE: "evaluate", UPDATE: "update", READ_WEIGHTS: "read_weights", CHECKPOINT: "checkpoint",
         EVALUATE_CHAIN: "evaluate_chain", UPDATE_LAST: "update_last", LOAD_BATCH_U8: "load_batch_u8",
         RESET: "reset"}

# error codes (body of an ERROR response: <B code> + utf-8 detail)
E_VERSION, E_TYPE, E_LENGTH, E_NO_MODEL, E_NO_BATCH, E_MEMORY, E_ARG, E_STEP = range(1, 9)
ERROR_NAMES = {E_VERSION: "bad_version", E_TYPE: "unknown_type", E_LENGTH: "bad_length", E_NO_MODEL: "no_model",
               E_NO_BATCH: "no_batch", E_MEMORY: "out_of_memory", E_ARG: "bad_argument", E_STEP: "step_gap"}

KIND_IDS = {"rademacher": 0, "gaussian": 1}
KIND_NAMES = {v: k for k, v in KIND_IDS.items()}
ACT_IDS = {"identity": 0, "relu": 1}
LOSS_IDS = {"cross_entropy": 0}

HEADER = struct.Struct("<BBH")
CRC_BYTES = 2
OVERHEAD = HEADER.size + CRC_BYTES  # bytes of a frame besides the body, before COBS


class FrameError(EdgezoError, ValueError):
    """A received frame is corrupt (COBS, CRC, version or length)."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) via :func:`binascii.crc_hqx`."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(ftype: int, seq: int, body: bytes = b"", version: int = VERSION) -> bytes:
    raw = HEADER.pack(version, ftype, seq & 0xFFFF) + body
    return cobs.encode(raw + struct.pack("<H", crc16(raw))) + b"\x00"


def decode_frame(data: bytes) -> tuple[int, int, int, bytes]:
    """``(version, type, seq, body)`` of one frame (without its 0x00 delimiter)."""
    try:
        raw = cobs.decode(data)
    except cobs.DecodeError as exc:
        raise FrameError(f"COBS decode failed: {exc}") from None
    if len(raw) < OVERHEAD:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than the {OVERHEAD}-byte header + CRC")
    (crc,) = struct.unpack_from("<H", raw, len(raw) - 2)
    if crc16(raw[:-2]) != crc:
        raise FrameError("CRC mismatch")
    version, ftype, seq = HEADER.unpack_from(raw)
    return version, ftype, seq, raw[HEADER.size:-2]


def wire_size(body_len: int) -> int:
    """Bytes on the wire of a frame with a ``body_len``-byte body (worst case COBS + delimiter)."""
    n = OVERHEAD + body_len
    return n + math.ceil(n / 254) + 1


def max_body(max_frame_bytes: int) -> int:
    """Largest body whose frame (worst case) fits ``max_frame_bytes``."""
    b = max_frame_bytes - OVERHEAD - 2
    while b > 0 and wire_size(b) > max_frame_bytes:
        b -= 1
    return b


# --------------------------------------------------------------------------
# the model description (SET_MODEL)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """A dense layer (``in_modes=(N,)``, ``out_modes=(M,)``, ``ranks=()``) or a TT-matrix layer.

    TT cores have shapes ``(r_{k-1}, m_k, n_k, r_k)`` (models/ttm.py); a dense
    weight is ``(M, N)`` row-major. ``act`` follows the layer.
    """

    kind: str  # "dense" | "tt"
    in_modes: tuple[int, ...]
    out_modes: tuple[int, ...]
    ranks: tuple[int, ...]
    bias: bool
    act: str

    @property
    def in_features(self) -> int:
        return math.prod(self.in_modes)

    @property
    def out_features(self) -> int:
        return math.prod(self.out_modes)

    def param_shapes(self) -> list[tuple[int, ...]]:
        if self.kind == "dense":
            shapes = [(self.out_features, self.in_features)]
        else:
            r, m, n = self.ranks, self.out_modes, self.in_modes
            shapes = [(r[k], m[k], n[k], r[k + 1]) for k in range(len(m))]
        return shapes + ([(self.out_features,)] if self.bias else [])

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes())

    def scratch_floats(self) -> int:
        """Largest intermediate of the per-sample forward (TT: the contraction chain)."""
        if self.kind == "dense":
            return max(self.in_features, self.out_features)
        sizes = [self.in_features]
        K = len(self.in_modes)
        for k in range(K - 1, -1, -1):  # after contracting core k
            sizes.append(math.prod(self.in_modes[:k]) * self.ranks[k] * math.prod(self.out_modes[k:]))
        return max(sizes)


@dataclass(frozen=True)
class ModelSpec:
    layers: tuple[LayerSpec, ...]
    max_batch: int
    loss: str = "cross_entropy"

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    def encode(self) -> bytes:
        out = struct.pack("<BHB", LOSS_IDS[self.loss], self.max_batch, len(self.layers))
        for L in self.layers:
            act = ACT_IDS[L.act]
            if L.kind == "dense":
                out += struct.pack("<BBHHB", 0, act, L.in_features, L.out_features, int(L.bias))
            else:
                K = len(L.in_modes)
                out += struct.pack("<BBB", 1, act, K) + bytes(L.in_modes) + bytes(L.out_modes) + bytes(L.ranks)
                out += bytes([int(L.bias)])
        return out

    @classmethod
    def decode(cls, body: bytes) -> ModelSpec:
        try:
            loss, max_batch, n = struct.unpack_from("<BHB", body)
            pos, layers = 4, []
            for _ in range(n):
                kind, act = body[pos], body[pos + 1]
                if kind == 0:
                    _, _, nin, nout, bias = struct.unpack_from("<BBHHB", body, pos)
                    layers.append(LayerSpec("dense", (nin,), (nout,), (), bool(bias), _name(ACT_IDS, act)))
                    pos += 7
                elif kind == 1:
                    K = body[pos + 2]
                    p = pos + 3
                    ins, outs = tuple(body[p:p + K]), tuple(body[p + K:p + 2 * K])
                    ranks = tuple(body[p + 2 * K:p + 3 * K + 1])
                    bias = body[p + 3 * K + 1]
                    if len(ranks) != K + 1 or ranks[0] != 1 or ranks[-1] != 1 or min(ins + outs + ranks) < 1:
                        raise ValueError("bad TT layer")
                    layers.append(LayerSpec("tt", ins, outs, ranks, bool(bias), _name(ACT_IDS, act)))
                    pos = p + 3 * K + 2
                else:
                    raise ValueError(f"unknown layer kind {kind}")
            if pos != len(body) or not layers or max_batch < 1:
                raise ValueError("trailing bytes or empty model")
            for a, b in zip(layers[:-1], layers[1:]):
                if a.out_features != b.in_features:
                    raise ValueError("layer sizes do not chain")
            return cls(tuple(layers), max_batch, _name(LOSS_IDS, loss))
        except (struct.error, IndexError, KeyError) as exc:
            raise ValueError(f"malformed model description: {exc}") from None


def _name(table: dict, value: int) -> str:
    for k, v in table.items():
        if v == value:
            return k
    raise ValueError(f"unknown id {value}")


def last_seeds_capacity(max_frame_bytes: int) -> int:
    """Seeds of the last evaluate the device keeps for update-last: one per loss an evaluate response can hold."""
    return (max_frame_bytes - 8) // 4


def device_ram_bytes(spec: ModelSpec, max_frame_bytes: int) -> dict[str, int]:
    """The device's SRAM use for ``spec`` (the same formula in the simulator and the firmware).

    weights θ (4 P) + one perturbed copy θ + s·z (4 P; exact restore, no
    in-place undo) + the batch (B inputs float32 + B uint8 labels) + two
    per-sample activation buffers of the widest intermediate + the logits +
    receive and transmit frame buffers + the last evaluate's seeds (for
    update-last: ``last_seeds_capacity`` u32 seeds and u32 kind, offset,
    count, n).
    """
    P, B = spec.num_params, spec.max_batch
    widest = max(L.scratch_floats() for L in spec.layers)
    return {
        "weights": 4 * P,
        "perturbed": 4 * P,
        "batch": B * (4 * spec.in_features + 1),
        "activations": 4 * (2 * widest + spec.out_features),
        "frames": 2 * max_frame_bytes,
        "last_seeds": 4 * last_seeds_capacity(max_frame_bytes) + 16,
    }


# --------------------------------------------------------------------------
# message bodies
# --------------------------------------------------------------------------
FLAG_MODEL_LOADED, FLAG_COMPACT = 1, 2  # hello flags
HELLO_RESP = struct.Struct("<BHIHIB")  # version, max_frame, sram, boot_id, step, flags; then utf-8 name
EVAL_HEAD = struct.Struct("<BIIfB")  # kind, offset, count, mu, n; then n x u32 seeds, n x i8 multipliers
UPDATE_HEAD = struct.Struct("<IBIIfB")  # step, kind, offset, count, lr, n; then n x u32 seeds, n x f32 coeffs
UPDATE_RESP = struct.Struct("<IB")  # device step, applied (1) or already applied (0)
# batch id, total, features, byte offset; then bytes of (x f32[total, F], y u8[total])
BATCH_HEAD = struct.Struct("<IHHI")
CKPT_REQ = struct.Struct("<BI")  # op (0 query, 1 set step), step
CKPT_RESP = struct.Struct("<III")  # step, n_params, crc32 of the weight bytes
READ_REQ = struct.Struct("<IH")  # offset, count
EVAL_CHAIN = struct.Struct("<BIIfIBB")  # kind, offset, count, mu, seed0, n, pattern (0 forward, 1 central)
UPDATE_LAST_HEAD = struct.Struct("<IfB")  # step, lr, n; then n x f32 coeffs (seeds, kind, range: the last evaluate)
# batch id, total, features, scale, byte offset; then u8 x[total, F], u8 y[total]
BATCH_U8_HEAD = struct.Struct("<IHHfI")

PATTERN_FORWARD, PATTERN_CENTRAL = 0, 1


def chain_pattern(seeds: Sequence[int], mults: Sequence[int]) -> tuple[int, int, int] | None:
    """``(seed0, n, pattern)`` when an evaluate's queries are an RGE pattern over a seed chain, else None.

    forward: ``seeds = (s_0, s_0, ..., s_{n-1})``, ``mults = (0, 1, ..., 1)``
    (the first query is θ; its seed is ignored); central: ``seeds = chain +
    chain``, ``mults = (1,)*n + (-1,)*n``. The chain is
    :func:`edgezo.directions.chain_seeds`.
    """
    m, s = list(mults), [int(x) for x in seeds]
    if len(m) >= 2 and m[0] == 0 and all(v == 1 for v in m[1:]):
        n, pattern, chain = len(m) - 1, PATTERN_FORWARD, s[1:]
    elif len(m) >= 2 and len(m) % 2 == 0 and all(v == 1 for v in m[:len(m) // 2]) \
            and all(v == -1 for v in m[len(m) // 2:]) and s[:len(m) // 2] == s[len(m) // 2:]:
        n, pattern, chain = len(m) // 2, PATTERN_CENTRAL, s[:len(m) // 2]
    else:
        return None
    if n > 255 or list(chain_seeds(chain[0], n)) != chain:
        return None
    return chain[0], n, pattern


def chain_queries(seed0: int, n: int, pattern: int) -> tuple[list[int], list[int]]:
    """The explicit ``(seeds, mults)`` of an evaluate-chain request (inverse of :func:`chain_pattern`)."""
    chain = list(chain_seeds(seed0, n))
    if pattern == PATTERN_FORWARD:
        return [chain[0]] + chain, [0] + [1] * n
    if pattern == PATTERN_CENTRAL:
        return chain + chain, [1] * n + [-1] * n
    raise ValueError(f"unknown evaluate-chain pattern {pattern}")


def pack_evaluate_chain(kind: str, offset: int, count: int, mu: float, seed0: int, n: int, pattern: int) -> bytes:
    return EVAL_CHAIN.pack(KIND_IDS[kind], offset, count, mu, seed0, n, pattern)


def pack_update_last(step: int, lr: float, coeffs) -> bytes:
    n = len(coeffs)
    return UPDATE_LAST_HEAD.pack(step, lr, n) + struct.pack(f"<{n}f", *coeffs)


def unpack_update_last(body: bytes):
    step, lr, n = UPDATE_LAST_HEAD.unpack_from(body)
    if len(body) != UPDATE_LAST_HEAD.size + 4 * n:
        raise ValueError("update_last: length does not match n")
    return step, lr, struct.unpack_from(f"<{n}f", body, UPDATE_LAST_HEAD.size)


def distinct_seeds(seeds: Sequence[int], mults: Sequence[int]) -> list[int]:
    """The seeds with a non-zero multiplier, each once, in order of first appearance (what update-last uses)."""
    out, seen = [], set()
    for s, m in zip(seeds, mults):
        if m and s not in seen:
            seen.add(s)
            out.append(int(s))
    return out


def u8_scale(x) -> float | None:
    """A power of two ``s`` (1, 1/2, ..., 1/256) with ``x = u · s`` exactly for integers ``u`` in [0, 255], or None.

    Then the batch travels as u8 (load-batch-u8) and the device's ``fl32(u · s)``
    equals the float32 value bit for bit.
    """
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    if x.size == 0 or not np.all(np.isfinite(x)) or x.min() < 0:
        return None
    for k in range(9):
        s = np.float32(2.0 ** -k)
        u = x / s
        if u.max() <= 255 and np.array_equal(u, np.round(u)):
            return float(s)
    return None


def pack_evaluate(kind: str, offset: int, count: int, mu: float, seeds: Sequence[int], mults: Sequence[int]) -> bytes:
    n = len(seeds)
    return (EVAL_HEAD.pack(KIND_IDS[kind], offset, count, mu, n) + struct.pack(f"<{n}I", *seeds)
            + struct.pack(f"<{n}b", *mults))


def unpack_evaluate(body: bytes):
    kind, offset, count, mu, n = EVAL_HEAD.unpack_from(body)
    if len(body) != EVAL_HEAD.size + 5 * n:
        raise ValueError("evaluate: length does not match n")
    seeds = struct.unpack_from(f"<{n}I", body, EVAL_HEAD.size)
    mults = struct.unpack_from(f"<{n}b", body, EVAL_HEAD.size + 4 * n)
    return kind, offset, count, mu, seeds, mults


def pack_update(step: int, kind: str, offset: int, count: int, lr: float, seeds, coeffs) -> bytes:
    n = len(seeds)
    return (UPDATE_HEAD.pack(step, KIND_IDS[kind], offset, count, lr, n) + struct.pack(f"<{n}I", *seeds)
            + struct.pack(f"<{n}f", *coeffs))


def unpack_update(body: bytes):
    step, kind, offset, count, lr, n = UPDATE_HEAD.unpack_from(body)
    if len(body) != UPDATE_HEAD.size + 8 * n:
        raise ValueError("update: length does not match n")
    seeds = struct.unpack_from(f"<{n}I", body, UPDATE_HEAD.size)
    coeffs = struct.unpack_from(f"<{n}f", body, UPDATE_HEAD.size + 4 * n)
    return step, kind, offset, count, lr, seeds, coeffs


def scale_multipliers(scales: Sequence[float]) -> tuple[float, list[int]]:
    """Write scales as ``m_i · μ`` with integer ``m_i`` in [-127, 127] (0 = the point itself).

    RGE asks for ``{0, +μ}`` (forward) or ``{+μ, -μ}`` (central): one byte per
    query instead of a float. Raises ValueError for other scale sets.
    """
    nz = [abs(s) for s in scales if s != 0.0]
    mu = min(nz) if nz else 0.0
    mults = []
    for s in scales:
        m = round(s / mu) if mu else 0
        if not -127 <= m <= 127 or m * mu != s:
            raise ValueError(f"scales {tuple(scales)} are not small integer multiples of one mu")
        mults.append(int(m))
    return mu, mults
