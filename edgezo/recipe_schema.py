"""The recipe schema: every recipe (file or ``--set`` override) is validated here, in one place.

Pydantic models declare each section's fields, their types and bounds
(epochs, steps and batch sizes are positive integers; learning rates and
smoothing radii positive numbers). Sections whose options depend on a
``kind`` — ``[model]``, ``[estimator]``, ``[optimizer]`` — also accept the
keyword arguments of the builder that kind names, checked against that
builder's signature. ``edgezo recipes --schema`` prints the JSON Schema.

Errors come back as one line naming the field (``train.epochs``), what was
expected and what was given, with a "did you mean" for a misspelled key.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError, did_you_mean

Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Positive = Annotated[int, Field(gt=0, le=2**31 - 1)]
NonNegative = Annotated[int, Field(ge=0, le=2**31 - 1)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class Section(BaseModel):
    """A table whose keys are all declared (an unknown key is an error)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class KindSection(BaseModel):
    """A table with a ``kind``; keys beyond the declared ones must be options of that kind's builder."""

    model_config = ConfigDict(extra="allow", strict=True)
    what: ClassVar[str] = "kind"
    kind: str

    @classmethod
    def builder(cls, kind: str) -> Callable[..., Any] | None:  # pragma: no cover - overridden
        return None

    @classmethod
    def kinds(cls) -> list[str]:  # pragma: no cover - overridden
        return []

    @model_validator(mode="after")
    def _options_of_the_kind(self):
        if self.kind not in self.kinds():
            raise ValueError(f"unknown {self.what} {self.kind!r}{did_you_mean(self.kind, self.kinds())}; "
                             f"available: {', '.join(self.kinds())}")
        builder = self.builder(self.kind)
        if builder is None:
            return self
        params = inspect.signature(builder).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return self
        given = set(self.model_fields_set | set(self.model_extra or {})) - {"kind"}
        unknown = sorted(k for k in given if k not in params)
        if unknown:
            names = [n for n in params if n != "self"]
            hint = did_you_mean(unknown[0], names)
            raise ValueError(f"{unknown[0]!r} is not an option of {self.what} {self.kind!r}{hint}; "
                             f"its options: {', '.join(names) or 'none'}")
        return self


class ModelSection(KindSection):
    """``[model]``: ``kind`` names a model of the zoo (``edgezo.models``); other keys are its options."""

    what: ClassVar[str] = "model"

    sizes: list[Positive] | None = None
    width: Positive | None = None
    depth: Positive | None = None
    in_channels: Positive | None = None
    image_size: Positive | None = None
    kernel_size: Positive | None = None
    activation: str | None = None

    @classmethod
    def kinds(cls) -> list[str]:
        from .models import available_models

        return available_models()

    @classmethod
    def builder(cls, kind: str):
        from .models import MODELS

        return MODELS.get(kind)


class EstimatorSection(KindSection):
    """``[estimator]``: ``kind`` names a registered estimator (rge, cge, hybrid, ...); other keys are its options."""

    what: ClassVar[str] = "estimator"

    q: Positive | None = None
    mu: PositiveFloat | None = None
    difference: Literal["forward", "central"] | None = None
    direction: Literal["rademacher", "gaussian", "uniform", "sphere"] | None = None

    @classmethod
    def kinds(cls) -> list[str]:
        from .estimators import available

        return available()

    @classmethod
    def builder(cls, kind: str):
        from .estimators import ESTIMATORS

        return ESTIMATORS.get(kind)


class OptimizerSection(KindSection):
    """``[optimizer]``: a ``torch.optim`` optimizer (sgd, adam, adamw), sign-sgd, or seed-sgd (device updates)."""

    what: ClassVar[str] = "optimizer"

    kind: str = "adam"
    lr: PositiveFloat | None = None
    momentum: Fraction | None = None
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    betas: Annotated[list[Fraction], Field(min_length=2, max_length=2)] | None = None

    @classmethod
    def kinds(cls) -> list[str]:
        from .optim import OPTIMIZERS

        return list(OPTIMIZERS)

    @classmethod
    def builder(cls, kind: str):
        import torch

        from .optim import SignSGD

        return {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sign-sgd": SignSGD,
                "seed-sgd": _seed_sgd_options}.get(kind)


def _seed_sgd_options(lr: float = 1e-3) -> None:
    """seed-SGD (a device applies ``θ ← θ − lr · c_i z(seed_i)``) takes only a learning rate."""


class TrainSection(Section):
    """``[train]``: the length and the seed of a run (see :class:`edgezo.trainer.TrainConfig`)."""

    epochs: Positive = 10
    batch_size: Positive = 64
    max_steps: Positive | None = None
    max_wall_s: Annotated[float, Field(gt=0, allow_inf_nan=False,
                                       description="stop after the step that crosses this wall time")] | None = None
    eval_every: NonNegative = 0
    checkpoint_every: NonNegative = 0
    seed: Seed = 0
    schedule: Literal["cosine", "none"] | None = None
    min_lr_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0


class DataSection(Section):
    """``[data]``: a data set by name (digits, mnist, fashion-mnist, cifar10) or the solver's initial conditions."""

    name: str | None = None
    path: str | None = None
    flatten: bool | None = None
    test_size: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    seed: Seed | None = None
    train: Positive | None = None
    test: Positive | None = None
    train_seed: Seed | None = None
    test_seed: Seed | None = None
    train_subset: Positive | None = Field(None, description="train on this many samples of a seeded permutation")
    pool: Positive | None = Field(None, description="average-pool images by pool x pool blocks")
    subset_seed: Seed | None = None


