"""A faithful MeZO step (Malladi et al. 2023, arXiv:2305.17333, Algorithm 1) for the benchmarks' comparisons.

MeZO perturbs the parameters in place and regenerates ``z`` from a reset
torch generator for every pass::

    θ ← θ + μz;  ℓ+ = ℓ(θ);  θ ← θ − 2μz;  ℓ− = ℓ(θ);  θ ← θ + μz
    g = (ℓ+ − ℓ−) / (2μ);    θ ← θ − lr · g · z

with ``z ~ N(0, I)`` drawn parameter by parameter after
``torch.manual_seed(seed)`` (its ``zo_perturb_parameters`` / ``zo_update``).
With q > 1 the same is repeated for q seeds (q two-point estimates, each
update scaled by 1/q). The in-place ``+μ, −2μ, +μ`` leaves θ within float
rounding of where it was, not bit-exact.
"""

from __future__ import annotations

import torch


def _perturb(params, seed: int, scale: float) -> None:
    torch.manual_seed(seed)
    for p in params:
        z = torch.normal(mean=0.0, std=1.0, size=p.size(), device=p.device, dtype=p.dtype)
        p.data.add_(z, alpha=scale)


@torch.no_grad()
def mezo_step(model: torch.nn.Module, loss_fn, batch, *, mu: float, lr: float, seeds) -> float:
    """One MeZO step with ``len(seeds)`` two-point estimates; returns the mean of the losses seen."""
    x, y = batch
    params = [p for p in model.parameters() if p.requires_grad]
    grads, seen = [], []
    for seed in seeds:
        _perturb(params, seed, mu)
        plus = float(loss_fn(model(x), y))
        _perturb(params, seed, -2 * mu)
        minus = float(loss_fn(model(x), y))
        _perturb(params, seed, mu)
        grads.append((plus - minus) / (2 * mu))
        seen += [plus, minus]
    for seed, g in zip(seeds, grads):
        _perturb(params, seed, -lr * g / len(seeds))
    return sum(seen) / len(seen)
