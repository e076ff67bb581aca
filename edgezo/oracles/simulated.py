"""The oracle of a simulated target datapath (``--backend int8|photonic``).

:class:`SimulatedOracle` wraps a model whose forward runs the target's
arithmetic (``edgezo.targets.numerics.SimulatedForward``: int8 weights and
activations with int32 accumulation, or noisy analog MACs). Zeroth-order
training runs straight through the non-differentiable forward: an estimator
only asks for losses, so no straight-through gradient is involved
(docs/methods/zo-basics.md). The factories that build it for a target
profile live in :mod:`edgezo.targets.backends`.
"""

from __future__ import annotations

from typing import Any

from ..oracle import OracleError
from .torch_oracle import TorchOracle

__all__ = ["SimulatedOracle"]


class SimulatedOracle(TorchOracle):
    """A TorchOracle over ``SimulatedForward(model, profile)``: losses on a target's datapath.

    Every loss and prediction is computed the way the target computes it (int8
    weights/activations with int32 accumulation, or noisy analog MACs); the
    parameters stay float32 master copies on the host, which is what the
    optimizer steps. Evaluation is one simulated forward per point (the
    simulator quantizes each parameter set separately). For a noisy profile
    the noise generator's state is part of :meth:`state_dict`, so a resumed
    run draws the same noise.
    """

    def __init__(self, simulated, loss_fn, *, backend: str, groups=None, **options):
        options.pop("path", None)
        super().__init__(simulated, loss_fn, groups=_prefixed(groups), path="loop", **options)
        self.backend = backend
        self.profile = simulated.profile

    def autograd(self, batch):
        raise OracleError(f"the {self.backend} backend simulates a non-differentiable datapath "
                          f"({self.profile.name}); train it with a zeroth-order estimator, not fo")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        gen = self.model.generator
        if gen is not None:
            state["generator"] = gen.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" in state and self.model.generator is not None:
            self.model.generator.set_state(state["generator"])


def _prefixed(groups):
    """Group patterns of the bare model, applied to the wrapper's ``model.`` parameter names."""
    if groups is None or isinstance(groups, str):
        return groups
    return {g: ([f"model.{p}" for p in pats] if not isinstance(pats, str) else f"model.{pats}")
            for g, pats in groups.items()}
