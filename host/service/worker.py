"""The worker thread that runs robustification jobs one at a time.

A job's request names a target endpoint (``edgezo serve model``), a data set
and the run settings. The worker builds an :class:`HttpBlackBox` and a
:class:`~edgezo.adapters.robustify.Robustifier` whose output directory is
``WORKDIR/jobs/<id>``: its checkpoint makes a job resumable, so when the
service stops (or dies) and starts again the job continues from its last
checkpoint with the queries already spent counted against its budget.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path

from edgezo.adapters.robustify import BlackBoxError, Interrupted, QueryBudgetExceeded, Robustifier, RobustifyConfig
from edgezo.data import DataError, load_dataset
from edgezo.errors import ConfigError

from .client import HttpBlackBox
from .jobs import JobStore
from .validation import LOOPBACK, host_allowed, target_host

log = logging.getLogger("edgezo.service")

ARTIFACTS = ("certification.json", "metrics.json", "manifest.json", "frontend.onnx", "denoiser_encoder.onnx",
             "decoder.onnx", "denoiser.onnx")


def resolve_data(data: dict, data_root: str | Path | None):
    """``{"dataset": name, "path": relative dir, "train_size": k, "test_size": m}`` → (x_train, x_test, y_test, C).

    ``path`` is resolved inside the service's data root and may not leave it.
    """
    name = data.get("dataset", "digits")
    rel = data.get("path")
    path = None
    if rel is not None:
        if data_root is None:
            raise ConfigError("this service has no data root (--data-root); only built-in data sets like 'digits'")
        root = Path(data_root).resolve()
        path = (root / rel).resolve()
        if root != path and root not in path.parents:
            raise ConfigError(f"data path {rel!r} leaves the service's data root")
    try:
        ds = load_dataset(name, path, flatten=False)
    except DataError as err:
        raise ConfigError(str(err)) from None
    x_train, x_test, y_test = ds.x_train, ds.x_test, ds.y_test
    if data.get("train_size"):
        x_train = x_train[: int(data["train_size"])]
    if data.get("test_size"):
        x_test, y_test = x_test[: int(data["test_size"])], y_test[: int(data["test_size"])]
    return x_train, x_test, y_test, ds.num_classes


class JobWorker(threading.Thread):
    def __init__(self, store: JobStore, workdir: str | Path, *, data_root: str | Path | None = None,
                 poll_interval: float = 0.5, progress_interval: float = 0.25, allowed_hosts=LOOPBACK):
        super().__init__(name="edgezo-robustify-worker", daemon=True)
        self.allowed_hosts = tuple(allowed_hosts)
        self.store = store
        self.workdir = Path(workdir)
        self.data_root = data_root
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self._stop_event = threading.Event()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self.current: str | None = None

    def job_dir(self, job_id: str) -> Path:
        return self.workdir / "jobs" / job_id

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current step (the job stays resumable) and wait for the thread."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancelled.add(job_id)

    def _is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def run(self) -> None:
        while not self._stop_event.is_set():
            job = self.store.claim_next()
            if job is None:
                self._stop_event.wait(self.poll_interval)
                continue
            self.current = job["id"]
            try:
                self._run_job(job)
            finally:
                self.current = None

    def _run_job(self, job: dict) -> None:
        job_id = job["id"]
        req = job["request"]
        last = [0.0]

        def progress(info: dict) -> None:
            now = time.monotonic()
            if now - last[0] >= self.progress_interval or info.get("stage") == "export":
                last[0] = now
                self.store.update(job_id, progress=info, queries_used=info["queries_used"])

        def should_stop() -> bool:
            return self._stop_event.is_set() or self._is_cancelled(job_id)

        blackbox = None
        robustifier = None
        try:
            x_train, x_test, y_test, classes = resolve_data(req["data"], self.data_root)
            config = RobustifyConfig.from_dict(req["config"])
            if not host_allowed(req["target"]["url"], self.allowed_hosts):
                raise ConfigError(f"target host {target_host(req['target']['url'])!r} is not on this service's "
                                  "allow-list")
            blackbox = HttpBlackBox(req["target"]["url"], req["target"]["api_key"], output="probabilities")
            robustifier = Robustifier(config, blackbox, x_train, x_test, y_test, out_dir=self.job_dir(job_id),
                                      num_classes=classes, progress=progress, should_stop=should_stop,
                                      queries_before=job["queries_used"])
            report = robustifier.run(resume=True)
        except Interrupted:
            used = robustifier.queries_used() if robustifier else job["queries_used"]
            if self._is_cancelled(job_id):
                self.store.update(job_id, status="cancelled", queries_used=used)
            else:  # the service is stopping: resume on the next start
                self.store.update(job_id, status="queued", queries_used=used)
            return
        except QueryBudgetExceeded as err:
            self._fail(job_id, f"query budget exhausted: {err}", robustifier)
            return
        except (BlackBoxError, ValueError, FileNotFoundError) as err:
            self._fail(job_id, str(err), robustifier)
            return
        except Exception as err:  # keep the service alive; the job records what went wrong
            log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
            self._fail(job_id, f"internal error ({type(err).__name__}); the service log has the details", robustifier)
            return
        finally:
            if blackbox is not None:
                blackbox.close()
        summary = {k: report[k] for k in ("method", "estimator", "q", "sigma", "n0", "n", "alpha", "num_images",
                                          "certified_accuracy", "abstain_rate", "queries",
                                          "training_truncated_at_step", "sessions")}
        self.store.update(job_id, status="completed", result=summary, queries_used=report["queries"]["total"],
                          progress={"stage": "done", "fraction": 1.0, "queries_used": report["queries"]["total"]})

    def _fail(self, job_id: str, message: str, robustifier) -> None:
        fields = {"status": "failed", "error": message}
        if robustifier is not None and hasattr(robustifier, "_meter"):
            fields["queries_used"] = robustifier.queries_used()
        self.store.update(job_id, **fields)