class PhaseSection(Section):
    """One ``[[phases]]`` entry: from ``start_epoch`` on, this estimator and a fresh optimizer."""

    name: str | None = None
    start_epoch: NonNegative = 0
    estimator: EstimatorSection
    optimizer: OptimizerSection


# sections that only one task reads
TASK_SECTIONS = {"pde": "pinn", "pinn": "pinn", "solver": "solver", "deepzero": "deepzero"}


class RecipeSchema(Section):
    """A recipe file (``models/recipes/*.toml``)."""

    name: Annotated[str, Field(min_length=1)]
    description: Annotated[str, Field(min_length=1)]
    task: str = "classification"
    data: DataSection | None = None
    model: ModelSection | None = None
    estimator: EstimatorSection | None = None
    optimizer: OptimizerSection | None = None
    fo_optimizer: OptimizerSection | None = None
    phases: Annotated[list[PhaseSection], Field(min_length=1)] | None = None
    train: TrainSection = TrainSection()
    loss: str | None = None
    groups: str | dict[str, list[str]] | None = None
    bounds: str | None = None
    oracle: dict[str, Any] | None = Field(None, description="oracle options (path, max_stack_elems, ...)")
    pde: dict[str, Any] | None = Field(None, description="PINN task: the PDE (kind, space_dim, ...)")
    pinn: dict[str, Any] | None = Field(None, description="PINN task options (level, rule, sigma, ...)")
    solver: dict[str, Any] | None = Field(None, description="solver task: Burgers grid (n, nu, dt, steps, refine)")
    deepzero: dict[str, Any] | None = Field(None, description="DeepZero task options (grasp_samples, ...)")

    @model_validator(mode="after")
    def _schedule_and_task(self):
        from .tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}{did_you_mean(self.task, TASKS)}; known: {', '.join(TASKS)}")
        if self.estimator is None and self.phases is None:
            raise ValueError("needs an [estimator] table or [[phases]]")
        for section, task in TASK_SECTIONS.items():
            if getattr(self, section) is not None and self.task != task:
                raise ValueError(f"a [{section}] table belongs to task {task!r}, this recipe's task is {self.task!r}")
        solver_data = [k for k in ("train", "test", "train_seed", "test_seed")
                       if self.data is not None and getattr(self.data, k) is not None]
        if solver_data and self.task != "solver":
            raise ValueError(f"data.{solver_data[0]} sets the solver task's initial conditions; this recipe's task "
                             f"is {self.task!r} (digits take data.test_size and data.seed)")
        if self.task == "pinn" and self.pde is None:
            raise ValueError("task 'pinn' needs a [pde] table (e.g. kind = \"hjb\")")
        return self


def known_keys() -> list[str]:
    """Every declared key as ``section.key`` (top-level keys bare): the candidates of a "did you mean"."""
    out = []
    for name, info in RecipeSchema.model_fields.items():
        out.append(name)
        ann = info.annotation
        for model in getattr(ann, "__args__", (ann,)):
            if isinstance(model, type) and issubclass(model, BaseModel):
                out += [f"{name}.{sub}" for sub in model.model_fields]
    return out


def validate(config: dict[str, Any], source: str) -> RecipeSchema:
    """The validated recipe, or :class:`~edgezo.errors.ConfigError` with one line naming the field."""
    try:
        return RecipeSchema.model_validate(config)
    except ValidationError as err:
        raise ConfigError(f"{source}: {describe(err)}") from None


def describe(err: ValidationError, limit: int = 3) -> str:
    """A pydantic error as one line: ``field: what was expected, got value`` (at most ``limit`` of them)."""
    parts = []
    for e in err.errors()[:limit]:
        loc = ".".join(str(p) for p in e["loc"] if not _is_union_tag(p))
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}{_suggest(loc)}")
        elif e["type"] == "value_error":
            parts.append(f"{loc + ': ' if loc else ''}{str(e['msg']).removeprefix('Value error, ')}")
        elif e["type"] == "missing":
            parts.append(f"missing the required field {loc!r}")
        else:
            parts.append(f"{loc}: {e['msg'][0].lower() + e['msg'][1:]}, got {_shown(e.get('input'))}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _suggest(key: str) -> str:
    """A "did you mean" for an unknown key: the declared key with the same last part, else the closest one."""
    last = key.split(".")[-1]
    same = [k for k in known_keys() if k.split(".")[-1] == last and k != key]
    return f" (did you mean {same[0]!r}?)" if same else did_you_mean(key, known_keys())


def _is_union_tag(part: Any) -> bool:
    """pydantic names union members in error locations (``list[...]``, ``function-after[...]``): not fields."""
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "dict", "list"))


def _shown(value: Any) -> str:
    text = repr(value)
    return (text[:60] + "…" if len(text) > 60 else text) + f" ({type(value).__name__})"


def json_schema() -> dict[str, Any]:
    """The recipe's JSON Schema (draft 2020-12), as ``edgezo recipes --schema`` prints it."""
    return RecipeSchema.model_json_schema()


__all__ = ["RecipeSchema", "validate", "describe", "json_schema", "known_keys"]
