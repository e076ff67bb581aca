"""``edgezo bench estimators``: estimator quality and oracle throughput.

1. Cosine similarity between the estimate and the true gradient, against the
   number of directions q, for RGE (Rademacher / Gaussian / sphere, forward and
   central difference) and CGE, on a random quadratic (analytic gradient
   ``Aθ + b``) and on the digits MLP (autograd gradient at initialization).
   For RGE, E[cos] ≈ sqrt(q / (q + d)) — the d/q variance law.
2. Forward passes per second of the TorchOracle on the digits MLP at q = 16:
   one functional forward per point (loop) against one batched forward along a
   perturbation axis (stacked) and ``torch.func.vmap``, measured interleaved in
   the same run.

Goals: ``batched_speedup`` (stacked / loop throughput), ``rge_cosine_q64``
(central Rademacher RGE, q = 64, digits MLP), ``cge_cosine`` (forward CGE,
digits MLP).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn

from ..estimators import CGE, RGE
from ..losses import cross_entropy
from ..oracle import SeedQueries
from ..oracles.torch_oracle import TorchOracle

VARIANTS = [(kind, diff) for kind in ("rademacher", "gaussian", "sphere") for diff in ("forward", "central")]


class Quadratic(nn.Module):
    """f(θ) = ½ θᵀAθ + bᵀθ with a random SPD A (condition number ~100)."""

    def __init__(self, dim: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        eig = torch.logspace(-1, 1, dim, dtype=torch.float64)
        self.register_buffer("A", (q * eig) @ q.T)
        self.register_buffer("b", torch.randn(dim, generator=g, dtype=torch.float64))
        self.theta = nn.Parameter(torch.randn(dim, generator=g, dtype=torch.float64))

    def value(self, theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((theta @ self.A) * theta).sum(-1) + theta @ self.b

    def forward(self, x):
        return self.value(self.theta)

    def forward_stacked(self, params, x):
        return self.value(params["theta"])

    def gradient(self) -> torch.Tensor:
        return (self.A @ self.theta + self.b).detach()


def _value_loss(outputs, targets):
    return outputs


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def cosine_sweep(oracle, true_grad, batch, qs, repeats, mu, seed) -> dict:
    out = {}
    for kind, diff in VARIANTS:
        rows = []
        for q in qs:
            est = RGE(q=q, mu=mu, difference=diff, direction=kind)
            cos = [_cosine(est.estimate(oracle, batch, step=r, seed=seed).to_dense(oracle.layout, dtype=torch.float64),
                           true_grad) for r in range(repeats)]
            rows.append({"q": q, "cosine_mean": float(np.mean(cos)), "cosine_std": float(np.std(cos))})
        out[f"rge-{kind}-{diff}"] = rows
    for diff in ("forward", "central"):
        est = CGE(mu=mu if diff == "central" else mu / 10, difference=diff)
        g = est.estimate(oracle, batch, step=0, seed=seed).to_dense(oracle.layout, dtype=torch.float64)
        out[f"cge-{diff}"] = {"cosine": _cosine(g, true_grad),
                              "forward_passes": est.forward_passes_per_step(oracle.dim)}
    return out


def digits_setup(seed: int, batch_size: int = 128):
    from ..data import load_digits
    from ..models import MLP

    data = load_digits()
    torch.manual_seed(seed)
    model = MLP([64, 32, 10])
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(data.x_train.shape[0], generator=g)[:batch_size]
    return model, (data.x_train[idx], data.y_train[idx])


def throughput(model, batch, q: int, reps: int, seed: int) -> dict:
    """Forward passes per second of each evaluation path, interleaved."""
    oracles = {p: TorchOracle(model, cross_entropy, path=p) for p in ("loop", "stacked", "vmap")}
    times = {p: [] for p in oracles}
    for r in range(reps + 3):
        for p, o in oracles.items():
            seeds = tuple(int(s) for s in np.random.default_rng([seed, r]).integers(0, 2**32, q))
            queries = SeedQueries(seeds, (1e-2,) * q)
            t0 = time.perf_counter()
            o.evaluate(queries, batch)
            if r >= 3:
                times[p].append(time.perf_counter() - t0)
    out = {}
    for p, ts in times.items():
        med = statistics.median(ts)
        out[p] = {"median_us_per_call": med * 1e6, "forward_passes_per_s": q / med}
    return out


def run(args) -> dict:
    seed = args.seed
    quick = args.quick
    qs = [1, 4, 16, 64] if quick else [1, 4, 16, 64, 256]
    repeats = 6 if quick else 20
    torch.manual_seed(seed)

    quad = Quadratic(200 if quick else 1000, seed)
    quad_oracle = TorchOracle(quad, _value_loss, path="stacked")
    dummy = (torch.zeros(1, 1), torch.zeros(1))
    quadratic = cosine_sweep(quad_oracle, quad.gradient(), dummy, qs, repeats, 1e-4, seed)

    model, batch = digits_setup(seed)
    oracle = TorchOracle(model, cross_entropy)
    _, true_grad = oracle.autograd(batch)
    mlp = cosine_sweep(oracle, true_grad.double(), batch, qs, repeats, 1e-2, seed)

    speed = throughput(model, batch, 16, 60 if quick else 400, seed)
    speedup = speed["stacked"]["forward_passes_per_s"] / speed["loop"]["forward_passes_per_s"]
    q64 = next(r for r in mlp["rge-rademacher-central"] if r["q"] == 64)
    return {
        "goals": {
            "batched_speedup": speedup,
            "rge_cosine_q64": q64["cosine_mean"],
            "cge_cosine": mlp["cge-forward"]["cosine"],
        },
        "quadratic": {"dim": quad_oracle.dim, "results": quadratic},
        "digits_mlp": {"dim": oracle.dim, "batch": 128, "results": mlp,
                       "theory_rge_cosine_q64": float(np.sqrt(64 / (64 + oracle.dim)))},
        "throughput": {"q": 16, "batch": 128, "paths": speed,
                       "vmap_speedup": speed["vmap"]["forward_passes_per_s"] / speed["loop"]["forward_passes_per_s"]},
    }


def plot(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, title in ((axes[0], "quadratic", "random quadratic"), (axes[1], "digits_mlp", "digits MLP")):
        res = result[key]["results"]
        for name, rows in res.items():
            if name.startswith("rge"):
                ax.plot([r["q"] for r in rows], [r["cosine_mean"] for r in rows], marker="o", ms=3,
                        label=name[4:])
        ax.axhline(res["cge-forward"]["cosine"], color="k", ls="--", lw=1, label="CGE (forward)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("q (directions)")
        ax.set_ylabel("cosine to true gradient")
        ax.set_title(f"{title}, d = {result[key]['dim']}")
        ax.legend(fontsize=7)
    paths = result["throughput"]["paths"]
    names = list(paths)
    axes[2].bar(names, [paths[n]["forward_passes_per_s"] for n in names], color=["C0", "C1", "C2"])
    axes[2].set_ylabel("forward passes / s")
    axes[2].set_title(f"TorchOracle, digits MLP, q = 16 (speedup {result['goals']['batched_speedup']:.2f}×)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
