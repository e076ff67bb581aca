"""Named recipes: a model, data, loss, estimator schedule and optimizer in a TOML file.

Recipes live in ``models/recipes/*.toml`` (package ``edgezo.models``). The
registry refuses two recipes with the same name. A recipe's ``task`` names the
builder that turns it into a :class:`~edgezo.trainer.Trainer`; builders are
looked up lazily by module path, so adapters (PINN, solver, ...) add tasks
without the engine importing them eagerly.

A minimal classification recipe::

    name = "digits-mlp"
    description = "..."
    [data]      name = "digits"
    [model]     kind = "mlp", sizes = [64, 32, 10]
    [estimator] kind = "rge", q = 20, mu = 0.01
    [optimizer] kind = "adam", lr = 1e-3
    [train]     epochs = 20, batch_size = 64, seed = 0

``[[phases]]`` tables (``start_epoch``, ``estimator``, ``optimizer``) replace
``[estimator]``/``[optimizer]`` for a schedule of estimators.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, EdgezoError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .tasks import TASKS

RECIPE_DIR = Path(__file__).resolve().parent.parent / "models" / "recipes"



class RecipeError(ConfigError):
    """A recipe file or an override is malformed."""


@dataclass
class Recipe:
    name: str
    description: str
    config: dict[str, Any]
    source: str = "<memory>"
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.config.get("task", "classification")

    def section(self, key: str) -> dict[str, Any]:
        return copy.deepcopy(self.config.get(key, {}))

    def summary(self) -> str:
        est = self.config.get("estimator", {}).get("kind") or "+".join(
            p.get("estimator", {}).get("kind", "?") for p in self.config.get("phases", []))
        return f"{self.name:<22} {self.task:<15} {est:<14} {self.description}"


def _recipe_dir() -> Path:
    try:
        from importlib.resources import files

        return Path(str(files("edgezo.models") / "recipes"))
    except Exception:
        return RECIPE_DIR


def parse_recipe(text: str, source: str = "<memory>") -> Recipe:
    """A recipe from TOML text, validated against the recipe schema (:mod:`edgezo.recipe_schema`)."""
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{source}: not valid TOML ({err})") from None
    return _validated(Recipe(str(cfg.get("name", "")), str(cfg.get("description", "")), cfg, source))


def _validated(recipe: Recipe, where: str | None = None) -> Recipe:
    """``recipe`` once its config passes the schema; errors name ``where`` (default: its source)."""
    from .recipe_schema import validate

    try:
        validate(recipe.config, where or (recipe.source if recipe.source != "<memory>" else f"recipe {recipe.name}"))
    except ConfigError as err:
        raise RecipeError(str(err)) from None
    return recipe


_REGISTRY: dict[str, Recipe] | None = None


def register_recipe(recipe: Recipe) -> None:
    """Add a recipe; a name already taken is refused."""
    reg = recipes()
    if recipe.name in reg:
        raise RecipeError(f"duplicate recipe name {recipe.name!r}: {reg[recipe.name].source} and {recipe.source}")
    reg[recipe.name] = recipe


def recipes() -> dict[str, Recipe]:
    """All recipes by name (loaded once from the recipe folder)."""
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, Recipe] = {}
        for path in sorted(_recipe_dir().glob("*.toml")):
            r = parse_recipe(path.read_text(), str(path))
            if r.name in found:
                raise RecipeError(f"duplicate recipe name {r.name!r}: {found[r.name].source} and {path}")
            found[r.name] = r
        _REGISTRY = found
    return _REGISTRY


DEFAULT_RECIPE = "digits-mlp"


def get_recipe(name_or_path: str) -> Recipe:
    """A registered recipe by name, or a recipe read from a ``.toml`` path."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.exists():
            raise RecipeError(f"recipe file {path} does not exist")
        return parse_recipe(path.read_text(), str(path))
    reg = recipes()
    if name_or_path not in reg:
        raise RecipeError(f"unknown recipe {name_or_path!r}; available: {', '.join(sorted(reg))} "
                          "(or pass a path to a .toml file)")
    return reg[name_or_path]


