"""Zeroth-order fine-tuning of a GPT-2-architecture language model at inference memory.

A GPT-2 built from a ``GPT2Config`` (random initialisation, nothing downloaded;
GPT-2 small widths and vocabulary: 124M parameters) learns a small synthetic
text set byte by byte with central RGE (Gaussian directions, q seeds per step)
and seed-SGD, ``θ ← θ − lr Σ_i c_i z(seed_i)``. The oracle's memory budget
(``--max-memory``, default 256MB beyond the model) makes it take the lean path: each
layer's perturbed weight ``θ_l + μ z_l`` exists only while that layer runs, so
the step needs about the memory of an inference pass (docs/memory.md).

    python examples/zo_finetune_gpt2.py                      # CPU, 124M parameters
    python examples/zo_finetune_gpt2.py --device cuda --steps 200 --size medium
    python examples/zo_finetune_gpt2.py --size tiny --steps 30  # seconds, for a quick look

Needs ``pip install 'edgezo[llm]'`` (transformers).
"""

from __future__ import annotations

import argparse
import random
import resource
import time

import torch
from edgezo.models import build_model

from edgezo.estimators import RGE
from edgezo.losses import next_token
from edgezo.optim import seed_sgd_step
from edgezo.oracles.torch_oracle import TorchOracle

WORDS = {"subject": ["the cat", "a dog", "my friend", "the robot", "an old man"],
         "verb": ["sees", "likes", "builds", "paints", "finds"],
         "object": ["a red ball", "the small house", "two green trees", "a quiet lake", "the tall tower"]}


def synthetic_text(sentences: int, seed: int = 0) -> str:
    """Sentences ``subject verb object.`` from a fixed vocabulary (seeded)."""
    rng = random.Random(seed)
    return " ".join(f"{rng.choice(WORDS['subject'])} {rng.choice(WORDS['verb'])} {rng.choice(WORDS['object'])}."
                    for _ in range(sentences))


def windows(text: str, context: int) -> torch.Tensor:
    """Non-overlapping byte windows (N, context) of the text (tokens = bytes, ids < 256)."""
    ids = torch.tensor(list(text.encode()), dtype=torch.long)
    n = ids.numel() // context
    return ids[: n * context].view(n, context)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", help="GPT-2 widths: tiny, small (124M), medium (355M), large")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--q", type=int, default=1)
    ap.add_argument("--mu", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-memory", default="256MB",
                    help="extra memory the oracle may use beyond the model ('auto': what is free); "
                         "a budget below the stacked path's need picks the lean path")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    vocab = 50257 if args.size != "tiny" else 256
    model = build_model({"kind": "gpt2", "size": args.size, "vocab_size": vocab, "context": args.context}).to(device)
    data = windows(synthetic_text(2000), args.context).to(device)
    oracle = TorchOracle(model, next_token, max_memory=args.max_memory)
    rge = RGE(q=args.q, mu=args.mu, difference="central", direction="gaussian")
    print(f"GPT-2 {args.size}: {oracle.dim / 1e6:.1f}M parameters on {device}, {data.shape[0]} windows of "
          f"{args.context} bytes, budget {oracle.max_memory / 2**30:.1f} GiB")
    held_out = (data[: args.batch], data[: args.batch])
    start = oracle.loss(held_out)
    t0 = time.perf_counter()
    for step in range(args.steps):
        rows = torch.randint(args.batch, data.shape[0], (args.batch,), generator=torch.Generator().manual_seed(step))
        batch = (data[rows.to(device)], data[rows.to(device)])
        est = rge.estimate(oracle, batch, step=step, seed=0)
        seed_sgd_step(oracle, est, args.lr)
        print(f"step {step:4d}  loss {est.loss:.4f}")
    result = {"parameters": oracle.dim, "held_out_loss_start": start, "held_out_loss_end": oracle.loss(held_out),
              "paths": sorted(set(oracle.choices.values())), "s_per_step": (time.perf_counter() - t0) / args.steps,
              "peak_memory_mb": peak_memory_mb(device), "theta_mb": oracle.dim * 4 / 2**20}
    print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
