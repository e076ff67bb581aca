"""A fuzz corpus for the device protocol (docs/protocol.md), for the C firmware and the Python simulator.

Each corpus entry is one *session*: the bytes a host would send a freshly
powered device. Sessions come in three families:

* **extreme** — structurally valid frames (correct COBS and CRC, so they reach
  the message parser) whose fields sit at the edges: sizes near 2^16 and 2^32,
  unknown message types and kinds, labels >= the model's classes, NaN and
  infinite scalars, offsets and steps that wrap, counts that disagree with the
  body length, truncated and trailing bytes — each after a valid set-up
  (model, weights, batch) so that the deep paths run;
* **mutated** — a valid session whose frame bodies are mutated at random
  (bit flips, byte insertions and deletions, truncation, 32-bit field
  overwrites with extreme values) and re-framed with a correct CRC;
* **raw** — byte-level damage of the encoded stream (no delimiter for longer
  than a frame, stray zeros, random bytes).

``python -m edgezo.targets.fuzz --out DIR [--seed N] [--random N]`` writes one
file per session; the firmware's harness (``make fuzz``) reads them, and
:func:`check_simulator` runs the same sessions through
:class:`edgezo.targets.sim.Simulator`.
"""

from __future__ import annotations

import argparse
import math
import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from edgezo import protocol as P

NAN, INF = float("nan"), float("inf")
U32_EDGES = (0, 1, 2**15, 2**16 - 1, 2**16, 2**16 + 1, 2**31 - 1, 2**31, 2**32 - 4, 2**32 - 2, 2**32 - 1)
U16_EDGES = (0, 1, 2, 255, 256, 2**15, 2**16 - 2, 2**16 - 1)
FLOAT_EDGES = (NAN, INF, -INF, 0.0, -0.0, 1e-45, 3.4e38, -3.4e38, 1e30)
# TT layers (in modes, out modes, ranks) whose parameter, feature or scratch counts exceed 2^32 and wrap, in
# 32-bit arithmetic, to a model that seems to fit 256 KiB (found by a search over the memory formula).
WRAPPING_TT = (([31, 16, 4, 8, 4], [3, 127, 16, 127, 128], [1, 1, 2, 2, 64, 1]),
               ([200, 127, 4, 64, 8, 5], [5, 1, 5, 16, 255, 5], [1, 4, 16, 16, 64, 16, 1]),
               ([128, 16, 2, 127, 1], [1, 16, 4, 127, 127], [1, 64, 1, 64, 64, 1]),
               ([128, 64, 128, 16, 64], [5, 7, 8, 2, 7], [1, 4, 1, 4, 4, 1]))

# The set-up every extreme session starts from: a 4-3-2 MLP (max batch 4), weights, one complete batch.
IN, HID, OUT, MAX_BATCH = 4, 3, 2, 4


def _model() -> bytes:
    return (struct.pack("<BHB", 0, MAX_BATCH, 2) + struct.pack("<BBHHB", 0, 1, IN, HID, 1)
            + struct.pack("<BBHHB", 0, 0, HID, OUT, 1))


N_PARAMS = IN * HID + HID + HID * OUT + OUT


def _batch(total: int = 2, labels: bytes | None = None) -> bytes:
    x = struct.pack(f"<{total * IN}f", *[0.25 * (i % 5) for i in range(total * IN)])
    y = labels if labels is not None else bytes(i % OUT for i in range(total))
    return P.BATCH_HEAD.pack(7, total, IN, 0) + x + y


def setup() -> list[tuple[int, bytes]]:
    """(type, body) of a valid session start: hello, set model, weights, a complete batch."""
    weights = struct.pack(f"<I{N_PARAMS}f", 0, *[0.01 * i for i in range(N_PARAMS)])
    return [(P.HELLO, b""), (P.SET_MODEL, _model()), (P.WRITE_WEIGHTS, weights), (P.LOAD_BATCH, _batch())]


def _evaluate(kind=0, offset=0, count=N_PARAMS, mu=0.01, seeds=(1, 2), mults=(1, -1)) -> bytes:
    return (struct.pack("<BIIfB", kind, offset, count, mu, len(mults)) + struct.pack(f"<{len(seeds)}I", *seeds)
            + struct.pack(f"<{len(mults)}b", *mults))


