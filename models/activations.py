"""The one activation table: elementwise functions by name, for every model.

Each entry maps a tensor of any shape (a leading perturbation axis included)
to one of the same shape, so stacked forwards use the same functions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from edgezo.registry import Registry

__all__ = ["ACTIVATIONS", "get_activation", "get_activation_"]


def identity(t: Tensor) -> Tensor:
    """``f(x) = x``."""
    return t


ACTIVATIONS: Registry[Callable[[Tensor], Tensor]] = Registry("activation", group="edgezo.activations")
for _name, _fn in (("relu", torch.relu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid), ("sin", torch.sin),
                   ("gelu", torch.nn.functional.gelu), ("silu", torch.nn.functional.silu), ("identity", identity)):
    ACTIVATIONS.register(_name, _fn)


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation registered as ``name`` (a ValueError lists the others)."""
    return ACTIVATIONS.get(name)


_IN_PLACE = {torch.relu: torch.relu_, torch.tanh: torch.tanh_, torch.sigmoid: torch.sigmoid_, torch.sin: torch.sin_}


def get_activation_(name: str) -> Callable[[Tensor], Tensor]:
    """The in-place form of activation ``name`` where torch has one (else the plain function).

    For tensors the caller owns (a fresh matmul output): same values, no new
    allocation (a ReLU over the q stacked forwards' hidden layer then costs
    about half).
    """
    fn = get_activation(name)
    return _IN_PLACE.get(fn, fn)
