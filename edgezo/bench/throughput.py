"""``edgezo bench throughput``: useful FLOP/s of a ZO step against the machine's float32 matmul peak.

For four small networks of the project — the digits MLP, the tensor-train MLP,
the DeepZero CNN and the PINN network (float32 here) — one ZO step is RGE
forward difference with q Gaussian seeds, fresh every step, and the seed-SGD
update (``TorchOracle``, path ``auto``). Its useful arithmetic is the matmul /
convolution FLOPs of its forwards (``torch.utils.flop_counter``):

    useful FLOP/s = (q + 1) · F_forward(batch) / step time

compared, at the same thread count, with

* the float32 matmul peak: best ``torch.mm`` of 1024 × 1024 matrices, 2n³ / t;
* a plain ``torch.func.vmap(functional_call)`` step over ``θ + μ z`` with
  ``torch.randn`` directions (q + 1 forwards);
* the MeZO in-place loop (:mod:`edgezo.bench.mezo`) with q seeds (2q forwards).

It also compares the portable Gaussian generator (docs/directions.md) with
``torch.randn`` (values per second, float32, fresh seeds).

Goals: ``mlp_peak_fraction`` (digits MLP, q = 64, batch 256) ≥ 0.5 and
``direction_gen_ratio`` (portable / torch.randn values per second, 2^22 values) ≥ 0.8.
"""

from __future__ import annotations

import time

import torch
from torch.func import functional_call

from ..directions import directions
from ..estimators import RGE
from ..losses import cross_entropy, mse
from ..models import build_model
from ..optim import seed_sgd_step
from ..oracles.torch_oracle import TorchOracle
from .mezo import mezo_step

MU, LR = 1e-3, 1e-4
NETWORKS = {  # name: (model spec, input shape after the batch, loss, number of classes or None)
    "digits-mlp": ({"kind": "mlp", "sizes": [64, 32, 10], "activation": "relu"}, (64,), "ce"),
    "tt-mlp": ({"kind": "tt-mlp", "layer_specs": [[[4, 4, 4], [8, 8, 8], 4], [[8, 8, 8], [1, 5, 2], 3]],
                "activation": "relu"}, (64,), "ce"),
    "deepzero-cnn": ({"kind": "cnn", "depth": 2, "width": 18, "in_channels": 1, "image_size": 8, "min_size": 2},
                     (1, 8, 8), "ce"),
    "pinn-mlp": ({"kind": "pinn-mlp", "sizes": [21, 32, 32, 1], "activation": "sin", "dtype": "float32"},
                 (21,), "mse"),
}