def apply_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """A validated copy with ``{"section.key": value}`` overrides applied (e.g. ``train.epochs``)."""
    cfg = copy.deepcopy(recipe.config)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = cfg
        for p in parts[:-1]:
            if not isinstance(node.setdefault(p, {}), dict):
                raise RecipeError(f"cannot override {dotted!r}: {p!r} is not a table")
            node = node[p]
        node[parts[-1]] = value
    # the source stays the file (tools find files beside it); errors name the overrides
    return _validated(Recipe(recipe.name, recipe.description, cfg, recipe.source),
                      f"recipe {recipe.name} with --set" if overrides else None)


def phases_of(recipe: Recipe):
    """The recipe's estimator schedule as :class:`~edgezo.trainer.Phase` objects."""
    from .estimators import build_estimator
    from .trainer import Phase

    if "phases" in recipe.config:
        out = []
        for i, p in enumerate(recipe.config["phases"]):
            if "estimator" not in p or "optimizer" not in p:
                raise RecipeError(f"{recipe.source}: phase {i} needs estimator and optimizer tables")
            out.append(Phase(build_estimator(p["estimator"]), dict(p["optimizer"]), int(p.get("start_epoch", 0)),
                             p.get("name", f"phase{i}")))
        return out
    return [Phase(build_estimator(recipe.section("estimator")), recipe.section("optimizer") or {"kind": "adam"})]


def with_estimator(recipe: Recipe, kind: str) -> Recipe:
    """Replace the recipe's schedule by one estimator (``fo`` for the first-order baseline).

    ``fo`` uses the recipe's ``[fo_optimizer]`` if present, else its optimizer.
    """
    cfg = copy.deepcopy(recipe.config)
    first = cfg["phases"][0] if "phases" in cfg else cfg
    optimizer = cfg.get("fo_optimizer") if kind == "fo" and "fo_optimizer" in cfg else first.get("optimizer", {})
    if optimizer.get("kind") == "seed-sgd" and kind != "rge":
        optimizer = {"kind": "sgd", "lr": optimizer.get("lr", 1e-3)}
    current = first.get("estimator", {})
    estimator = dict(current) if current.get("kind") == kind else {"kind": kind}
    cfg.pop("phases", None)
    cfg["estimator"], cfg["optimizer"] = estimator, dict(optimizer)
    return _validated(Recipe(recipe.name, recipe.description, cfg, recipe.source))


def with_estimator_and_overrides(recipe: Recipe, kind: str, overrides: dict[str, Any]) -> tuple[Recipe, dict]:
    """:func:`with_estimator`, with ``fo_optimizer.*`` overrides applied first when ``kind`` is ``fo`` (they must
    reach the optimizer fo copies from [fo_optimizer]; a recipe without one starts from the optimizer fo would use).
    Returns the recipe and the overrides still to apply."""
    early = {k: v for k, v in overrides.items() if k.split(".")[0] == "fo_optimizer"} if kind == "fo" else {}
    if early:
        if "fo_optimizer" not in recipe.config:
            cfg = {**recipe.config, "fo_optimizer": with_estimator(recipe, "fo").config["optimizer"]}
            recipe = Recipe(recipe.name, recipe.description, cfg, recipe.source)
        recipe = apply_overrides(recipe, early)
    return with_estimator(recipe, kind), {k: v for k, v in overrides.items() if k not in early}


def train_config(recipe: Recipe):
    from .trainer import TrainConfig

    spec = recipe.section("train")
    try:
        return TrainConfig(**spec)
    except TypeError as err:
        raise RecipeError(f"{recipe.source}: bad [train] options: {err}") from None


def builder_for(task: str) -> Callable[..., Any]:
    """The builder registered for ``task`` (a :class:`RecipeError` names the known ones)."""
    if task not in TASKS:
        raise RecipeError(str(TASKS.unknown(task)))
    return TASKS.get(task)


