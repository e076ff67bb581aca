"""One training run shared by N processes: ``edgezo train --workers N`` and torchrun.

* ``torchrun --nproc_per_node=N -m edgezo train ...`` starts N copies of the
  command; each finds ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment
  and joins the group through ``env://``.
* ``edgezo train --workers N`` spawns the N copies itself
  (``torch.multiprocessing``, start method ``spawn``) with the same environment
  and a file rendezvous in a temporary folder.

Each rank builds the recipe's trainer with its oracle wrapped in a
:class:`~edgezo.oracles.distributed.DistributedOracle` (gloo on CPU, NCCL when
``--device cuda``; rank r then uses ``cuda:LOCAL_RANK``). Only rank 0 shows
progress, evaluates the test metric and writes ``checkpoint.pt``,
``metrics.json`` and the plot; every rank can resume from that checkpoint.

Threads: unless ``OMP_NUM_THREADS`` is set (torchrun sets it to 1), each rank
uses ``cores // N`` intra-op threads (at least 1), so 2 workers on 2 cores run
one thread each instead of oversubscribing the cores.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ConfigError

INIT_ENV = "EDGEZO_DIST_INIT"
CHECKSUM_EVERY = 50


class DistributedError(ConfigError):
    """A multi-process run that cannot start as asked (the message says what to change)."""


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def should_launch(args) -> bool:
    """True when this process must spawn ``--workers`` ranks (it is not one itself)."""
    workers = int(getattr(args, "workers", 1))
    if workers < 1:
        raise DistributedError(f"--workers must be at least 1, got {workers}")
    if _env_world_size() > 1:
        if workers > 1 and workers != _env_world_size():
            raise DistributedError(f"--workers {workers} disagrees with WORLD_SIZE={_env_world_size()} set by the "
                                   "launcher "
                           "(torchrun); drop --workers when running under torchrun")
        return False
    return workers > 1


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Session:
    """A single-process run: every hook is a no-op."""

    rank = 0
    world_size = 1
    is_main = True

    def describe(self) -> str:
        return ""

    def device(self, device: str) -> str:
        return device

    def wrap(self, factory: Callable | None) -> Callable | None:
        return factory

    def prepare(self, trainer) -> None:
        pass

    def run(self, trainer, *, resume: bool) -> dict[str, Any]:
        return trainer.run(resume=resume)


class DistributedSession(Session):
    """This process's part in a run of ``WORLD_SIZE`` ranks (environment set by torchrun or the launcher)."""

    def __init__(self, device: str, *, checksum_every: int = CHECKSUM_EVERY):
        import torch

        self.rank = int(os.environ["RANK"])
        self.world_size = _env_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
        self.is_main = self.rank == 0
        self.checksum_every = checksum_every
        self.oracle = None
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, cores() // local_world))
        self._device = device
        if device.startswith("cuda"):
            if device != "cuda":
                raise DistributedError("with several workers give --device cuda (rank r uses cuda:LOCAL_RANK), "
                                       f"not {device}")
            if self.local_rank >= torch.cuda.device_count():
                raise DistributedError(f"rank {self.rank} needs cuda:{self.local_rank} but {torch.cuda.device_count()} "
                               "CUDA device(s) are visible; start at most one worker per GPU")
            torch.cuda.set_device(self.local_rank)
            self._device = f"cuda:{self.local_rank}"
        backend = "nccl" if self._device.startswith("cuda") else "gloo"
        init_process_group(backend, init_method=os.environ.get(INIT_ENV, "env://"), rank=self.rank,
                           world_size=self.world_size)

    def describe(self) -> str:
        return f", {self.world_size} workers"

    def device(self, device: str) -> str:
        return self._device

    def wrap(self, factory: Callable | None) -> Callable:
        from .oracles.distributed import DistributedOracle
        from .recipes import make_oracle

        def build(model, loss_fn, *, groups=None, example_batch=None, **options):
            inner = make_oracle(model, loss_fn, groups=groups, example_batch=example_batch, oracle_factory=factory,
                                **options)
            self.oracle = DistributedOracle(inner, checksum_every=self.checksum_every)
            return self.oracle

        return build

    def prepare(self, trainer) -> None:
        if self.oracle is None or trainer.oracle is not self.oracle:
            raise DistributedError("this recipe's task builds its own oracle (it ignores the oracle factory), so its "
                           "queries cannot be shared; train it with one worker")
        if not self.is_main:
            trainer.progress = False
            trainer.evaluator = None

    def run(self, trainer, *, resume: bool) -> dict[str, Any]:
        with leaving_process_group():
            if not self.is_main:  # read rank 0's checkpoint, never write one
                if resume:
                    trainer.load_checkpoint()
                trainer.out_dir = None
                resume = False
            metrics = trainer.run(resume=resume)
            self.oracle.check_parameters()
            stats = self.oracle.comm_stats()
            steps = max(1, stats["evaluations"])
            metrics["workers"] = self.world_size
            metrics["communication"] = {
                **stats, "bytes_per_step": (stats["loss_bytes_sent"] + stats["checksum_bytes_sent"]) / steps}
        return metrics


