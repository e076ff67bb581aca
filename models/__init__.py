"""Model zoo, built by name from a recipe's ``[model]`` table."""

from __future__ import annotations

import importlib

from typing import Any, Callable

import torch

from .mlp import MLP

_BUILDERS: dict[str, Callable[..., torch.nn.Module] | str] = {}


def register_model(name: str, builder: Callable[..., torch.nn.Module] | str) -> None:
    """Register a model builder (or its ``"module:attr"`` path, imported on first use).

    A duplicate name is refused.
    """
    if name in _BUILDERS:
        raise ValueError(f"a model named {name!r} is already registered")
    _BUILDERS[name] = builder


def available_models() -> list[str]:
    return sorted(_BUILDERS)


def _resolve(kind: str) -> Callable[..., torch.nn.Module]:
    builder = _BUILDERS[kind]
    if isinstance(builder, str):
        module, attr = builder.split(":")
        builder = getattr(importlib.import_module(module), attr)
        _BUILDERS[kind] = builder
    return builder


def build_model(spec: dict[str, Any]) -> torch.nn.Module:
    """``{"kind": "mlp", "sizes": [64, 32, 10], ...}`` → module."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}; available: {', '.join(available_models())}")
    try:
        return _resolve(kind)(**spec)
    except TypeError as err:
        raise ValueError(f"bad options for model {kind!r}: {err}") from None


register_model("mlp", MLP)
register_model("tt-mlp", "edgezo.models.ttm:TTMLP")
register_model("cnn", "edgezo.models.cnn:CNN")
register_model("resnet20", "edgezo.models.resnet:resnet20")
register_model("corrector1d", "edgezo.models.corrector:PeriodicCorrector")
register_model("dncnn", "edgezo.models.denoiser:DnCNN")
register_model("autoencoder", "edgezo.models.denoiser:ConvAutoencoder")
register_model("pinn-mlp", "edgezo.models.pinn:PINNMLP")
register_model("gpt2", "edgezo.models.causal_lm:gpt2")

__all__ = ["MLP", "build_model", "register_model", "available_models"]