def add_arguments(parser) -> None:
    parser.add_argument("--q", type=int, default=64, help="directions per step (default 64)")
    parser.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def _best(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(reps: int, n: int = 1024) -> float:
    """float32 FLOP/s of the best ``torch.mm`` of two n × n matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _best(lambda: torch.mm(a, b), reps)


def forward_flops(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


def vmap_step(model, loss_fn, batch, q: int, gen: torch.Generator) -> None:
    """Plain ZO step: θ + μ z (torch.randn), losses by vmap(functional_call), θ ← θ − lr ĝ."""
    x, y = batch
    params = {k: v.detach() for k, v in model.named_parameters()}
    z = {k: torch.randn((q,) + v.shape, generator=gen) for k, v in params.items()}
    with torch.no_grad():
        losses = torch.func.vmap(lambda p: loss_fn(functional_call(model, p, (x,)), y))(
            {k: params[k] + MU * z[k] for k in params})
        coeff = (losses - loss_fn(model(x), y)) / (MU * q)
        for k, v in params.items():
            v.sub_(LR * torch.tensordot(coeff, z[k], dims=1))


def _network(name: str, batch_size: int):
    spec, shape, kind = NETWORKS[name]
    torch.manual_seed(0)
    model = build_model(spec)
    x = torch.randn(batch_size, *shape)
    if kind == "ce":
        return model, (x, torch.randint(0, 10, (batch_size,))), cross_entropy
    return model, (x, torch.zeros(batch_size, 1)), mse


def measure_network(name: str, q: int, batch_size: int, reps: int, peak: float) -> dict:
    model, batch, loss_fn = _network(name, batch_size)
    flops = forward_flops(model, batch[0])
    oracle = TorchOracle(model, loss_fn)
    rge = RGE(q=q, mu=MU, difference="forward", direction="gaussian")
    steps = iter(range(10**9))

    def ours():
        step = next(steps)  # fresh seeds every step
        seed_sgd_step(oracle, rge.estimate(oracle, batch, step=step, seed=0), LR)

    gen = torch.Generator().manual_seed(0)
    t_ours = _best(ours, reps)
    t_vmap = _best(lambda: vmap_step(model, loss_fn, batch, q, gen), reps)
    t_mezo = _best(lambda: mezo_step(model, loss_fn, batch, mu=MU, lr=LR, seeds=range(next(steps), next(steps) + q)),
                   max(1, reps // 2))
    useful = {"edgezo": (q + 1) * flops / t_ours, "vmap_functional_call": (q + 1) * flops / t_vmap,
              "mezo_loop": 2 * q * flops / t_mezo}
    return {"network": name, "parameters": oracle.dim, "forward_flops": flops,
            "path": sorted(set(oracle.choices.values())),
            "step_s": {"edgezo": t_ours, "vmap_functional_call": t_vmap, "mezo_loop": t_mezo},
            "useful_flops_per_s": useful, "peak_fraction": {k: v / peak for k, v in useful.items()}}


def direction_rates(reps: int) -> dict:
    """Gaussian values per second: the portable generator vs torch.randn (float32, fresh seeds)."""
    seeds = iter(range(1, 10**9))
    out = {}
    for label, (s, n) in {"1x4194304": (1, 1 << 22), "64x2410": (64, 2410)}.items():
        ours = _best(lambda s=s, n=n: directions([next(seeds) for _ in range(s)], 0, n, "gaussian"), reps)
        lib = _best(lambda s=s, n=n: torch.randn(s, n), reps)
        out[label] = {"portable_per_s": s * n / ours, "randn_per_s": s * n / lib, "ratio": lib / ours}
    return out


def run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    threads = getattr(args, "threads", 1)
    torch.set_num_threads(threads)
    reps = 3 if quick else 7
    q, batch = getattr(args, "q", 64), getattr(args, "batch", 256)
    peak = matmul_peak(reps)
    rows = [measure_network(name, q, batch, reps, peak) for name in NETWORKS]
    gen = direction_rates(reps)
    mlp = rows[0]
    return {
        "goals": {"mlp_peak_fraction": mlp["peak_fraction"]["edgezo"],
                  "direction_gen_ratio": gen["1x4194304"]["ratio"]},
        "targets": {"mlp_peak_fraction": ">= 0.5", "direction_gen_ratio": ">= 0.8"},
        "setup": {"q": q, "batch": batch, "threads": threads, "reps": reps, "direction": "gaussian, fresh seeds",
                  "estimator": "rge forward + seed-sgd", "matmul_peak_flops_per_s": peak},
        "networks": rows,
        "direction_generation": gen,
        "worst_network": min(rows, key=lambda r: r["peak_fraction"]["edgezo"])["network"],
    }


def plot(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.4))
    rows = result["networks"]
    names = [r["network"] for r in rows]
    for i, key in enumerate(("edgezo", "vmap_functional_call", "mezo_loop")):
        ax.bar([j + 0.27 * (i - 1) for j in range(len(rows))], [r["peak_fraction"][key] for r in rows], 0.27,
               label=key)
    ax.set_xticks(range(len(rows)), names)
    ax.set_ylabel("useful FLOP/s / float32 matmul peak")
    s = result["setup"]
    ax.set_title(f"ZO step, q = {s['q']}, batch {s['batch']}, {s['threads']} thread(s); portable Gaussian generator "
                 f"{result['goals']['direction_gen_ratio']:.2f}× torch.randn", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
