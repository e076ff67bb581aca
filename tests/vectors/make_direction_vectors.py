#!/usr/bin/env python
"""Generate (or check) the committed direction test vectors.

    python tests/vectors/make_direction_vectors.py            # write directions.json next to this file
    python tests/vectors/make_direction_vectors.py --check    # compare with the committed file (exit 1 on mismatch)
    python tests/vectors/make_direction_vectors.py --accuracy # max error of the float32 Box-Muller vs float64
    python tests/vectors/make_direction_vectors.py --fit      # re-derive the polynomial coefficients (~2 min)

The vectors are produced by ``edgezo.directions`` with its torch backend and
cross-checked against its numpy backend. The file format is described in
docs/directions.md, section 9. Regenerate only when the specification's
version changes: the committed values are the contract the C firmware and any
other implementation are tested against.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch

from edgezo import directions as D

HERE = Path(__file__).resolve().parent
OUT = HERE / "directions.json"

# (kind, seed, start, count): word/pair boundaries, odd starts, the end of the
# 2^32 counter range, single coordinates.
CASES = [
    ("rademacher", 0, 0, 96),
    ("rademacher", 1, 0, 64),
    ("rademacher", 2, 0, 64),
    ("rademacher", 42, 37, 100),
    ("rademacher", 0xFFFFFFFF, 2**32 - 96, 96),
    ("rademacher", 123456789, 1_000_000, 1),
    ("gaussian", 0, 0, 64),
    ("gaussian", 1, 0, 64),
    ("gaussian", 2, 0, 64),
    ("gaussian", 12345, 1001, 33),
    ("gaussian", 0xFFFFFFFF, 2**32 - 16, 16),
    ("gaussian", 7, 2409, 1),
    ("gaussian", 2024, 250_000, 40),
    ("sphere", 3, 0, 50),
    ("sphere", 9, 101, 257),
    ("sphere", 5, 10, 1),
    ("sphere", 77, 0, 2),
]


def f32_bits(x: torch.Tensor) -> list[str]:
    return [f"{v & 0xFFFFFFFF:08x}" for v in x.to(torch.float32).contiguous().view(torch.int32).tolist()]


def _u32_samples(rng: np.random.Generator, n: int, extra: list[int]) -> list[int]:
    vals = list(extra) + [int(v) for v in rng.integers(0, 2**32, n, dtype=np.uint64)]
    return [v for i, v in enumerate(vals) if v not in vals[:i]]


def build() -> dict:
    rng = np.random.default_rng(20240601)
    hx = _u32_samples(rng, 24, [0, 1, 2, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x9E3779B9])
    hh = D.hash32(torch.tensor(hx, dtype=torch.int64)).tolist()
    keys = []
    for kind in ("rademacher", "gaussian"):
        for seed in (0, 1, 2, 3, 0xFFFFFFFF):
            keys.append({"seed": seed, "kind": kind, "key": int(D.seed_keys([seed], kind)[0])})
    words = []
    for seed, kind in ((0, "rademacher"), (1, "gaussian")):
        ctr = [0, 1, 2, 3, 1000, 0xFFFFFFFF]
        k = int(D.seed_keys([seed], kind)[0])
        w = D.words([seed], torch.tensor(ctr), kind)[0].tolist()
        words += [{"key": k, "counter": c, "word": x} for c, x in zip(ctr, w)]
    w1 = _u32_samples(rng, 40, [0, 0xFF, 0x100, 0x1FF, 0x200, 0x7FFFFFFF, 0x80000000, 0xB504F300,
                                0xFFFFFE00, 0xFFFFFFFF])
    r = D._radius(torch.tensor(w1, dtype=torch.int64))
    radius = [[w, b] for w, b in zip(w1, f32_bits(r))]
    w2 = [(o << 29) | (m << 8) for o in range(8) for m in (0, 0x1FFFFF, 0x0ABCDE)]
    w2 = _u32_samples(rng, 24, w2 + [0xFFFFFFFF])
    c, s = D._cos_sin(torch.tensor(w2, dtype=torch.int64))
    cos_sin = [[w, cb, sb] for w, cb, sb in zip(w2, f32_bits(c), f32_bits(s))]
    cases = []
    for kind, seed, start, count in CASES:
        z = D._generate(torch.tensor([seed]), start, count, kind, "cpu", torch.float32, "torch")[0]
        zn = D._generate(torch.tensor([seed]), start, count, kind, "cpu", torch.float32, "numpy")[0]
        if not torch.equal(z.view(torch.int32), zn.view(torch.int32)):
            raise SystemExit(f"torch and numpy backends disagree on {kind, seed, start, count}")
        cases.append({"kind": kind, "seed": seed, "start": start, "count": count, "bits": f32_bits(z)})
    return {
        "format": "edgezo-direction-vectors-1",
        "spec": D.SPEC_VERSION,
        "generator": "tests/vectors/make_direction_vectors.py",
        "note": "float32 values are given as 8-hex-digit IEEE-754 bit patterns; integers are uint32",
        "hash32": [[x, h] for x, h in zip(hx, hh)],
        "keys": keys,
        "words": words,
        "radius": radius,
        "cos_sin": cos_sin,
        "cases": cases,
    }


def dump(doc: dict) -> str:
    """JSON with one vector per line (readable diffs)."""
    lines = ["{"]
    items = list(doc.items())
    for i, (k, v) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        if isinstance(v, list):
            lines.append(f"  {json.dumps(k)}: [")
            lines += [f"    {json.dumps(e)}" + ("," if j < len(v) - 1 else "") for j, e in enumerate(v)]
            lines.append(f"  ]{sep}")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)}{sep}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# accuracy of the float32 Box-Muller against float64
# ---------------------------------------------------------------------------
def _ulp_err(x32: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|x - ref| in units of the float32 ulp of ref (ref float64, normal range)."""
    e = np.floor(np.log2(np.abs(ref)))
    return np.abs(x32.astype(np.float64) - ref) / np.exp2(e - 23)


