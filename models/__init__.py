"""Model zoo, built by name from a recipe's ``[model]`` table."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .mlp import MLP

_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {}


def register_model(name: str, builder: Callable[..., torch.nn.Module]) -> None:
    """Register a model builder; a duplicate name is refused."""
    if name in _BUILDERS:
        raise ValueError(f"a model named {name!r} is already registered")
    _BUILDERS[name] = builder


def available_models() -> list[str]:
    return sorted(_BUILDERS)


def build_model(spec: dict[str, Any]) -> torch.nn.Module:
    """``{"kind": "mlp", "sizes": [64, 32, 10], ...}`` → module."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}; available: {', '.join(available_models())}")
    try:
        return _BUILDERS[kind](**spec)
    except TypeError as err:
        raise ValueError(f"bad options for model {kind!r}: {err}") from None


register_model("mlp", MLP)

__all__ = ["MLP", "build_model", "register_model", "available_models"]
