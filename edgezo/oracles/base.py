"""The Oracle contract: evaluate the loss at many perturbed parameter points.

An oracle owns the current parameters θ where they live (host memory, GPU
memory, an ONNX Runtime feed, a device's SRAM) and answers loss queries at
perturbed points. A query names its perturbation compactly, so that a remote
oracle receives bytes, not tensors:

* :class:`SeedQueries` — ``θ + s_i · z(seed_i)`` restricted to one group, with
  ``z`` the portable direction of :mod:`edgezo.directions` (MeZO's seed trick,
  Malladi et al. 2023). A scale of 0 asks for the loss at θ itself.
* :class:`CoordQueries` — ``θ + δ_i · e_{j_i}`` (coordinate-wise estimation).

Updates come back to the oracle either densely (a host optimizer writes θ) or as
seed pairs ``θ ← θ − lr Σ c_i z(seed_i)`` (:meth:`Oracle.apply_seed_update`).

Estimators are written against this contract only and never import a backend.

What an implementation must provide (the abstract methods of :class:`Oracle`):
``layout``, ``counters``, ``evaluate(queries, batch)``, ``get_flat()``,
``set_flat(values)``. What it may override: ``apply_seed_update`` (a device
applies seed pairs itself), ``optimizer_parameters``/``set_grad``/
``after_step`` (host optimizers), ``autograd``, ``predict``,
``state_dict``/``load_state_dict``. Everything else is shared behaviour.
Subclasses of :class:`~edgezo.oracles.torch_oracle.TorchOracle` have their own
protected hooks, listed in that class's docstring.

``edgezo.oracle`` re-exports this module (the historical import path).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import EdgezoError
from ..params import ParamLayout

UINT32 = 2**32


@dataclass(frozen=True)
class SeedQueries:
    """q points ``θ + scales[i] · z(seeds[i])`` on ``group`` (None = all parameters).

    ``z`` is the direction of kind ``kind`` from :mod:`edgezo.directions`
    restricted to the group's flat slice; ``"sphere"`` directions are unit norm
    over that slice.
    """

    seeds: tuple[int, ...]
    scales: tuple[float, ...]
    group: str | None = None
    kind: str = "rademacher"

    def __post_init__(self):
        if len(self.seeds) != len(self.scales):
            raise ValueError(f"{len(self.seeds)} seeds but {len(self.scales)} scales")
        for s in self.seeds:
            if not 0 <= int(s) < UINT32:
                raise ValueError(f"seed {s} is outside the uint32 range [0, 2**32)")

    def __len__(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class CoordQueries:
    """q points ``θ + deltas[i] · e_{coords[i]}`` (flat coordinate indices)."""

    coords: tuple[int, ...]
    deltas: tuple[float, ...]

    def __post_init__(self):
        if len(self.coords) != len(self.deltas):
            raise ValueError(f"{len(self.coords)} coordinates but {len(self.deltas)} deltas")

    def __len__(self) -> int:
        return len(self.coords)


Queries = SeedQueries | CoordQueries
Batch = Sequence[Any]


@dataclass(frozen=True)
class SeedUpdate:
    """``θ ← θ − lr · Σ_i coeffs[i] · z(seeds[i])`` on ``group`` (MeZO-style update)."""

    seeds: tuple[int, ...]
    coeffs: tuple[float, ...]
    group: str | None = None
    kind: str = "rademacher"


@dataclass
class Counters:
    """Work done by an oracle: loss evaluations and samples pushed through the model."""

    forward_passes: int = 0
    samples_forwarded: int = 0

    def add(self, points: int, batch_size: int) -> None:
        self.forward_passes += points
        self.samples_forwarded += points * batch_size

    def as_dict(self) -> dict[str, int]:
        return {"forward_passes": self.forward_passes, "samples_forwarded": self.samples_forwarded}


class OracleError(EdgezoError, RuntimeError):
    """An oracle cannot do what was asked (e.g. autograd on a black box)."""


class Oracle(abc.ABC):
    """Where the parameters live and losses are computed. See the module docstring."""

    backend: str = "abstract"
    layout: ParamLayout
    counters: Counters

    @property
    def dim(self) -> int:
        return self.layout.dim

    @abc.abstractmethod
    def evaluate(self, queries: Queries, batch: Batch) -> torch.Tensor:
        """Losses (float64, shape ``(len(queries),)``) at the perturbed points."""

    def loss(self, batch: Batch) -> float:
        """Loss at the current parameters (counts one forward pass)."""
        return float(self.evaluate(SeedQueries((0,), (0.0,)), batch)[0])

    @abc.abstractmethod
    def get_flat(self) -> torch.Tensor:
        """A copy of θ as a 1-D tensor."""

    @abc.abstractmethod
    def set_flat(self, values: torch.Tensor) -> None:
        """Overwrite θ."""

    def apply_seed_update(self, update: SeedUpdate, lr: float) -> None:
        """Apply ``θ ← θ − lr Σ c_i z(seed_i)`` (default: through get/set_flat)."""
        from ..directions import directions

        g = self.layout.group(update.group)
        theta = self.get_flat()
        z = directions(list(update.seeds), g.offset, g.numel, update.kind, device=theta.device, dtype=theta.dtype)
        coeffs = torch.tensor(update.coeffs, dtype=theta.dtype, device=theta.device)
        theta[g.offset : g.stop] -= lr * (coeffs @ z)
        self.set_flat(theta)

    # Host optimizers act on tensors; oracles whose parameters are not torch
    # parameters expose a flat host copy and push it back after each step.
    def optimizer_parameters(self) -> list[torch.Tensor]:
        raise OracleError(f"the {self.backend} oracle does not expose parameters to a host optimizer")

    def set_grad(self, grad: torch.Tensor) -> None:
        raise OracleError(f"the {self.backend} oracle does not accept a dense gradient")

    def after_step(self) -> None:
        """Called after the host optimizer stepped (sync parameters to the backend)."""

    def autograd(self, batch: Batch) -> tuple[float, torch.Tensor]:
        """(loss, exact gradient) by backpropagation — the first-order baseline."""
        raise OracleError(f"the {self.backend} oracle has no autograd (first-order baseline needs the torch backend)")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Model outputs at the current parameters (no counting)."""
        raise OracleError(f"the {self.backend} oracle cannot predict")

    def state_dict(self) -> dict[str, Any]:
        """Backend state that a checkpoint must keep for exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def batch_size_of(batch: Batch) -> int:
    return int(batch[0].shape[0])


@dataclass
class PathChoice:
    """Which evaluation path (loop or batched) an oracle picked for a query shape."""

    path: str
    timings_us: dict[str, float] = field(default_factory=dict)
