"""Simulated-datapath backends ``--backend int8|photonic`` (entry points ``edgezo.backends``).

* ``int8`` — the torch model on the ``fpga-int8`` integer datapath;
* ``photonic`` — the ``photonic-noisy`` multiplicative MAC noise.

Each ``<x>_factory(recipe)`` returns an oracle factory building a
:class:`~edgezo.oracles.simulated.SimulatedOracle` over
:class:`~edgezo.targets.numerics.SimulatedForward`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from edgezo.oracles.simulated import SimulatedOracle

__all__ = ["simulated_oracle", "int8_factory", "photonic_factory"]


def simulated_oracle(profile: str, backend: str, model, loss_fn, *, groups=None, seed: int = 0, **options):
    """A :class:`SimulatedOracle` of ``model`` on ``profile`` (noise seeded by ``seed``)."""
    from .numerics import SimulatedForward
    from .profile import load_profile

    prof = load_profile(profile)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed)) if prof.has_noise else None
    return SimulatedOracle(SimulatedForward(model, prof, generator=generator), loss_fn, backend=backend,
                           groups=groups, **options)


def _simulated_factory(profile: str, backend: str, recipe) -> Callable[..., Any]:
    seed = int(recipe.config.get("train", {}).get("seed", 0)) if recipe is not None else 0

    def factory(model, loss_fn, *, groups=None, example_batch=None, **options):
        return simulated_oracle(profile, backend, model, loss_fn, groups=groups, seed=seed, **options)

    return factory


def int8_factory(recipe) -> Callable[..., Any]:
    """``--backend int8``: losses on the ``fpga-int8`` integer datapath (int8 weights, Q3.4 activations)."""
    return _simulated_factory("fpga-int8", "int8", recipe)


def photonic_factory(recipe) -> Callable[..., Any]:
    """``--backend photonic``: losses with the ``photonic-noisy`` multiplicative MAC noise."""
    return _simulated_factory("photonic-noisy", "photonic", recipe)
