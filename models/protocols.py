"""Typing protocols for models that evaluate many parameter sets in one call.

An oracle asks ``isinstance(model, StackedForward)`` instead of probing
attributes; the protocols are ``runtime_checkable``, so any module with the
method qualifies (no base class needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["StackedForward", "ShiftedForward", "CoordinateForward"]


@runtime_checkable
class StackedForward(Protocol):
    """``forward_stacked(params, x) -> (q, B, ...)``: q perturbed copies of the model in one forward.

    ``params[name]`` has shape ``(q, *shape)`` (a name that is missing is the
    module's own tensor, shared by all copies); the input ``x`` is shared. The
    result equals stacking ``functional_call(model, params[i], x)`` over i.
    """

    def forward_stacked(self, params: Mapping[str, Tensor], x: Tensor, /) -> Tensor: ...


@runtime_checkable
class ShiftedForward(Protocol):
    """``forward_shifted(params, x, shifts)``: the stacked forward at inputs ``x + shifts`` (Stein PINN stencils)."""

    def forward_shifted(self, params: Mapping[str, Tensor], x: Tensor, shifts: Tensor, /) -> Tensor: ...


@runtime_checkable
class CoordinateForward(Protocol):
    """``forward_coordinates(name, index, delta, x) -> (q, B, ...)``: q copies, copy i with flat entry
    ``index[i]`` of parameter ``name`` moved by ``delta[i]`` (equal to :class:`StackedForward` on those copies)."""

    def forward_coordinates(self, name: str, index: Tensor, delta: Tensor, x: Tensor, /) -> Tensor: ...