def accuracy(samples: int = 1 << 24) -> dict:
    B = D._NumpyOps
    a = np.arange(1 << 23, dtype=np.uint32)
    r = D._radius(a << np.uint32(9), B)
    r_ref = np.sqrt(-2.0 * np.log((2.0 * a + 1.0) * 2.0**-24))
    r_err = _ulp_err(r, r_ref)
    t = np.arange(1 << 24, dtype=np.uint32)
    c, s = D._cos_sin(t << np.uint32(8), B)
    phi = np.pi / 4 * ((t & 0x1FFFFF) * 2.0 + 1.0) * 2.0**-22
    swap = ((t >> 21) & 1).astype(bool)
    c_ref = np.where(swap, np.sin(phi), np.cos(phi)) * np.where((t >> 23) & 1, -1.0, 1.0)
    s_ref = np.where(swap, np.cos(phi), np.sin(phi)) * np.where((t >> 22) & 1, -1.0, 1.0)
    c_err, s_err = _ulp_err(c, c_ref), _ulp_err(s, s_ref)
    # combined z = r cos: random pairs, plus the worst radius x the worst angle errors
    rng = np.random.default_rng(1)
    ia = rng.integers(0, 1 << 23, samples)
    it = rng.integers(0, 1 << 24, samples)
    r_rel = (r.astype(np.float64) - r_ref) / r_ref
    c_rel = (c.astype(np.float64) - c_ref) / c_ref
    worst_a = np.concatenate([np.argsort(r_rel)[:1500], np.argsort(r_rel)[-1500:]])
    worst_t = np.concatenate([np.argsort(c_rel)[:1500], np.argsort(c_rel)[-1500:]])
    ia = np.concatenate([ia, np.repeat(worst_a, len(worst_t))])
    it = np.concatenate([it, np.tile(worst_t, len(worst_a))])
    z = r[ia] * c[it]
    z_ref = r_ref[ia] * c_ref[it]
    z_err = _ulp_err(z, z_ref)
    return {
        "radius_max_ulp": float(r_err.max()),
        "cos_max_ulp": float(c_err.max()),
        "sin_max_ulp": float(s_err.max()),
        "gaussian_max_ulp": float(z_err.max()),
        "gaussian_random_pairs_max_ulp": float(z_err[:samples].max()),
        "gaussian_mean_ulp": float(z_err[:samples].mean()),
        "gaussian_max_rel_err": float(np.max(np.abs(z.astype(np.float64) - z_ref) / np.abs(z_ref))),
        "gaussian_pairs_checked": int(len(z)),
        "max_abs_value": float(r.max()),
    }


