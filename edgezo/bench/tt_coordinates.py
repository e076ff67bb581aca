"""Wall time of coordinate queries (CGE) on a TT-MLP: one forward per coordinate vs the exact change.

Part of ``edgezo bench tensor-zo`` (docs/methods/tensor-train-zo.md, "Coordinate queries"). For
each net, the same coordinates (the first ``per_tensor`` entries of every parameter tensor) are
evaluated at batch B by :class:`~edgezo.oracles.torch_oracle.TorchOracle` with
``coord_path="block"`` (stacked perturbed copies: every copy runs the layers from the perturbed
one on) and ``coord_path="delta"`` (``TTMLP.forward_coordinates``). Reported: microseconds per
coordinate of each path, their ratio, the largest loss difference between the two paths, and
the measured time of one full CGE step (every coordinate) on the delta path.
"""

from __future__ import annotations

import math
import time

DEFAULT_NETS = {
    "784-256-10 r4": [[[4, 7, 7, 4], [4, 4, 4, 4], 4], [[4, 4, 4, 4], [1, 5, 2, 1], 4]],
    "784-1024-10 r6": [[[7, 4, 4, 7], [8, 4, 4, 8], 6], [[8, 4, 4, 8], [1, 5, 2, 1], 6]],
}


def _best(fn, rounds: int) -> float:
    fn()
    best = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_net(layer_specs, *, batch: int = 250, per_tensor: int = 32, rounds: int = 3, mu: float = 1e-3) -> dict:
    import torch

    from ..losses import cross_entropy
    from ..models.ttm import TTMLP
    from ..oracle import CoordQueries
    from ..oracles.torch_oracle import TorchOracle

    torch.manual_seed(0)
    net = TTMLP(layer_specs)
    batch_data = (torch.randn(batch, net.in_features), torch.randint(0, net.out_features, (batch,)))
    block = TorchOracle(net, cross_entropy, path="stacked")
    delta = TorchOracle(net, cross_entropy, path="stacked", coord_path="delta")
    coords = tuple(c for e in block.layout.entries for c in range(e.offset, e.offset + min(per_tensor, e.numel)))
    sample = CoordQueries(coords, (mu,) * len(coords))
    everything = CoordQueries(tuple(range(block.dim)), (mu,) * block.dim)
    with torch.no_grad():
        gap = float((block.evaluate(sample, batch_data) - delta.evaluate(sample, batch_data)).abs().max())
        t_block = _best(lambda: block.evaluate(sample, batch_data), rounds)
        t_delta = _best(lambda: delta.evaluate(sample, batch_data), rounds)
        t_step = _best(lambda: delta.evaluate(everything, batch_data), rounds)
    return {
        "batch": batch, "coordinates": block.dim, "sampled": len(coords),
        "us_per_coordinate": {"block": round(1e6 * t_block / len(coords), 1),
                              "delta": round(1e6 * t_delta / len(coords), 2)},
        "block_over_delta": round(t_block / t_delta, 1),
        "max_loss_difference": gap,
        "delta_full_step_s": round(t_step, 4),
    }


def run(*, batch: int = 250, per_tensor: int = 32, rounds: int = 3, nets: dict | None = None) -> dict:
    """The coordinate-query table for every net."""
    return {name: measure_net(specs, batch=batch, per_tensor=per_tensor, rounds=rounds)
            for name, specs in (nets or DEFAULT_NETS).items()}
