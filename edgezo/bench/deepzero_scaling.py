"""Step-time scaling of dense CGE on 28×28 Fashion-MNIST models (``edgezo bench deepzero --mnist DIR``).

For DeepZero's CNN family at 28×28 input (one channel, a 2×2 max-pool in
every block), the time of one dense CGE step (all d coordinates, forward
difference, a batch of real Fashion-MNIST training images) is measured for the
four evaluation variants of :func:`edgezo.bench.deepzero.time_cge_steps`
(naive, reuse, reuse + batched, batched), interleaved in one process.

The growth with parameter count is summarized per variant by the exponent
``b`` of ``t ≈ a · d^b``, a least-squares line through (log d, log t)
(``scipy.stats.linregress``) over at least three sizes. Naive CGE runs d
full forwards; in this family a forward does not cost O(d) (the first conv
at full resolution dominates, deeper blocks run on pooled maps), so its
exponent stays near 1 at these sizes; reuse and rank-one coordinate
evaluation lower the cost of each of the d queries.
"""

from __future__ import annotations

import math

import torch
from scipy import stats

# (depth, width): 736 / 3,734 / 7,040 parameters at one input channel (full); toy widths for --quick.
SIZES = {"quick": [(1, 4), (1, 8), (2, 8)], "full": [(1, 33), (2, 19), (3, 19)]}
TABLE_MODEL = {"quick": (2, 8), "full": (2, 19)}
BATCH = {"quick": 8, "full": 16}
REPS = {"quick": 1, "full": 2}


def fit_exponent(params: list[int], seconds: list[float]) -> dict:
    """``t ≈ a · d^b``: slope b, intercept log a and r² of the least-squares line in log-log."""
    fit = stats.linregress([math.log(p) for p in params], [math.log(s) for s in seconds])
    return {"exponent": float(fit.slope), "log_a": float(fit.intercept), "r2": float(fit.rvalue ** 2)}


def fmnist_batch(data_dir: str, size: int, seed: int):
    """``size`` random Fashion-MNIST training images (1×28×28) and their labels."""
    from ..data import load_dataset

    data = load_dataset("fashion-mnist", data_dir, flatten=False)
    idx = torch.randperm(data.x_train.shape[0], generator=torch.Generator().manual_seed(seed))[:size]
    return data.x_train[idx], data.y_train[idx]


def run_scaling(data_dir: str, mode: str, *, seed: int = 0, log=None) -> dict:
    """Time dense CGE steps per variant over :data:`SIZES`; fit the exponent of each variant.

    ``log(line)`` gets one line per size as it is measured."""
    from .deepzero_timing import VARIANTS, time_cge_steps

    batch = fmnist_batch(data_dir, BATCH[mode], seed)
    rows = []
    for depth, width in SIZES[mode]:
        rows.append(time_cge_steps(depth, width, batch, REPS[mode], seed))
        if log is not None:
            log(f"28x28 dense CGE step, {rows[-1]['params']} params: " + ", ".join(
                f"{v} {s:.3g} s" for v, s in rows[-1]["step_s"].items()))
    params = [r["params"] for r in rows]
    fits = {v: fit_exponent(params, [r["step_s"][v] for r in rows]) for v in VARIANTS}
    depth, width = TABLE_MODEL[mode]
    table_row = next(r for r in rows if (r["depth"], r["width"]) == (depth, width))
    return {"batch": BATCH[mode], "image_size": int(batch[0].shape[-1]), "sizes": rows, "fits": fits,
            "largest_table_model": table_row}
