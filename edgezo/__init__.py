"""edgezo: forward-only (zeroth-order) training of neural networks.

The public API, imported on first use so that ``import edgezo`` stays cheap
(no torch until a name is touched)::

    from edgezo import TorchOracle, RGE, CGE, Trainer, ParamSpace, load_recipe, build_trainer

The layers behind these names are described in docs/architecture.md.
"""

from __future__ import annotations

from ._version import __version__

# public name -> "module:attribute" (resolved by edgezo.registry.resolve on first access)
_PUBLIC = {
    # contracts
    "ParamSpace": "edgezo.params:ParamSpace",
    "Oracle": "edgezo.oracles.base:Oracle",
    "OracleError": "edgezo.oracles.base:OracleError",
    "SeedQueries": "edgezo.oracles.base:SeedQueries",
    "CoordQueries": "edgezo.oracles.base:CoordQueries",
    "SeedUpdate": "edgezo.oracles.base:SeedUpdate",
    "Registry": "edgezo.registry:Registry",
    # estimators
    "Estimator": "edgezo.estimators.base:Estimator",
    "Estimate": "edgezo.estimators.base:Estimate",
    "RGE": "edgezo.estimators.rge:RGE",
    "CGE": "edgezo.estimators.cge:CGE",
    "FirstOrder": "edgezo.estimators.fo:FirstOrder",
    "Hybrid": "edgezo.estimators.hybrid:Hybrid",
    "build_estimator": "edgezo.estimators:build_estimator",
    # oracles
    "TorchOracle": "edgezo.oracles.torch_oracle:TorchOracle",
    "oracle_factory": "edgezo.oracles.backends:oracle_factory",
    # training
    "Trainer": "edgezo.trainer:Trainer",
    "TrainConfig": "edgezo.trainer:TrainConfig",
    "Phase": "edgezo.trainer:Phase",
    "DatasetBatches": "edgezo.trainer:DatasetBatches",
    "classification_evaluator": "edgezo.trainer:classification_evaluator",
    "build_optimizer": "edgezo.optim:build_optimizer",
    # recipes, data, models, losses
    "load_recipe": "edgezo.recipes:get_recipe",
    "build_trainer": "edgezo.recipes:build_trainer",
    "load_dataset": "edgezo.data:load_dataset",
    "load_digits": "edgezo.data:load_digits",
    "build_model": "edgezo.models:build_model",
    "MLP": "edgezo.models.mlp:MLP",
    "cross_entropy": "edgezo.losses:cross_entropy",
    "mse": "edgezo.losses:mse",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'edgezo' has no attribute {name!r}")
    from .registry import resolve

    value = resolve(target)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
