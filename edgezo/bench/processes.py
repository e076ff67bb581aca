"""Run a benchmark's independent training runs in spawned worker processes, a few at a time.

Torch's intra-op threads do not carry over to a spawned process, so each payload may carry
``threads`` and :func:`call_with_threads` applies it before the work. Results come back in the
payloads' order; ``on_result`` sees each one as it finishes (for progress lines).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context


def call_with_threads(fn: Callable[[dict], dict], payload: dict) -> dict:
    """``fn(payload)`` after ``torch.set_num_threads(payload["threads"])`` when it is given."""
    threads = payload.get("threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return fn(payload)


def run_in_processes(fn: Callable[[dict], dict], payloads: list[dict], workers: int,
                     on_result: Callable[[dict, dict], None] | None = None, *, isolate: bool = False) -> list[dict]:
    """``[fn(p) for p in payloads]``, with ``workers`` spawned processes at a time. With ``workers`` ≤ 1
    and ``isolate`` false the runs go in this process, one after the other; ``isolate`` gives every
    run a fresh process even then (a per-run memory high-water mark). ``fn`` must be importable at
    module level (spawn pickles it by name)."""
    if workers <= 1 and not isolate:
        results = []
        for payload in payloads:
            results.append(call_with_threads(fn, payload))
            if on_result is not None:
                on_result(payload, results[-1])
        return results
    results: list[dict | None] = [None] * len(payloads)
    options = {"max_workers": max(1, workers), "mp_context": get_context("spawn")}
    if isolate and sys.version_info >= (3, 11):  # one run per process (older Pythons reuse workers)
        options["max_tasks_per_child"] = 1
    with ProcessPoolExecutor(**options) as pool:
        futures = {pool.submit(call_with_threads, fn, p): k for k, p in enumerate(payloads)}
        for future in as_completed(futures):
            k = futures[future]
            results[k] = future.result()
            if on_result is not None:
                on_result(payloads[k], results[k])
    return results
