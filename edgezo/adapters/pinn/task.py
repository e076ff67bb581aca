"""Recipe task ``"pinn"``: a physics-informed network trained on the Stein PDE loss.

Recipe tables read here (besides ``[model]``, ``[estimator]``/``[[phases]]``,
``[optimizer]``, ``[fo_optimizer]``, ``[train]``, ``[oracle]``, ``groups``)::

    [pde]    kind = "hjb" | "heat" | "hjb-sines" | "poisson-ball", plus the PDE's options (space_dim, ...)
    [pinn]   rule = "sparse_grid" | "monte_carlo"   quadrature of the Stein estimators
             sigma = 0.1, level = 3, samples = 1024, mc_seed = 0
             max_rows = 262144                       rows per network call (memory bound, see model.py)
             steps_per_epoch = 100                   collocation batches per "epoch"
             test_points = 10000, test_seed = 1234   the fixed uniform test set
             fo_derivatives = "autograd" | "stein"   derivatives of the FO baseline

``[train] batch_size`` is the number of collocation points per step (drawn
uniformly from the PDE's domain, fresh each step, from a generator seeded by
(run seed, step), so a resumed run draws the same points).

When every phase uses the ``fo`` estimator (``edgezo train --estimator fo``)
the network's derivatives come from autograd too (the FO-PINN baseline;
``fo_derivatives = "stein"`` backpropagates through the Stein quadrature
instead). Otherwise they come from the Stein rule: forward passes only.

The evaluator reports ``test_rel_l2`` (‖u − u*‖₂/‖u*‖₂ of the unsmoothed
hard-constrained network on the test set), ``test_max_abs`` and
``network_evaluations`` (network rows: loss evaluations × points × nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from edgezo.errors import ConfigError

from ...recipes import Recipe, RecipeError, make_oracle, phases_of, train_config
from .model import SteinPINN
from .pde import PDE, build_pde, relative_l2
from .stein import SteinDerivatives

__all__ = ["build", "CollocationBatches", "pinn_evaluator", "build_pinn_model", "PINN_DEFAULTS"]

PINN_DEFAULTS: dict[str, Any] = {
    "rule": "sparse_grid",
    "sigma": 0.1,
    "level": 3,
    "samples": 1024,
    "mc_seed": 0,
    "max_rows": 2**18,
    "steps_per_epoch": 100,
    "test_points": 10_000,
    "test_seed": 1234,
    "fo_derivatives": "autograd",
}


class CollocationBatches:
    """Fresh uniform collocation points every step; batch = (x (B, D), zeros (B,))."""

    def __init__(self, pde: PDE, batch_size: int, seed: int, *, steps_per_epoch: int = 100, device="cpu"):
        if batch_size < 1:
            raise ConfigError(f"batch_size (collocation points per step) must be >= 1, got {batch_size}")
        if steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.pde, self.batch_size, self.seed = pde, int(batch_size), int(seed)
        self.steps_per_epoch = int(steps_per_epoch)
        self.device = device

    def get(self, epoch: int, index: int, step: int):
        state = np.random.SeedSequence([self.seed, int(step), 0xC0110C]).generate_state(2, dtype=np.uint64)
        gen = torch.Generator().manual_seed(int(state[0] % 2**63))
        x = self.pde.sample(self.batch_size, gen, device=self.device)
        return x, torch.zeros(self.batch_size, dtype=x.dtype, device=x.device)


def test_points(pde: PDE, n: int, seed: int, device="cpu") -> torch.Tensor:
    return pde.sample(int(n), torch.Generator().manual_seed(int(seed)), device=device)


def pinn_evaluator(model: SteinPINN, x_test: torch.Tensor) -> Callable:
    """Evaluator: relative L2 error and max error of the network against the exact solution."""
    exact = model.pde.exact(x_test)

    def evaluate(oracle) -> dict[str, float]:
        u = model.solution(x_test)
        per_point = model.stein.evaluations_per_point if model.derivatives == "stein" else 1
        return {"test_rel_l2": relative_l2(u, exact), "test_max_abs": float((u - exact).abs().max()),
                "network_evaluations": int(oracle.counters.samples_forwarded) * per_point}

    return evaluate


def _pinn_options(recipe: Recipe) -> dict[str, Any]:
    opts = dict(PINN_DEFAULTS)
    given = recipe.section("pinn")
    unknown = sorted(set(given) - set(opts))
    if unknown:
        raise RecipeError(f"{recipe.source}: unknown [pinn] option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(opts))}")
    opts.update(given)
    if opts["rule"] not in ("sparse_grid", "monte_carlo"):
        raise RecipeError(f"{recipe.source}: [pinn] rule must be 'sparse_grid' or 'monte_carlo', got {opts['rule']!r}")
    if opts["fo_derivatives"] not in ("autograd", "stein"):
        raise RecipeError(f"{recipe.source}: [pinn] fo_derivatives must be 'autograd' or 'stein'")
    return opts


def build_pinn_model(recipe: Recipe, *, derivatives: str = "stein", device="cpu") -> tuple[SteinPINN, dict]:
    """The recipe's :class:`SteinPINN` (inner network built from ``[model]``) and its [pinn] options."""
    from ...models import build_model

    pde = build_pde(recipe.section("pde") or {"kind": "hjb"})
    opts = _pinn_options(recipe)
    spec = recipe.section("model")
    net = build_model(spec).to(device)
    if next(net.parameters()).dtype != torch.float64:
        net = net.double()  # Stein derivatives are float64 (docs/methods/stein-pinn.md)
    stein = SteinDerivatives(opts["rule"], dim=pde.dim, sigma=float(opts["sigma"]), level=int(opts["level"]),
                             samples=int(opts["samples"]), seed=int(opts["mc_seed"]))
    model = SteinPINN(net, pde, stein, derivatives=derivatives, max_rows=int(opts["max_rows"]))
    return model, opts


def build(recipe: Recipe, *, data_path=None, device="cpu", out_dir=None, progress=True, oracle_factory=None):
    """Trainer for a PINN recipe (see the module docstring)."""
    from ...losses import mse
    from ...trainer import Trainer

    config = train_config(recipe)
    phases = phases_of(recipe)
    fo_only = all(p.estimator.name == "fo" for p in phases)
    opts = _pinn_options(recipe)
    derivatives = opts["fo_derivatives"] if fo_only else "stein"
    torch.manual_seed(config.seed)
    model, opts = build_pinn_model(recipe, derivatives=derivatives, device=device)
    batches = CollocationBatches(model.pde, config.batch_size, config.seed,
                                 steps_per_epoch=int(opts["steps_per_epoch"]), device=device)
    oracle_opts = recipe.section("oracle") or {"path": "stacked"}
    oracle = make_oracle(model, mse, groups=recipe.config.get("groups"), example_batch=batches.get(0, 0, 0),
                         oracle_factory=oracle_factory, **oracle_opts)
    x_test = test_points(model.pde, opts["test_points"], opts["test_seed"], device=device)
    info = {"recipe": recipe.name, "task": "pinn", "pde": model.pde.describe(), "derivatives": derivatives,
            "rule": opts["rule"] if derivatives == "stein" else None,
            "evaluations_per_point": model.stein.evaluations_per_point if derivatives == "stein" else 1,
            "collocation_points": config.batch_size}
    return Trainer(oracle, phases, batches, config, evaluator=pinn_evaluator(model, x_test), out_dir=out_dir,
                   progress=progress, primary_metric="test_rel_l2", info=info)
