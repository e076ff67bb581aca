"""Benchmarks: ``edgezo bench NAME --out DIR [--quick]``.

Each benchmark is a module with ``run(args) -> dict`` (the result, holding a
top-level ``"goals"`` object) and ``plot(result, path)``; optionally
``add_arguments(parser)`` for extra flags. Benchmarks compare side by side in
one process (ratios) and never assert a wall-clock time. The runner writes
``DIR/NAME.json`` and ``DIR/NAME.png`` atomically.
"""

from __future__ import annotations

import importlib.util
import platform
import time

import torch

from .. import __version__, io
from ..errors import ConfigError
from ..registry import Registry

BENCHMARKS: dict[str, str] = {
    "estimators": "edgezo.bench.estimators",
    "tensor-zo": "edgezo.bench.tensor_zo",
    "pinn": "edgezo.bench.pinn",
    "deepzero": "edgezo.bench.deepzero",
    "backends": "edgezo.bench.backends",
    "robustify": "edgezo.bench.robustify",
    "scale": "edgezo.bench.scale",
    "solver": "edgezo.bench.solver",
    "device": "edgezo.bench.device",
    "rtl": "edgezo.bench.rtl",
    "memory": "edgezo.bench.memory",
    "throughput": "edgezo.bench.throughput",
}


# The benchmark modules by name; other packages add theirs through ``edgezo.benchmarks``.
REGISTRY: Registry = Registry("benchmark", group="edgezo.benchmarks")
for _name, _module in BENCHMARKS.items():
    REGISTRY.register(_name, _module)


def _present(name: str) -> bool:
    path = REGISTRY.path(name)
    return path is None or importlib.util.find_spec(path.partition(":")[0]) is not None


def available() -> list[str]:
    """Registered benchmarks whose module is present in this checkout."""
    return [n for n in REGISTRY.available() if _present(n)]


def load(name: str):
    """The benchmark module ``name`` (``unknown benchmark ...; available: ...`` otherwise)."""
    if name not in REGISTRY or not _present(name):
        raise ConfigError(f"unknown benchmark {name!r}; available: {', '.join(available())}")
    return REGISTRY.get(name)


def environment() -> dict:
    return {"edgezo": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def run_benchmark(name: str, args) -> dict:
    module = load(name)
    out = io.out_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = module.run(args)
    if "goals" not in result:
        raise RuntimeError(f"benchmark {name} returned no 'goals'")
    result.setdefault("benchmark", name)
    result["quick"] = bool(getattr(args, "quick", False))
    result["environment"] = environment()
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    io.write_json(out / f"{name}.json", result)
    module.plot(result, out / f"{name}.png")
    return result