def _f32(x: float) -> bytes:
    return struct.pack("<f", x)


def _tt_model(K: int, mode: int, rank: int, max_batch: int = 1) -> bytes:
    body = struct.pack("<BHB", 0, max_batch, 1) + struct.pack("<BBB", 1, 0, K)
    return body + bytes([mode] * K) + bytes([mode] * K) + bytes([1] + [rank] * (K - 1) + [1]) + b"\x00"


def _dense(n_in: int, n_out: int, max_batch: int = 1, layers: int = 1) -> bytes:
    return struct.pack("<BHB", 0, max_batch, layers) + struct.pack("<BBHHB", 0, 0, n_in, n_out, 0) * layers


def extreme_frames() -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """(name, frames after the set-up) of structurally valid frames with extreme fields."""
    for a, b in ((65535, 65535), (65535, 1), (1, 65535), (0, 5), (4096, 4096)):
        yield f"dense-{a}x{b}", [(P.SET_MODEL, _dense(a, b))]
    yield "dense-8-layers-of-65535", [(P.SET_MODEL, _dense(65535, 65535, layers=8))]
    yield "dense-max-batch-65535", [(P.SET_MODEL, _dense(64, 10, max_batch=65535))]
    for K, mode, rank in ((6, 255, 255), (6, 255, 1), (1, 255, 1), (3, 2, 255), (0, 2, 2), (7, 2, 2), (255, 2, 2)):
        yield f"tt-K{K}-m{mode}-r{rank}", [(P.SET_MODEL, _tt_model(K, mode, rank))]
    yield "tt-truncated", [(P.SET_MODEL, _tt_model(6, 255, 255)[:-5])]
    for ins, outs, ranks in WRAPPING_TT:  # 32-bit sizes wrap to values that pass a 32-bit memory check
        body = struct.pack("<BHB", 0, 1, 1) + struct.pack("<BBB", 1, 0, len(ins)) + bytes(ins + outs + ranks) + b"\x00"
        n_in = math.prod(ins)
        chunks = [(P.LOAD_BATCH_U8,
                   P.BATCH_U8_HEAD.pack(4, 1, n_in % 2**16, 1.0, off) + bytes(min(240, n_in + 1 - off)))
                  for off in range(0, min(n_in + 1, 2400), 240)]
        yield f"tt-wrap-{'x'.join(map(str, ins))}", [(P.SET_MODEL, body), *chunks,
                                                      (P.EVALUATE_CHAIN, P.EVAL_CHAIN.pack(0, 0, 1, 0.1, 1, 1, 0))]
    for body in (b"", b"\x00", struct.pack("<BHB", 1, 4, 1), struct.pack("<BHB", 0, 0, 1),
                 struct.pack("<BHB", 0, 4, 0), struct.pack("<BHB", 0, 4, 255), _model() + b"\x00",
                 _model()[:-1], struct.pack("<BHB", 0, 4, 1) + bytes([9, 0, 0, 0, 0, 0, 0]),
                 struct.pack("<BHB", 0, 4, 1) + struct.pack("<BBHHB", 0, 2, 4, 4, 0),
                 struct.pack("<BHB", 0, 4, 1) + struct.pack("<BBHHB", 0, 0, 4, 4, 2),
                 struct.pack("<BHB", 0, 4, 2) + struct.pack("<BBHHB", 0, 0, 4, 4, 0) * 1
                 + struct.pack("<BBHHB", 0, 0, 5, 4, 0)):
        yield f"set-model-odd-{body.hex()[:24]}", [(P.SET_MODEL, body)]
    yield from _extreme_messages()