def session(args) -> Session:
    """The session of this process: distributed under torchrun / ``--workers``, else a no-op one."""
    if _env_world_size() > 1:
        return DistributedSession(args.device)
    return Session()


def init_process_group(backend: str, *, init_method: str | None = None, rank: int | None = None,
                       world_size: int | None = None) -> None:
    """Join the process group once (a no-op when this process already has one).

    ``rank``/``world_size`` default to ``RANK``/``WORLD_SIZE`` and
    ``init_method`` to ``env://`` (``MASTER_ADDR``/``MASTER_PORT``), as torchrun sets them.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return
    # torch._dynamo (which torch.optim imports on first use) takes references to
    # every process group alive when it is imported, so a group created before
    # it outlives destroy_process_group: its gloo threads then release Python
    # tensors while the interpreter shuts down, and the process aborts
    # ("terminate called without an active exception"). Imported first, it
    # leaves the group alone and destroy_process_group joins those threads.
    import torch._dynamo  # noqa: F401

    dist.init_process_group(backend, init_method=init_method or "env://",
                            rank=int(os.environ["RANK"]) if rank is None else rank,
                            world_size=_env_world_size() if world_size is None else world_size)


@contextmanager
def leaving_process_group():
    """Free the process group when the block ends.

    A block that ends normally leaves together with the other ranks: a
    barrier first, since gloo aborts a process that tears its group down while
    a peer still talks to it. A block that raises skips the barrier (the other
    ranks may be stuck in a collective) and only destroys the group.
    ``destroy_process_group`` joins the group's threads (see
    :func:`init_process_group` for what keeps them alive otherwise).
    """
    import torch.distributed as dist

    try:
        yield
    except BaseException:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


# --- the --workers launcher ------------------------------------------------------------
def _worker(rank: int, world: int, init_method: str, entry: Callable[[Any], int], args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      **{INIT_ENV: init_method})
    try:
        code = entry(args)
    except KeyboardInterrupt:
        code = 130
    if code:
        sys.exit(code)


def launch_workers(args, out: Path, entry: Callable[[Any], int]) -> int:
    """Spawn ``args.workers`` ranks that each run ``entry(args)`` (a picklable, module-level function).

    ``entry`` is the caller's training command (``edgezo train`` passes its
    own); it returns the exit status and reports its own errors.
    """
    import torch
    import torch.multiprocessing as mp

    n = int(args.workers)
    if args.device.startswith("cuda") and torch.cuda.device_count() < n:
        raise DistributedError(f"--workers {n} with --device {args.device} needs {n} CUDA devices; "
                       f"{torch.cuda.device_count()} visible")
    args.out = str(out)  # the default folder name has a timestamp: fix it once for every rank
    with tempfile.TemporaryDirectory(prefix="edgezo-dist-") as tmp:
        init = f"file://{Path(tmp) / 'rendezvous'}"
        context = mp.start_processes(_worker, args=(n, init, entry, args), nprocs=n, join=False, start_method="spawn")
        try:
            while not context.join():
                pass
        except mp.ProcessExitedException as err:
            print(f"edgezo: a worker stopped (exit status {err.exit_code}); the others were stopped too",
                  file=sys.stderr)
            return err.exit_code if err.exit_code and err.exit_code > 0 else 1
        except mp.ProcessRaisedException as err:
            print(f"edgezo: a worker failed:\n{err}", file=sys.stderr)
            return 1
    return 0
