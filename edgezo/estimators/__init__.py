"""Gradient estimators, registered by name.

| name   | estimate                                   | forward passes per step |
|--------|--------------------------------------------|-------------------------|
| rge    | randomized, seeded directions              | q + 1 (forward) / 2q (central) |
| cge    | coordinate-wise over an active set S       | abs(S) + 1 / 2·abs(S)   |
| fo     | autograd (first-order baseline)            | 1 forward + 1 backward  |

Other modules add estimators with :func:`register` (e.g. ``hybrid``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from .base import Estimate, Estimator, step_seeds
from .cge import CGE
from .fo import FirstOrder
from .rge import RGE

ESTIMATORS: Registry[Callable[..., Estimator]] = Registry("estimator", group="edgezo.estimators", packaged=True)


def register(name: str, factory: Callable[..., Estimator] | str) -> None:
    """Register an estimator factory (or its ``"module:attr"`` path, imported on first use).

    Adapters and other packages register through the ``edgezo.estimators``
    entry-point group, so this package never names them. A duplicate name is refused.
    """
    ESTIMATORS.register(name, factory)


def available() -> list[str]:
    return ESTIMATORS.available()


def build_estimator(spec: dict[str, Any] | str) -> Estimator:
    """Build from ``{"kind": name, **options}`` (or a bare name)."""
    spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.pop("kind", None)
    factory = ESTIMATORS.get(kind)
    try:
        return factory(**spec)
    except TypeError as err:
        raise ConfigError(f"bad options for estimator {kind!r}: {err}") from None


register("rge", RGE)
register("cge", CGE)
register("fo", FirstOrder)
register("hybrid", "edgezo.estimators.hybrid:Hybrid")
register("combined", "edgezo.estimators.hybrid:combined")

__all__ = ["Estimate", "Estimator", "RGE", "CGE", "FirstOrder", "build_estimator", "register", "available",
           "ESTIMATORS",
           "step_seeds"]