def _extreme_messages() -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """The extreme frames of every message but set-model."""
    for off in U32_EDGES:
        yield f"write-off-{off}", [(P.WRITE_WEIGHTS, struct.pack("<I3f", off, 1.0, NAN, INF))]
    yield "write-unaligned", [(P.WRITE_WEIGHTS, struct.pack("<I", 0) + b"\x01\x02\x03")]
    yield "write-short", [(P.WRITE_WEIGHTS, b"\x01\x02")]
    for total in U16_EDGES:
        yield f"batch-total-{total}", [(P.LOAD_BATCH, P.BATCH_HEAD.pack(8, total, IN, 0) + b"\x01" * 40)]
    for feats in (0, IN - 1, IN + 1, 65535):
        yield f"batch-feats-{feats}", [(P.LOAD_BATCH, P.BATCH_HEAD.pack(8, 2, feats, 0) + b"\x01" * 8)]
    for off in U32_EDGES:
        yield f"batch-off-{off}", [(P.LOAD_BATCH, P.BATCH_HEAD.pack(7, 2, IN, off) + b"\x01" * 8)]
    for label in (OUT, 7, 255):
        yield f"labels-{label}", [(P.LOAD_BATCH, _batch(2, bytes([0, label]))), (P.EVALUATE, _evaluate())]
    yield "batch-chunk-past-end", [(P.LOAD_BATCH, _batch() + b"\x01" * 9)]
    yield "batch-short-header", [(P.LOAD_BATCH, b"\x01\x02\x03")]
    for scale in FLOAT_EDGES:
        head = P.BATCH_U8_HEAD.pack(9, 2, IN, scale, 0)
        yield f"batch-u8-scale-{scale}", [(P.LOAD_BATCH_U8, head + bytes(range(2 * IN)) + b"\x00\x01"),
                                          (P.EVALUATE, _evaluate())]
    yield "batch-u8-labels-255", [(P.LOAD_BATCH_U8, P.BATCH_U8_HEAD.pack(9, 2, IN, 1.0, 0) + bytes(8) + b"\xff\xff"),
                                  (P.EVALUATE_CHAIN, P.EVAL_CHAIN.pack(0, 0, N_PARAMS, 0.01, 5, 2, 0))]
    for kind in (2, 7, 255):
        yield f"eval-kind-{kind}", [(P.EVALUATE, _evaluate(kind=kind))]
    for off, count in ((2**32 - 1, 2), (2**32 - 1, 2**32 - 1), (1, 2**32 - 1), (N_PARAMS, 0), (N_PARAMS, 1),
                       (0, N_PARAMS + 1), (2**31, 2**31)):
        yield f"eval-range-{off}-{count}", [(P.EVALUATE, _evaluate(offset=off, count=count))]
    for mu in FLOAT_EDGES:
        yield f"eval-mu-{mu}", [(P.EVALUATE, _evaluate(mu=mu)), (P.UPDATE_LAST, P.UPDATE_LAST_HEAD.pack(1, mu, 2)
                                                                  + _f32(mu) + _f32(1.0))]
    yield "eval-q-0", [(P.EVALUATE, _evaluate(seeds=(), mults=()))]
    yield "eval-q-255", [(P.EVALUATE, _evaluate(seeds=tuple(range(255)), mults=(1,) * 255))]
    yield "eval-count-mismatch", [(P.EVALUATE, _evaluate()[:-1])]
    yield "eval-q-too-many", [(P.EVALUATE, struct.pack("<BIIfB", 0, 0, N_PARAMS, 0.1, 200) + bytes(1000))]
    for n, pattern in ((0, 0), (255, 0), (255, 1), (31, 1), (61, 0), (62, 0), (1, 2), (1, 255)):
        yield f"chain-n{n}-p{pattern}", [(P.EVALUATE_CHAIN, P.EVAL_CHAIN.pack(0, 0, N_PARAMS, 0.01, 2**32 - 1, n,
                                                                              pattern))]
    yield "chain-short", [(P.EVALUATE_CHAIN, b"\x00" * 18)]
    for step in (0, 1, 2, 2**31, 2**32 - 1):
        yield f"update-step-{step}", [(P.UPDATE, P.UPDATE_HEAD.pack(step, 0, 0, N_PARAMS, 0.1, 1)
                                       + struct.pack("<If", 3, NAN))]
    for kind, off, count in ((3, 0, 1), (0, 2**32 - 1, 2), (1, N_PARAMS, 1)):
        yield f"update-range-{kind}-{off}", [(P.UPDATE, P.UPDATE_HEAD.pack(1, kind, off, count, INF, 1)
                                              + struct.pack("<If", 3, 1.0))]
    yield "update-length", [(P.UPDATE, P.UPDATE_HEAD.pack(1, 0, 0, 1, 0.1, 200) + bytes(8))]
    yield "update-last-without-eval", [(P.UPDATE_LAST, P.UPDATE_LAST_HEAD.pack(1, 0.1, 1) + _f32(1.0))]
    yield "update-last-mismatch", [(P.EVALUATE, _evaluate()), (P.UPDATE_LAST, P.UPDATE_LAST_HEAD.pack(1, 0.1, 255)
                                                                              + bytes(4 * 255))]
    yield "update-last-after-chain", [(P.EVALUATE_CHAIN, P.EVAL_CHAIN.pack(1, 0, N_PARAMS, 0.01, 9, 30, 1)),
                                      (P.UPDATE_LAST, P.UPDATE_LAST_HEAD.pack(1, NAN, 30) + _f32(-INF) * 30)]
    update = P.UPDATE_HEAD.pack(0, 0, 0, 1, 0.1, 1) + struct.pack("<If", 1, 1.0)
    yield "checkpoint-wrap-then-update", [(P.CHECKPOINT, P.CKPT_REQ.pack(1, 2**32 - 1)), (P.UPDATE, update)]
    for op in (0, 1, 2, 255):
        yield f"checkpoint-op-{op}", [(P.CHECKPOINT, P.CKPT_REQ.pack(op, 2**32 - 1))]
    for off, count in ((0, 65535), (2**32 - 1, 1), (N_PARAMS, 0), (0, 63), (0, 62)):
        yield f"read-{off}-{count}", [(P.READ_WEIGHTS, P.READ_REQ.pack(off, count))]
    for ftype in (0x00, 0x0C, 0x0D, 0x0E, 0x10, 0x7F, 0x80, 0x81, 0xFE, 0xFF):
        yield f"type-{ftype:#04x}", [(ftype, b"\x01\x02\x03\x04")]
    yield "reset-then-evaluate", [(P.RESET, b""), (P.EVALUATE, _evaluate()), (P.READ_WEIGHTS, P.READ_REQ.pack(0, 1))]


