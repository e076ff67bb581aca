"""Throughput of the stacked TT forward (q perturbed copies of one layer) against dense and the matmul peak.

Part of ``edgezo bench tensor-zo`` (docs/methods/tensor-train-zo.md, "Performance"). For one
:class:`~edgezo.models.ttm.TTLinear` layer (M×N, K cores) and q perturbed copies of every core,
the batch x (B, N) is shared by the copies (an RGE step) and each path returns (q, B, M):

* ``dense``: the dense stacked forward of the same layer, x @ [W_1 … W_q]ᵀ as one GEMM —
  2·q·B·M·N FLOPs, the yardstick;
* ``tt-reconstruct`` (``forward_stacked(path="dense")``, what ``mode="auto"`` picks at this
  batch): rebuild the q dense W from the cores, then the same GEMM;
* ``tt-contract`` (``path="contract"``): the core-by-core chain, W never formed —
  2·q·B·F_c FLOPs with F_c = Σ_k M_{<k} N_{>k} r_{k-1} m_k n_k r_k;
* ``tt-einsum``: the whole chain as one ``torch.einsum`` over all cores with the q axis
  batched (torch picks the contraction order with opt_einsum when it is installed).

Achieved FLOP/s are reported two ways: "executed" (the FLOPs the path really performs) and
"dense-equivalent" (2·q·B·M·N / time, i.e. how fast the layer's output arrives compared with
the dense stacked forward). The peak is the best of a few square float32 GEMMs on the same
threads. Times are the minimum over interleaved rounds (the machine may be shared).

Measured (``edgezo bench tensor-zo``, torch 2.13 CPU, 2 threads on a shared 2-core host,
q = 11, B = 2,000; docs/methods/tensor-train-zo.md): the reconstruct path (what
``mode="auto"`` picks at this batch) takes 1.4-1.5× the dense stacked forward, ~0.7 of
the GEMM peak; the core-by-core chain 11-15× and the one-einsum path 7× (its GEMMs have
inner dimension r·n_k ≤ 28 and are memory bound). So the reconstruct path stays.
"""

from __future__ import annotations

import math
import string
import time
from collections.abc import Callable

DEFAULT_LAYERS = {
    "784x256 r4": ([4, 7, 7, 4], [4, 4, 4, 4], 4),
    "784x1024 r6": ([7, 4, 4, 7], [8, 4, 4, 8], 6),
}


def _best_time(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Minimum wall time per function over ``rounds`` interleaved rounds (after one warm-up call each)."""
    for fn in fns.values():
        fn()
    best = {k: math.inf for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def matmul_peak(n: int = 2048, rounds: int = 5) -> float:
    """Measured float32 GEMM throughput (FLOP/s) of an n×n by n×n product: 2n³ / best time."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    t = _best_time({"mm": lambda: a @ b}, rounds)["mm"]
    return 2.0 * n ** 3 / t


def einsum_stacked(cores, x):
    """y[q, b, (i_1..i_K)] = Σ_j x[b, (j_1..j_K)] Π_k G_k[q, a_{k-1}, i_k, j_k, a_k] as one einsum.

    ``cores``: K tensors (q, r_{k-1}, m_k, n_k, r_k); ``x``: (B, N). Returns (q, B, M).
    """
    import torch

    k = len(cores)
    letters = iter(string.ascii_letters)
    q, b = next(letters), next(letters)
    ranks = [next(letters) for _ in range(k + 1)]
    outs = [next(letters) for _ in range(k)]
    ins = [next(letters) for _ in range(k)]
    terms = [q + ranks[i] + outs[i] + ins[i] + ranks[i + 1] for i in range(k)]
    spec = f"{b}{''.join(ins)}," + ",".join(terms) + f"->{q}{b}{''.join(outs)}"
    n_modes = [c.shape[-2] for c in cores]
    y = torch.einsum(spec, x.reshape(x.shape[0], *n_modes), *cores)
    return y.reshape(y.shape[0], y.shape[1], -1)


def measure_layer(in_modes, out_modes, rank, *, q: int = 11, batch: int = 2000, rounds: int = 5) -> dict:
    """Times and FLOP/s of the four paths for one layer (see the module docstring)."""
    import torch

    from ..models.ttm import TTLinear

    torch.manual_seed(0)
    layer = TTLinear(in_modes, out_modes, rank, bias=False)
    cores = [c.detach() + 0.01 * torch.randn(q, *c.shape) for c in layer.cores]
    x = torch.randn(batch, layer.in_features)
    m, n = layer.out_features, layer.in_features
    with torch.no_grad():
        w = layer.forward_stacked(cores, None, torch.eye(n), path="dense").transpose(1, 2).contiguous()
        fns = {
            "dense": lambda: (x @ w.reshape(q * m, n).t()).reshape(batch, q, m).transpose(0, 1),
            "tt-reconstruct": lambda: layer.forward_stacked(cores, None, x, path="dense"),
            "tt-contract": lambda: layer.forward_stacked(cores, None, x, path="contract"),
            "tt-einsum": lambda: einsum_stacked(cores, x),
        }
        best = _best_time(fns, rounds)
    fc, mn = layer._cost_terms()
    recon = q * mn * max(layer.ranks) * 2.0  # the final merge of the two halves dominates
    executed = {"dense": 2.0 * q * batch * mn, "tt-reconstruct": 2.0 * q * batch * mn + recon,
                "tt-contract": 2.0 * q * batch * fc, "tt-einsum": 2.0 * q * batch * fc}
    dense_equiv = 2.0 * q * batch * mn
    return {
        "q": q, "batch": batch, "in_modes": list(in_modes), "out_modes": list(out_modes), "rank": rank,
        "macs_per_sample": {"dense": mn, "tt_contract": fc},
        "seconds": {k: round(v, 6) for k, v in best.items()},
        "executed_gflops": {k: round(executed[k] / best[k] / 1e9, 2) for k in best},
        "dense_equivalent_gflops": {k: round(dense_equiv / best[k] / 1e9, 2) for k in best},
        "time_over_dense": {k: round(best[k] / best["dense"], 3) for k in best},
    }


def run(*, q: int = 11, batch: int = 2000, rounds: int = 5, layers: dict | None = None) -> dict:
    """The stacked-forward table for every layer, with the matmul peak measured in the same process."""
    import torch.backends.opt_einsum as opt_einsum

    peak = matmul_peak(rounds=rounds)
    out = {"matmul_peak_gflops": round(peak / 1e9, 2), "einsum_path_by_opt_einsum": opt_einsum.is_available(),
           "layers": {}}
    for name, (i, o, r) in (layers or DEFAULT_LAYERS).items():
        row = measure_layer(i, o, r, q=q, batch=batch, rounds=rounds)
        row["fraction_of_peak"] = {k: round(v * 1e9 / peak, 3) for k, v in row["executed_gflops"].items()}
        out["layers"][name] = row
    return out
