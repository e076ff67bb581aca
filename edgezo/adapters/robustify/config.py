"""Settings of one robustification run, and the queries it will cost.

Query cost (one query = one sample sent to the black box), with B the batch
size, d the dimension ZO estimates in (d_z for ZO-AE-DS, C·H·W for ZO-DS):

* labels: one query per training image (``y = argmax f(x)``, ZO methods);
* one stability step: B (q + 1) with RGE (forward difference), B (d + 1) with CGE;
* certification: n0 + n per test image (Cohen et al.).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgezo.errors import ConfigError, did_you_mean

METHODS = ("fo-ds", "zo-ds", "zo-ae-ds")
ESTIMATORS = ("rge", "cge")


@dataclass
class RobustifyConfig:
    """Args:
        method: ``fo-ds`` (white-box baseline, needs the classifier), ``zo-ds``
            (ZO in pixel space) or ``zo-ae-ds`` (ZO in the autoencoder's latent space).
        estimator: ``rge`` (q random directions on the unit sphere, forward
            difference) or ``cge`` (every coordinate, forward difference).
        q, mu: RGE directions and the finite-difference step (paper: μ = 0.005).
        sigma: the smoothing noise level σ (training noise and certification).
        latent_dim: d_z of the autoencoder (ZO-AE-DS).
        ae_epochs: stage 1, autoencoder pre-training on reconstruction (no queries).
        warmup_epochs: denoiser warm start with the MSE denoising loss (no queries).
        epochs: the stability stage (CE between f(D(x+δ)) and f(x)).
        mse_weight: weight of an extra MSE denoising term in the stability stage.
        n0, n, alpha: CERTIFY's selection draws, estimation draws and failure probability.
        radii: radii at which certified accuracy is reported.
        query_budget: the most queries the run may send (None = unlimited);
            training stops early when only the certification is still affordable.
        checkpoint_every: training steps (or certified images) between checkpoints.
    """

    method: str = "zo-ae-ds"
    estimator: str = "rge"
    q: int = 16
    mu: float = 0.005
    sigma: float = 0.25
    latent_dim: int = 16
    denoiser_width: int = 16
    denoiser_depth: int = 4
    ae_width: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    ae_epochs: int = 30
    warmup_epochs: int = 20
    epochs: int = 20
    mse_weight: float = 0.0
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    radii: tuple[float, ...] = field(default=(0.0, 0.25, 0.5, 0.75))
    certify_batch: int = 1000
    query_budget: int | None = None
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self):
        self.radii = tuple(float(r) for r in self.radii)
        checks = [
            (self.method in METHODS, f"method must be one of {METHODS}, got {self.method!r}"),
            (self.estimator in ESTIMATORS, f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}"),
            (self.q >= 1, f"q must be >= 1, got {self.q}"),
            (self.mu > 0, f"mu must be > 0, got {self.mu}"),
            (self.sigma > 0, f"sigma must be > 0, got {self.sigma}"),
            (self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}"),
            (self.denoiser_depth >= 2, f"denoiser_depth must be >= 2, got {self.denoiser_depth}"),
            (self.denoiser_width >= 1 and self.ae_width >= 1, "widths must be positive"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (min(self.ae_epochs, self.warmup_epochs, self.epochs) >= 0, "epochs must be >= 0"),
            (self.mse_weight >= 0, f"mse_weight must be >= 0, got {self.mse_weight}"),
            (self.n0 >= 1 and self.n >= 1, f"n0 and n must be >= 1, got {self.n0}, {self.n}"),
            (0 < self.alpha < 0.5, f"alpha must lie in (0, 0.5), got {self.alpha}"),
            (len(self.radii) > 0 and min(self.radii) >= 0, "radii must be a non-empty list of numbers >= 0"),
            (self.certify_batch >= 1, f"certify_batch must be >= 1, got {self.certify_batch}"),
            (self.query_budget is None or self.query_budget >= 0, "query_budget must be >= 0"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobustifyConfig:
        types = {f.name: str(f.type) for f in fields(cls)}
        for key, value in data.items():
            if key not in types:
                raise ConfigError(f"unknown robustify setting {key!r}{did_you_mean(key, types)}; "
                                  f"known: {', '.join(sorted(types))}")
            _check_type(key, value, types[key])
        try:
            return cls(**dict(data))
        except TypeError as err:
            raise ConfigError(f"bad robustify settings: {err}") from None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["radii"] = list(self.radii)
        return d

    @property
    def zeroth_order(self) -> bool:
        return self.method != "fo-ds"

    def zo_dim(self, image_numel: int) -> int:
        return self.latent_dim if self.method == "zo-ae-ds" else int(image_numel)

    def queries_per_step(self, image_numel: int, batch: int | None = None) -> int:
        """Black-box queries of one stability step (0 for FO-DS)."""
        if not self.zeroth_order:
            return 0
        b = self.batch_size if batch is None else batch
        per_sample = self.q + 1 if self.estimator == "rge" else self.zo_dim(image_numel) + 1
        return b * per_sample

    def steps_per_epoch(self, n_train: int) -> int:
        return max(1, n_train // min(self.batch_size, n_train))

    def plan(self, n_train: int, n_test: int, image_numel: int) -> dict[str, int]:
        """Queries each stage will send (training at full length)."""
        steps = self.epochs * self.steps_per_epoch(n_train)
        batch = min(self.batch_size, n_train)
        out = {
            "labels": n_train if self.zeroth_order and self.epochs else 0,
            "training": steps * self.queries_per_step(image_numel, batch),
            "certification": n_test * (self.n0 + self.n),
        }
        out["total"] = sum(out.values())
        out["minimum"] = out["labels"] + out["certification"] + (
            self.queries_per_step(image_numel, batch) if steps else 0)
        return out

    def check_budget(self, n_train: int, n_test: int, image_numel: int) -> dict[str, int]:
        """The plan, or ValueError when the budget cannot cover labels, one step and the certification."""
        plan = self.plan(n_train, n_test, image_numel)
        if self.query_budget is not None and self.query_budget < plan["minimum"]:
            raise ConfigError(
                f"query_budget {self.query_budget} is too small: labels need {plan['labels']}, "
                f"certifying {n_test} images needs {plan['certification']} (n0 + n = {self.n0 + self.n} each) "
                f"and one training step {plan['minimum'] - plan['labels'] - plan['certification']}; "
                f"raise the budget to at least {plan['minimum']} (the full run needs {plan['total']}) "
                f"or certify fewer images / lower n")
        return plan


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**53


def _is_number(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_int(value)


_EXPECTED = {
    "int": ("an integer of at most 2^53", lambda v: _is_int(v)),
    "int | None": ("an integer of at most 2^53 or none", lambda v: v is None or _is_int(v)),
    "float": ("a finite number", _is_number),
    "str": ("a string", lambda v: isinstance(v, str)),
    "tuple[float, ...]": ("a list of finite numbers",
                          lambda v: isinstance(v, (list, tuple)) and all(map(_is_number, v))),
}


def _check_type(key: str, value: Any, annotation: str) -> None:
    """Refuse ``value`` for setting ``key`` unless it has the field's type (named in the message)."""
    expected, ok = _EXPECTED.get(annotation, (None, None))
    if ok is not None and not ok(value):
        raise ConfigError(f"robustify setting {key!r} must be {expected}, got {value!r} ({type(value).__name__})")
