"""Dense CGE step timing for DeepZero's CNN family, four evaluation variants side by side.

* ``naive`` — a full forward per coordinate, one at a time (``TorchOracle(path="loop")``);
* ``reuse`` — a forward from the coordinate's stage, one at a time (``StagedOracle(path="loop")``;
  DeepZero's feature reuse);
* ``reuse_batched`` — reuse plus q coordinates of a tensor per call (``StagedOracle(path="auto")``);
* ``batched`` — full forwards, q per call, no reuse (``TorchOracle(path="stacked")``).

Used by ``edgezo bench deepzero`` on 8×8 digits and on 28×28 Fashion-MNIST.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..estimators import CGE
from ..losses import cross_entropy
from ..oracles.staged import StagedOracle
from ..oracles.torch_oracle import TorchOracle

VARIANTS = ("naive", "reuse", "reuse_batched", "batched")
MU = 5e-3


def cnn_model(depth: int, width: int, seed: int, image_size: int = 8):
    from ..models import build_model

    torch.manual_seed(seed)
    return build_model({"kind": "cnn", "depth": depth, "width": width, "in_channels": 1, "image_size": image_size,
                        "min_size": 2 if image_size == 8 else 1})


def _oracle(variant: str, model):
    if variant == "naive":
        return TorchOracle(model, cross_entropy, path="loop")
    if variant == "batched":
        return TorchOracle(model, cross_entropy, path="stacked")
    return StagedOracle(model, cross_entropy, path="loop" if variant == "reuse" else "auto")


def time_cge_steps(depth: int, width: int, batch, reps: int, seed: int) -> dict:
    """Median wall time of one dense CGE step per variant (interleaved repetitions).

    The model's input size is read from ``batch`` (8×8 digits: pools while ≥ 2 pixels; 28×28
    Fashion-MNIST: pools in every block, as DeepZero does).
    """
    model = cnn_model(depth, width, seed, image_size=int(batch[0].shape[-1]))
    oracles = {v: _oracle(v, model) for v in VARIANTS}
    dim = oracles["naive"].dim
    est = CGE(mu=MU)
    warm = CGE(mu=MU, coords=list(range(min(dim, 64))))
    for v, o in oracles.items():  # warm-up; the auto path also picks its evaluation paths here
        (est if v == "reuse_batched" else warm).estimate(o, batch, step=0, seed=seed)
    times = {v: [] for v in VARIANTS}
    grads = {}
    for r in range(reps):
        for v, o in oracles.items():
            t0 = time.perf_counter()
            g = est.estimate(o, batch, step=r, seed=seed)
            times[v].append(time.perf_counter() - t0)
            grads[v] = g.coord_terms[0][1]
    med = {v: statistics.median(ts) for v, ts in times.items()}
    agree = max(float((grads[v] - grads["naive"]).abs().max()) for v in VARIANTS)
    chosen = {}
    for key, path in oracles["reuse_batched"].choices.items():
        if key.startswith("coord:"):
            chosen[path] = chosen.get(path, 0) + 1
    return {"depth": depth, "width": width, "params": dim, "coords_per_step": dim, "reps": reps,
            "step_s": med, "all_s": times,
            "speedup_vs_naive": {v: med["naive"] / med[v] for v in VARIANTS},
            "max_abs_grad_difference": agree, "reuse_batched_paths": chosen}


__all__ = ["VARIANTS", "cnn_model", "time_cge_steps"]