def build_trainer(recipe: Recipe, *, data_path: str | None = None, device: str = "cpu", out_dir=None,
                  progress: bool = True, oracle_factory: Callable[..., Any] | None = None):
    """Turn a recipe into a ready :class:`~edgezo.trainer.Trainer`.

    ``oracle_factory(model, loss_fn, *, groups, example_batch, **oracle_options)``
    builds the oracle; None means a :class:`~edgezo.oracles.torch_oracle.TorchOracle`. A ``ValueError``
    from a builder (a kind-specific value it refuses) becomes a :class:`RecipeError` naming the recipe.
    """
    builder = builder_for(recipe.task)
    try:
        return builder(recipe, data_path=data_path, device=device, out_dir=out_dir, progress=progress,
                       oracle_factory=oracle_factory)
    except ValueError as err:
        if isinstance(err, EdgezoError):
            raise
        # the schema checks every declared field; a builder's ValueError is a kind-specific value it refused
        raise RecipeError(f"{recipe.source}: {err}") from None
    except (MemoryError, RuntimeError) as err:
        if isinstance(err, MemoryError) or "allocate" in str(err):
            raise RecipeError(f"{recipe.source}: the model does not fit in memory ({str(err).splitlines()[0][:160]}); "
                              "use smaller layers") from None
        raise


def make_oracle(model, loss_fn, *, groups=None, example_batch=None, oracle_factory=None, **options):
    """The recipe's oracle over ``model``: the factory's, or a TorchOracle."""
    if oracle_factory is not None:
        return oracle_factory(model, loss_fn, groups=groups, example_batch=example_batch, **options)
    from .oracles.torch_oracle import TorchOracle

    return TorchOracle(model, loss_fn, groups=groups, **options)


def build_classification(recipe: Recipe, *, data_path=None, device="cpu", out_dir=None, progress=True,
                         oracle_factory=None):
    """A supervised classifier trained on a data set (digits, MNIST, CIFAR-10)."""
    import torch

    from .data import load_dataset
    from .losses import get_loss
    from .models import build_model
    from .trainer import DatasetBatches, Trainer, classification_evaluator

    data_spec = recipe.section("data")
    name = data_spec.pop("name", "digits")
    data = load_dataset(name, data_path or data_spec.pop("path", None), **data_spec)
    config = train_config(recipe)
    torch.manual_seed(config.seed)
    model = build_model(recipe.section("model")).to(device)
    _check_model_takes_data(model, data.x_train[:1].to(device), data.num_classes, recipe)
    loss_fn = get_loss(recipe.config.get("loss", "cross_entropy"))
    oracle = make_oracle(model, loss_fn, groups=recipe.config.get("groups"),
                         example_batch=(data.x_train[: config.batch_size], data.y_train[: config.batch_size]),
                         oracle_factory=oracle_factory, **recipe.section("oracle"))
    batches = DatasetBatches(data.x_train.to(device), data.y_train.to(device), config.batch_size, config.seed)
    evaluator = classification_evaluator(data.x_test.to(device), data.y_test.to(device))
    return Trainer(oracle, phases_of(recipe), batches, config, evaluator=evaluator, out_dir=out_dir,
                   progress=progress, info={"recipe": recipe.name, "dataset": data.name})


def _check_model_takes_data(model, sample, num_classes: int | None, recipe: Recipe) -> None:
    """One forward pass on one training sample: a shape mismatch, or fewer outputs than classes, is the
    recipe's error, named as such."""
    import torch

    try:
        with torch.no_grad():
            out = model(sample)
    except RuntimeError as err:
        raise RecipeError(f"{recipe.source}: the model does not take this data set's samples of shape "
                          f"{list(sample.shape[1:])} ({str(err).splitlines()[0][:160]}); check [model] against "
                          "[data]") from None
    if num_classes and out.shape[-1] != num_classes:
        raise RecipeError(f"{recipe.source}: the model has {out.shape[-1]} outputs, the data set {num_classes} "
                          "classes; check [model] against [data]")


TASKS.register("classification", build_classification)