def encode(frames: list[tuple[int, bytes]], *, start_seq: int = 1, version: int = P.VERSION) -> bytes:
    """The wire bytes of ``frames`` (each with a fresh sequence number)."""
    return b"".join(P.encode_frame(t, start_seq + i, body, version=version) for i, (t, body) in enumerate(frames))


def _mutate_body(rng: random.Random, body: bytes) -> bytes:
    b = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b.insert(rng.randint(0, len(b)), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        elif op == 3 and b:
            del b[rng.randrange(len(b) + 1):]
        elif op == 4 and len(b) >= 4:
            i = rng.randrange(len(b) - 3)
            b[i:i + 4] = struct.pack("<I", rng.choice(U32_EDGES))
        elif op == 5 and len(b) >= 4:
            i = rng.randrange(len(b) - 3)
            b[i:i + 4] = _f32(rng.choice(FLOAT_EDGES))
    return bytes(b)


def _valid_session(rng: random.Random) -> list[tuple[int, bytes]]:
    frames = setup()
    for _ in range(rng.randint(1, 6)):
        frames.append(rng.choice([
            (P.EVALUATE, _evaluate(seeds=(rng.randrange(2**32), 5), mults=(1, -1))),
            (P.EVALUATE_CHAIN, P.EVAL_CHAIN.pack(rng.randrange(2), 0, N_PARAMS, 0.01, rng.randrange(2**32), 3, 1)),
            (P.UPDATE, P.UPDATE_HEAD.pack(1, 0, 0, N_PARAMS, 0.1, 1) + struct.pack("<If", 5, 0.5)),
            (P.READ_WEIGHTS, P.READ_REQ.pack(0, 10)),
            (P.CHECKPOINT, P.CKPT_REQ.pack(0, 0)),
            (P.LOAD_BATCH_U8, P.BATCH_U8_HEAD.pack(3, 2, IN, 0.5, 0) + bytes(range(2 * IN)) + b"\x01\x00"),
        ]))
    return frames


def mutated(rng: random.Random) -> bytes:
    """A valid session with a few frame bodies (and maybe a type) mutated, re-framed with correct CRCs."""
    frames = _valid_session(rng)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(frames))
        ftype, body = frames[i]
        if rng.random() < 0.1:
            ftype = rng.randrange(256)
        frames[i] = (ftype, _mutate_body(rng, body))
    return encode(frames, start_seq=rng.randrange(2**16))


