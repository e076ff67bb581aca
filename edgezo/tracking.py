"""Experiment tracking: where a run's numbers go while it trains.

``edgezo train --log tensorboard`` writes TensorBoard event files through
``torch.utils.tensorboard`` into ``OUT/tensorboard/``; ``--log csv`` appends
one row per step to ``OUT/steps.csv`` and one per evaluation to
``OUT/evals.csv`` (both can be given). Per step: ``train/loss`` (the loss at θ
the estimator reports), ``train/lr``, ``train/step_time_s`` and
``train/forward_passes`` (cumulative); per evaluation ``test/<metric>``; at
the end the estimator settings as TensorBoard hparams with the final metrics.

:class:`EpochLines` is what the trainer prints instead of a progress bar when
stderr is not a terminal: one line per epoch, so a CI log is not flooded by
bar redraws.

A logger has ``on_step``, ``on_eval``, ``on_epoch``, ``flush`` and ``finish``;
the :class:`~edgezo.trainer.Trainer` calls the first four, the caller
``finish(metrics)`` once the run is over.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigError

__all__ = ["Logger", "EpochLines", "CSVLogger", "TensorBoardLogger", "build_loggers", "LOG_KINDS", "hparams_of"]

LOG_KINDS = ("tensorboard", "csv")


class Logger:
    """No-op base: subclasses override what they record."""

    def on_step(self, step: int, loss: float, *, lr: float, seconds: float, forward_passes: int) -> None:
        pass

    def on_eval(self, step: int, record: dict[str, Any]) -> None:
        pass

    def on_epoch(self, epoch: float, step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def finish(self, metrics: dict[str, Any]) -> None:
        self.flush()


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "forward_passes")}


class EpochLines(Logger):
    """``epoch 3/20 · step 66/440 · loss 0.3123 · test_accuracy 0.9500 · 0.05 s/step`` per epoch."""

    def __init__(self, stream: TextIO, epochs: int, steps_per_epoch: int, metric: str):
        self.stream, self.epochs, self.spe, self.metric = stream, int(epochs), int(steps_per_epoch), metric
        self._losses: list[float] = []
        self._seconds = 0.0
        self._last: dict[str, Any] = {}

    def on_step(self, step, loss, *, lr, seconds, forward_passes):
        self._losses.append(float(loss))
        self._seconds += seconds

    def on_eval(self, step, record):
        self._last = record

    def on_epoch(self, epoch, step):
        n = max(1, len(self._losses))
        parts = [f"epoch {math.ceil(epoch)}/{self.epochs}", f"step {step}", f"loss {sum(self._losses) / n:.4f}"]
        if isinstance(self._last.get(self.metric), (int, float)):
            parts.append(f"{self.metric} {self._last[self.metric]:.4f}")
        parts.append(f"{self._seconds / n:.3g} s/step")
        print(" · ".join(parts), file=self.stream, flush=True)
        self._losses, self._seconds = [], 0.0


class CSVLogger(Logger):
    """``steps.csv`` (step, loss, lr, step_time_s, forward_passes) and ``evals.csv`` (step, metrics...)."""

    def __init__(self, out_dir: str | Path, *, resume: bool = False):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.steps_path, self.evals_path = out / "steps.csv", out / "evals.csv"
        mode = "a" if resume and self.steps_path.exists() else "w"
        self._steps = open(self.steps_path, mode, newline="")
        self._step_writer = csv.writer(self._steps)
        if mode == "w":
            self._step_writer.writerow(["step", "loss", "lr", "step_time_s", "forward_passes"])
        self._evals: TextIO | None = None
        self._eval_writer: Any = None
        self._eval_keys: list[str] = []
        self._resume = resume

    def on_step(self, step, loss, *, lr, seconds, forward_passes):
        self._step_writer.writerow([step, repr(float(loss)), repr(float(lr)), f"{seconds:.6f}", forward_passes])

    def on_eval(self, step, record):
        values = _numbers(record)
        if self._eval_writer is None:
            self._eval_keys = sorted(values)
            append = self._resume and self.evals_path.exists()
            self._evals = open(self.evals_path, "a" if append else "w", newline="")
            self._eval_writer = csv.DictWriter(self._evals, ["step", "forward_passes", *self._eval_keys],
                                               extrasaction="ignore")
            if not append:
                self._eval_writer.writeheader()
        self._eval_writer.writerow({"step": step, "forward_passes": record.get("forward_passes"), **values})

    def flush(self):
        for f in (self._steps, self._evals):
            if f is not None and not f.closed:
                f.flush()

    def finish(self, metrics):
        for f in (self._steps, self._evals):
            if f is not None and not f.closed:
                f.close()


class TensorBoardLogger(Logger):
    """Scalars through ``torch.utils.tensorboard.SummaryWriter``; hparams at :meth:`finish`."""

    def __init__(self, log_dir: str | Path, hparams: dict[str, Any] | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError("--log tensorboard needs the tensorboard package: pip install 'edgezo[tensorboard]'") \
                from err
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.hparams = dict(hparams or {})

    def on_step(self, step, loss, *, lr, seconds, forward_passes):
        w = self.writer
        w.add_scalar("train/loss", float(loss), step)
        w.add_scalar("train/lr", float(lr), step)
        w.add_scalar("train/step_time_s", float(seconds), step)
        w.add_scalar("train/forward_passes", float(forward_passes), step)

    def on_eval(self, step, record):
        for key, value in _numbers(record).items():
            self.writer.add_scalar(f"test/{key}", value, step)

    def flush(self):
        self.writer.flush()

    def finish(self, metrics):
        """Estimator settings as hparams with the final metrics, in the same event file."""
        from torch.utils.tensorboard.summary import hparams

        final = {f"hparam/{k}": v for k, v in _numbers({k: metrics.get(k) for k in metrics}).items()
                 if k.startswith("test_") or k in ("final_train_loss", "forward_passes", "wall_s")}
        if self.hparams:
            for summary in hparams(self.hparams, final):
                self.writer.file_writer.add_summary(summary)
            for key, value in final.items():
                self.writer.add_scalar(key, value)
        self.writer.close()


def hparams_of(config: dict[str, Any]) -> dict[str, Any]:
    """Flat ``{section.key: scalar}`` of a recipe's estimator, optimizer and train tables (phase 0 for schedules)."""
    first = config["phases"][0] if config.get("phases") else config
    out: dict[str, Any] = {}
    for section, table in (("estimator", first.get("estimator", {})), ("optimizer", first.get("optimizer", {})),
                           ("train", config.get("train", {}))):
        for key, value in table.items():
            if isinstance(value, (bool, int, float, str)):
                out[f"{section}.{key}"] = value
            elif isinstance(value, (list, tuple)):
                out[f"{section}.{key}"] = str(list(value))
    if config.get("phases"):
        out["phases"] = len(config["phases"])
    return out


def build_loggers(kinds: Iterable[str], out_dir: str | Path, *, hparams: dict[str, Any] | None = None,
                  resume: bool = False) -> list[Logger]:
    """The loggers named by ``--log`` (``tensorboard``, ``csv``) writing under ``out_dir``."""
    loggers: list[Logger] = []
    for kind in dict.fromkeys(kinds):
        if kind == "tensorboard":
            loggers.append(TensorBoardLogger(Path(out_dir) / "tensorboard", hparams))
        elif kind == "csv":
            loggers.append(CSVLogger(out_dir, resume=resume))
        else:
            raise ConfigError(f"unknown --log {kind!r}; use one of {', '.join(LOG_KINDS)}")
    return loggers
