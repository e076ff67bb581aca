"""The one training loop every method runs through.

Each step: take a mini-batch, ask the phase's estimator for ĝ (only loss
queries to the oracle, or autograd for the ``fo`` baseline), and apply it —
through a ``torch.optim`` optimizer via ``.grad`` on a host, or as seed pairs
(seed-SGD) where the parameters live elsewhere.

Determinism and resume: the batch order depends only on (seed, epoch) and the
direction seeds only on (seed, step), so a run restarted from a checkpoint
reaches exactly the parameters of an uninterrupted run. Checkpoints are written
atomically; a non-finite loss or estimate stops the run before it touches the
parameters, leaving the last good checkpoint in place.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from edgezo.errors import CheckpointError, EdgezoError

from . import checkpoint
from .estimators.base import Estimate, Estimator
from .optim import build_optimizer, seed_sgd_step
from .oracle import Batch, Oracle

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_KIND = "train"
CHECKPOINT_KEYS = ("params", "optimizer", "scheduler", "oracle", "counters", "state")


class TrainingDiverged(EdgezoError, RuntimeError):
    """The loss or the gradient estimate became NaN or infinite."""


class ResumeError(CheckpointError):
    """A checkpoint cannot continue this run."""


class BatchSource(Protocol):
    """Where mini-batches come from: a fixed number per epoch, chosen deterministically."""

    steps_per_epoch: int

    def get(self, epoch: int, index: int, step: int) -> Batch: ...


class DatasetBatches:
    """Mini-batches of a supervised data set in a (seed, epoch)-determined order."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, *, drop_last: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n = x.shape[0]
        if n == 0:
            raise ValueError("the training set is empty")
        self.x, self.y, self.seed = x, y, int(seed)
        self.batch_size = min(int(batch_size), n)
        self.steps_per_epoch = n // self.batch_size if drop_last else math.ceil(n / self.batch_size)
        self._perm: tuple[int, torch.Tensor] | None = None

    def get(self, epoch: int, index: int, step: int) -> Batch:
        from .data import epoch_permutation

        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, epoch_permutation(self.x.shape[0], self.seed, epoch))
        idx = self._perm[1][index * self.batch_size : (index + 1) * self.batch_size]
        return self.x[idx], self.y[idx]


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    max_steps: int | None = None
    eval_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0
    schedule: str | None = None
    min_lr_ratio: float = 0.0
    max_wall_s: float | None = None  # stop after the step that crosses this wall time (then evaluate)

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.schedule not in (None, "none", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; use 'cosine' or none")


@dataclass
class Phase:
    """From ``start_epoch`` on, train with ``estimator`` and a fresh optimizer from ``optimizer``."""

    estimator: Estimator
    optimizer: dict[str, Any]
    start_epoch: int = 0
    name: str = ""


def classification_evaluator(x_test: torch.Tensor, y_test: torch.Tensor, *, chunk: int = 4096):
    """Evaluator computing ``test_accuracy`` and ``test_loss`` (cross-entropy)."""

    def evaluate(oracle: Oracle) -> dict[str, float]:
        correct, loss_sum = 0, 0.0
        for lo in range(0, x_test.shape[0], chunk):
            out = oracle.predict(x_test[lo : lo + chunk]).float().cpu()
            yb = y_test[lo : lo + chunk]
            correct += int((out.argmax(-1) == yb).sum())
            loss_sum += float(torch.nn.functional.cross_entropy(out, yb, reduction="sum"))
        n = x_test.shape[0]
        return {"test_accuracy": correct / n, "test_loss": loss_sum / n}

    return evaluate


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


@dataclass
class _State:
    step: int = 0
    phase: int = -1
    wall_s: float = 0.0
    losses: list = field(default_factory=list)
    evals: list = field(default_factory=list)


class Trainer:
    """Args:
        oracle: where θ lives and losses are computed.
        phases: one or more :class:`Phase` (a single phase for most recipes).
        batches: a :class:`BatchSource`.
        config: :class:`TrainConfig`.
        evaluator: ``oracle -> {metric: value}``; run every ``eval_every`` steps
            (0: at the end of each epoch) and at the end.
        out_dir: where the checkpoint goes (None: no checkpoints).
        primary_metric: the metric the progress bar and summary show.
        info: extra keys copied into the metrics (recipe, backend, ...).
    """

    def __init__(self, oracle: Oracle, phases: Sequence[Phase], batches: BatchSource, config: TrainConfig, *,
                 evaluator: Callable[[Oracle], dict[str, float]] | None = None, out_dir: str | Path | None = None,
                 primary_metric: str = "test_accuracy", progress: bool = True, info: dict | None = None):
        if not phases:
            raise ValueError("at least one phase (estimator + optimizer) is needed")
        if phases[0].start_epoch != 0 or any(a.start_epoch >= b.start_epoch for a, b in zip(phases, phases[1:])):
            raise ValueError("phases must start at epoch 0 and in increasing order of start_epoch")
        self.oracle, self.phases, self.batches, self.config = oracle, list(phases), batches, config
        self.evaluator = evaluator
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.primary_metric = primary_metric
        self.progress = progress
        self.loggers: list = []  # edgezo.tracking loggers: on_step / on_eval / on_epoch / close
        self.info = dict(info or {})
        self.state = _State()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        total = config.epochs * batches.steps_per_epoch
        self.total_steps = min(total, config.max_steps) if config.max_steps else total

    # --- phases and optimizers ------------------------------------------------
    def phase_index(self, step: int) -> int:
        epoch = step // self.batches.steps_per_epoch
        return max(i for i, p in enumerate(self.phases) if p.start_epoch <= epoch)

    def _phase_span(self, index: int) -> tuple[int, int]:
        spe = self.batches.steps_per_epoch
        start = self.phases[index].start_epoch * spe
        stop = self.phases[index + 1].start_epoch * spe if index + 1 < len(self.phases) else self.total_steps
        return start, min(stop, self.total_steps)

    def _enter_phase(self, index: int) -> None:
        spec = self.phases[index].optimizer
        params = None if spec.get("kind") == "seed-sgd" else self.oracle.optimizer_parameters()
        self.optimizer = build_optimizer(params, spec)
        self.scheduler = None
        start, stop = self._phase_span(index)
        if self.optimizer is not None and self.config.schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=max(1, stop - start), eta_min=spec.get("lr", 1e-3) * self.config.min_lr_ratio)
        self.state.phase = index

    def _seed_sgd_lr(self, step: int) -> float:
        spec = self.phases[self.state.phase].optimizer
        lr = float(spec.get("lr", 1e-3))
        if self.config.schedule != "cosine":
            return lr
        start, stop = self._phase_span(self.state.phase)
        t = (step - start) / max(1, stop - start)
        floor = lr * self.config.min_lr_ratio
        return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * t))

    def current_lr(self, step: int) -> float:
        """The learning rate the next update uses (the optimizer's, or seed-SGD's scheduled one)."""
        if self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return self._seed_sgd_lr(step)

    def _apply(self, est: Estimate, step: int) -> None:
        if self.optimizer is None:
            seed_sgd_step(self.oracle, est, self._seed_sgd_lr(step))
            return
        params = self.oracle.optimizer_parameters()
        self.oracle.set_grad(est.to_dense(self.oracle.layout, device=params[0].device, dtype=params[0].dtype))
        self.optimizer.step()
        self.oracle.after_step()
        if self.scheduler is not None:
            self.scheduler.step()

    # --- checkpoints ----------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def _fingerprint(self) -> dict:
        return {"dim": self.oracle.dim, "config": asdict(self.config), "phases": [
            {"estimator": repr(p.estimator), "optimizer": p.optimizer, "start_epoch": p.start_epoch}
            for p in self.phases], "steps_per_epoch": self.batches.steps_per_epoch}

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None:
            return
        checkpoint.save(self.checkpoint_path, CHECKPOINT_KIND, {
            "params": self.oracle.get_flat().cpu(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "oracle": self.oracle.state_dict(),
            "counters": self.oracle.counters.as_dict(),
            "state": asdict(self.state),
            "info": self.info,
        }, settings=self._fingerprint())

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ResumeError("no checkpoint to resume from: this trainer has no output directory")
        try:
            ckpt = checkpoint.load(path, CHECKPOINT_KIND, settings=self._fingerprint(), required=CHECKPOINT_KEYS)
        except CheckpointError as err:
            raise ResumeError(str(err)) from None
        try:
            self.oracle.set_flat(ckpt["params"])
            self.oracle.load_state_dict(ckpt["oracle"])
            c = ckpt["counters"]
            self.oracle.counters.forward_passes = int(c["forward_passes"])
            self.oracle.counters.samples_forwarded = int(c["samples_forwarded"])
            self.state = _State(**ckpt["state"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ResumeError(f"{path}: incomplete or inconsistent checkpoint ({err}); start a new run") from None
        if self.state.phase >= 0:
            self._enter_phase(self.state.phase)
            if self.optimizer is not None and ckpt["optimizer"] is not None:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None and ckpt["scheduler"] is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])

    # --- the loop ---------------------------------------------------------------
    def _evaluate(self, step: int) -> dict:
        record = {"step": step, "forward_passes": self.oracle.counters.forward_passes}
        if getattr(self, "_clock", None) is not None:  # training wall time so far (evaluations included)
            record["wall_s"] = round(self._clock[1] + time.perf_counter() - self._clock[0], 3)
        if self.evaluator is not None:
            record.update(self.evaluator(self.oracle))
        self.state.evals.append(record)
        return record

    def run(self, *, resume: bool = False) -> dict[str, Any]:
        """Train to the configured length; return the metrics dictionary."""
        from tqdm.auto import tqdm

        if resume:
            self.load_checkpoint()
        cfg, spe = self.config, self.batches.steps_per_epoch
        eval_every = cfg.eval_every or spe
        ckpt_every = cfg.checkpoint_every or spe
        started = time.perf_counter()
        wall_before = self.state.wall_s
        self._clock = (started, wall_before)
        # a progress bar on a terminal; one line per epoch in a log file or CI (no redraws)
        interactive = self.progress and sys.stderr.isatty()
        loggers = list(self.loggers)
        if self.progress and not interactive:
            from .tracking import EpochLines

            loggers.append(EpochLines(sys.stderr, cfg.epochs, spe, self.primary_metric))
        bar = tqdm(total=self.total_steps, initial=self.state.step, disable=not interactive, unit="step",
                   dynamic_ncols=True, leave=False, file=sys.stderr)
        try:
            while self.state.step < self.total_steps:
                t_step = time.perf_counter()
                step = self.state.step
                epoch, index = divmod(step, spe)
                phase = self.phase_index(step)
                if phase != self.state.phase:
                    self._enter_phase(phase)
                batch = self.batches.get(epoch, index, step)
                lr = self.current_lr(step)
                est = self.phases[phase].estimator.estimate(self.oracle, batch, step=step, seed=cfg.seed)
                if not est.is_finite():
                    where = f" (last good checkpoint: {self.checkpoint_path}, step {self._last_ckpt_step()})" \
                        if self.checkpoint_path is not None and self.checkpoint_path.exists() else ""
                    raise TrainingDiverged(
                        f"non-finite loss or gradient estimate at step {step} (epoch {epoch}, loss {est.loss}); "
                        f"the parameters were not updated{where}. Lower the learning rate or mu, or check the data.")
                self._apply(est, step)
                self.state.step = step + 1
                self.state.losses.append((step, est.loss))
                bar.update(1)
                for log in loggers:
                    log.on_step(step + 1, est.loss, lr=lr, seconds=time.perf_counter() - t_step,
                                forward_passes=self.oracle.counters.forward_passes)
                elapsed = wall_before + time.perf_counter() - started
                out_of_time = cfg.max_wall_s is not None and elapsed >= cfg.max_wall_s
                if self.state.step % eval_every == 0 or self.state.step == self.total_steps or out_of_time:
                    rec = self._evaluate(self.state.step)
                    shown = {k: f"{v:.4g}" for k, v in rec.items() if k == self.primary_metric}
                    bar.set_postfix(loss=f"{est.loss:.4f}", **shown)
                    for log in loggers:
                        log.on_eval(self.state.step, rec)
                if self.state.step % spe == 0 or self.state.step == self.total_steps:
                    for log in loggers:
                        log.on_epoch(self.state.step / spe, self.state.step)
                if self.checkpoint_path is not None and (
                        self.state.step % ckpt_every == 0 or self.state.step == self.total_steps):
                    self.state.wall_s = wall_before + time.perf_counter() - started
                    self.save_checkpoint()
                if out_of_time:
                    break
        finally:
            bar.close()
            for log in self.loggers:
                log.flush()
        self.state.wall_s = wall_before + time.perf_counter() - started
        return self.metrics()

    def _last_ckpt_step(self) -> int | str:
        try:
            return checkpoint.load(self.checkpoint_path, CHECKPOINT_KIND)["state"]["step"]
        except (CheckpointError, KeyError, TypeError):
            return "?"

    def metrics(self) -> dict[str, Any]:
        last = self.state.evals[-1] if self.state.evals else {}
        phases = [p.estimator.name for p in self.phases]
        out = {
            **self.info,
            "estimator": self.info.get("estimator", "+".join(dict.fromkeys(phases))),
            "backend": self.oracle.backend,
            "seed": self.config.seed,
            "params": self.oracle.dim,
            "forward_passes": self.oracle.counters.forward_passes,
            "samples_forwarded": self.oracle.counters.samples_forwarded,
            "steps": self.state.step,
            "epochs": self.state.step / self.batches.steps_per_epoch,
            "wall_s": round(self.state.wall_s, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "final_train_loss": self.state.losses[-1][1] if self.state.losses else None,
        }
        out.update({k: v for k, v in last.items() if k not in ("step", "forward_passes")})
        out["history"] = self.state.evals
        return out
