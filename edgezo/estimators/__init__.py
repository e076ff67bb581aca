"""Gradient estimators, registered by name.

| name   | estimate                                   | forward passes per step |
|--------|--------------------------------------------|-------------------------|
| rge    | randomized, seeded directions              | q + 1 (forward) / 2q (central) |
| cge    | coordinate-wise over an active set S       | abs(S) + 1 / 2·abs(S)   |
| fo     | autograd (first-order baseline)            | 1 forward + 1 backward  |

Other modules add estimators with :func:`register` (e.g. ``hybrid``).
"""

from __future__ import annotations

import importlib

from typing import Any, Callable

from .base import Estimate, Estimator, step_seeds
from .cge import CGE
from .fo import FirstOrder
from .rge import RGE
from edgezo.errors import ConfigError

_REGISTRY: dict[str, Callable[..., Estimator] | str] = {}


def register(name: str, factory: Callable[..., Estimator] | str) -> None:
    """Register an estimator factory (or its ``"module:attr"`` path, imported on first use).

    Adapters register by path so that this package never imports them. A
    duplicate name is refused.
    """
    if name in _REGISTRY:
        raise ValueError(f"an estimator named {name!r} is already registered")
    _REGISTRY[name] = factory


def available() -> list[str]:
    return sorted(_REGISTRY)


def build_estimator(spec: dict[str, Any] | str) -> Estimator:
    """Build from ``{"kind": name, **options}`` (or a bare name)."""
    spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _REGISTRY:
        raise ConfigError(f"unknown estimator {kind!r}; available: {', '.join(available())}")
    factory = _REGISTRY[kind]
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    try:
        return factory(**spec)
    except TypeError as err:
        raise ConfigError(f"bad options for estimator {kind!r}: {err}") from None


register("rge", RGE)
register("cge", CGE)
register("fo", FirstOrder)
register("hybrid", "edgezo.estimators.hybrid:Hybrid")
register("sparse-cge", "edgezo.adapters.deepzero.sparse_cge:SparseCGE")
register("combined", "edgezo.adapters.pinn.combined:Combined")

__all__ = ["Estimate", "Estimator", "RGE", "CGE", "FirstOrder", "build_estimator", "register", "available",
           "step_seeds"]
