"""Model zoo, built by name from a recipe's ``[model]`` table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from edgezo.errors import ConfigError
from edgezo.registry import Registry

from .mlp import MLP

MODELS: Registry[Callable[..., torch.nn.Module]] = Registry("model kind", group="edgezo.models")


def register_model(name: str, builder: Callable[..., torch.nn.Module] | str) -> None:
    """Register a model builder (or its ``"module:attr"`` path, imported on first use).

    A duplicate name is refused.
    """
    MODELS.register(name, builder)


def available_models() -> list[str]:
    return MODELS.available()


def build_model(spec: dict[str, Any]) -> torch.nn.Module:
    """``{"kind": "mlp", "sizes": [64, 32, 10], ...}`` → module."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    builder = MODELS.get(kind)
    try:
        return builder(**spec)
    except TypeError as err:
        raise ConfigError(f"bad options for model {kind!r}: {err}") from None


register_model("mlp", MLP)
register_model("tt-mlp", "edgezo.models.ttm:TTMLP")
register_model("cnn", "edgezo.models.cnn:CNN")
register_model("resnet20", "edgezo.models.resnet:resnet20")
register_model("corrector1d", "edgezo.models.corrector:PeriodicCorrector")
register_model("dncnn", "edgezo.models.denoiser:DnCNN")
register_model("autoencoder", "edgezo.models.denoiser:ConvAutoencoder")
register_model("pinn-mlp", "edgezo.models.pinn:PINNMLP")
register_model("gpt2", "edgezo.models.causal_lm:gpt2")

__all__ = ["MLP", "build_model", "register_model", "available_models", "MODELS"]