# ---------------------------------------------------------------------------
# coefficient derivation (provenance of the constants in the spec)
# ---------------------------------------------------------------------------
def fit(nudge_rounds: bool = True) -> dict:
    """Near-minimax fits (Lawson's iteratively reweighted least squares in
    float64), rounded to float32, then each coefficient nudged by up to +-3
    float32 ulps while the exhaustive max error of the float32 pipeline drops
    (for Q: the error of L = -2 ln u; for S and C: of sin and cos)."""

    def lawson(A, target, weight, iters=300):
        w = np.full(len(target), 1.0 / len(target))
        for _ in range(iters):
            sw = np.sqrt(w)
            c = np.linalg.lstsq(A * (sw * weight)[:, None], sw * weight * target, rcond=None)[0]
            e = np.abs(weight * (A @ c - target))
            w = w * e
            w /= w.sum()
        return c

    zmax = (3 - 2 * np.sqrt(2)) ** 2
    z = np.linspace(1e-9, zmax, 20001)
    s = np.sqrt(z)
    R = lawson(np.stack([z**k for k in range(3)], 1), (-4 * np.arctanh(s) / s + 4) / z, z / 4)
    y = np.linspace(1e-9, 1, 20001)
    t = y * y
    S = lawson(np.stack([t**k for k in range(4)], 1), np.sin(np.pi / 4 * y) / y, y / np.sin(np.pi / 4 * y))
    C = lawson(np.stack([t**k for k in range(4)], 1), (np.cos(np.pi / 4 * y) - 1) / t, t / np.cos(np.pi / 4 * y))
    coef = {"Q0": -4.0, "Q1": R[0], "Q2": R[1], "Q3": R[2], "S1": S[0], "S3": S[1], "S5": S[2], "S7": S[3],
            "C2": C[0], "C4": C[1], "C6": C[2], "C8": C[3]}
    coef = {k: float(np.float32(v)) for k, v in coef.items()}
    if nudge_rounds:
        a = np.arange(1 << 23, dtype=np.uint32)
        L_ref = -2.0 * np.log((2.0 * a + 1.0) * 2.0**-24)
        m = np.arange(1 << 21, dtype=np.uint32)
        phi = np.pi / 4 * (m * 2.0 + 1.0) * 2.0**-22

        def err(cf):
            saved = {k: getattr(D, "_" + k) for k in cf}
            try:
                for k, v in cf.items():
                    setattr(D, "_" + k, v)
                L = D._neg2log(a << np.uint32(9), D._NumpyOps)
                cc, ss = D._cos_sin(m << np.uint32(8), D._NumpyOps)
                return {"Q": _ulp_err(L, L_ref).max(), "S": _ulp_err(ss, np.sin(phi)).max(),
                        "C": _ulp_err(cc, np.cos(phi)).max()}
            finally:
                for k, v in saved.items():
                    setattr(D, "_" + k, v)

        def step(v, k):
            return struct.unpack("<f", struct.pack("<i", struct.unpack("<i", struct.pack("<f", v))[0] + k))[0]

        for fam in ("Q", "S", "C"):
            names = [k for k in coef if k[0] == fam and k != "Q0"]
            best = err(coef)[fam]
            improved = True
            while improved:
                improved = False
                for nm in names:
                    for k in (-3, -2, -1, 1, 2, 3):
                        trial = dict(coef, **{nm: step(coef[nm], k)})
                        e = err(trial)[fam]
                        if e < best - 1e-9:
                            best, coef, improved = e, trial, True
    return {k: f"0x{struct.unpack('<I', struct.pack('<f', v))[0]:08X}" for k, v in coef.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed file")
    ap.add_argument("--accuracy", action="store_true", help="print the error vs float64")
    ap.add_argument("--fit", action="store_true", help="re-derive the polynomial coefficients")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.accuracy:
        print(json.dumps(accuracy(), indent=2))
        return 0
    if args.fit:
        print(json.dumps(fit(), indent=2))
        return 0
    text = dump(build())
    if args.check:
        same = args.out.exists() and json.loads(args.out.read_text()) == json.loads(text)
        print("vectors match" if same else f"vectors DIFFER from {args.out}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
