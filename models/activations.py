"""The one activation table: elementwise functions by name, for every model.

Each entry maps a tensor of any shape (a leading perturbation axis included)
to one of the same shape, so stacked forwards use the same functions.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from edgezo.registry import Registry

__all__ = ["ACTIVATIONS", "get_activation"]


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