def raw(rng: random.Random) -> bytes:
    """Byte-level damage of an encoded session: random bytes, no delimiter for long, stray zeros."""
    data = bytearray(encode(_valid_session(rng)))
    choice = rng.randrange(4)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
    if choice == 1:
        return bytes([rng.randrange(1, 256) for _ in range(rng.randint(257, 1200))]) + b"\x00" + bytes(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] = 0 if choice == 2 else rng.randrange(256)
    return bytes(data)


def corpus(seed: int = 0, random_sessions: int = 300) -> list[tuple[str, bytes]]:
    """(name, session bytes): every extreme case after the set-up, versions and retransmissions, then
    ``random_sessions`` mutated and raw sessions from ``random.Random(seed)``."""
    base = setup()
    out = [(f"extreme-{name}", encode(base + frames)) for name, frames in extreme_frames()]
    out.append(("version-0", encode(base, version=0)))
    out.append(("version-255", encode(base, version=255)))
    again = P.encode_frame(P.EVALUATE, 77, _evaluate())
    out.append(("retransmission", encode(base) + again + again + P.encode_frame(P.EVALUATE, 77, b"\x00")))
    rng = random.Random(seed)
    families: list[Callable[[random.Random], bytes]] = [mutated, mutated, raw]
    for k in range(random_sessions):
        family = families[k % len(families)]
        out.append((f"{family.__name__}-{seed}-{k}", family(rng)))
    return out


def write_corpus(out: str | Path, seed: int = 0, random_sessions: int = 300) -> list[Path]:
    """One file per session in ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, data) in enumerate(corpus(seed, random_sessions)):
        path = out / f"{i:05d}-{name[:60].replace('/', '_')}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def check_simulator(data: bytes, profile: str = "cortex-m4-256k") -> int:
    """Feed one session to the Python simulator frame by frame; every frame that decodes (other than a
    reset) must get exactly one answer — a response or a protocol error with its sequence number.
    Returns the number of answers; raises AssertionError otherwise (any other exception propagates)."""
    from .sim import Simulator

    sim = Simulator(profile)
    answers = 0
    for chunk in data.split(b"\x00")[:-1]:
        reply = sim.feed(chunk + b"\x00")
        try:
            _, ftype, seq, _ = P.decode_frame(chunk)
        except P.FrameError:
            continue  # the device drops what does not decode (docs/protocol.md §1)
        if ftype == P.RESET:
            assert reply == b"", "a reset gets no answer"
            continue
        assert reply.endswith(b"\x00") and reply.count(b"\x00") == 1, f"no single answer to type {ftype:#04x}"
        _, rtype, rseq, _ = P.decode_frame(reply[:-1])
        assert rseq == seq and rtype in (ftype | P.RESPONSE, P.ERROR), (ftype, rtype)
        answers += 1
    return answers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgezo.targets.fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for the session files")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random sessions")
    ap.add_argument("--random", type=int, default=300, help="number of random (mutated, raw) sessions")
    ap.add_argument("--check-simulator", action="store_true",
                    help="also run every session through the Python simulator (fails on a missing answer)")
    args = ap.parse_args(argv)
    paths = write_corpus(args.out, args.seed, args.random)
    print(f"fuzz corpus: {len(paths)} sessions in {args.out} (seed {args.seed})")
    if args.check_simulator:
        answers = sum(check_simulator(p.read_bytes()) for p in paths)
        print(f"simulator: {len(paths)} sessions, {answers} frames answered, 0 failures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

