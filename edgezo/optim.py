"""Optimizers fed by a gradient estimate.

On a host the estimate goes into ``.grad`` and a plain ``torch.optim``
optimizer steps (SGD with momentum, Adam, ...). Two additions that torch does
not ship:

* :class:`SignSGD` — ZO-signSGD (Liu et al., ICLR 2019): ``θ ← θ − lr·sign(ĝ)``
  (optionally on a momentum buffer ``m ← β m + ĝ``).
* seed-SGD — ``θ ← θ − lr Σ c_i z(seed_i)`` applied from (seed, coefficient)
  pairs (MeZO); the only update a device needs. See :func:`seed_sgd_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .errors import ConfigError
from .estimators.base import Estimate
from .oracle import Oracle
from .registry import Registry


class SignSGD(torch.optim.Optimizer):
    """ZO-signSGD: ``θ ← θ − lr · sign(m)``, ``m = ĝ`` (or ``β m + ĝ`` with momentum β)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, momentum: float = 0.0):
        if lr <= 0:
            raise ConfigError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["momentum"]:
                    buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    buf.mul_(group["momentum"]).add_(d)
                    d = buf
                p.add_(torch.sign(d), alpha=-group["lr"])


def seed_sgd_step(oracle: Oracle, estimate: Estimate, lr: float) -> None:
    """Apply an RGE estimate as seed pairs: ``θ ← θ − lr Σ c_i z(seed_i)``."""
    if estimate.coord_terms or estimate.dense is not None:
        raise ValueError("seed-SGD needs an estimate made of (seed, coefficient) pairs (use the rge estimator)")
    for term in estimate.seed_terms:
        oracle.apply_seed_update(term, lr)


def _adam_like(cls):
    def build(params, **spec):
        if "betas" in spec:
            spec["betas"] = tuple(spec["betas"])
        return cls(params, **spec)

    build.__name__ = cls.__name__
    return build


# Optimizer builders ``(params, **options) -> torch.optim.Optimizer``; seed-sgd
# builds none (the oracle applies (seed, coefficient) pairs, see seed_sgd_step).
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer | None]] = Registry("optimizer", group="edgezo.optimizers")
OPTIMIZERS.register("sgd", torch.optim.SGD)
OPTIMIZERS.register("adam", _adam_like(torch.optim.Adam))
OPTIMIZERS.register("adamw", _adam_like(torch.optim.AdamW))
OPTIMIZERS.register("sign-sgd", SignSGD)
OPTIMIZERS.register("seed-sgd", lambda params, **spec: None)


def build_optimizer(params: list[torch.Tensor] | None, spec: dict[str, Any]) -> torch.optim.Optimizer | None:
    """``{"kind": "adam", "lr": 1e-3, ...}`` → a torch optimizer (None for seed-sgd)."""
    spec = dict(spec)
    kind = spec.pop("kind", "adam")
    spec.pop("schedule", None)
    build = OPTIMIZERS.get(kind)
    if kind == "seed-sgd":
        return None
    if params is None:
        raise ConfigError(f"optimizer {kind!r} needs host parameters")
    try:
        return build(params, **spec)
    except TypeError as err:
        raise ConfigError(f"bad options for optimizer {kind!r}: {err}") from None
