"""A small cache of generated directions, so one step generates each once.

A ZO step uses the same directions twice: to evaluate the perturbed losses and
to form the update ``Σ c_i z(seed_i)``. ZO-Bench found steps slowed by
regenerating them (three times per step in its baseline); this LRU keeps the
last few blocks keyed by everything that determines them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Sequence

import torch

from .directions import directions

_CACHE: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
MAX_ENTRIES = 8
_LOCK = threading.Lock()


def cached_directions(seeds: Sequence[int], start: int, count: int, kind: str,
                      device: torch.device | str | None, dtype: torch.dtype) -> torch.Tensor:
    """``directions(seeds, start, count, kind)`` of shape (len(seeds), count), cached."""
    key = (tuple(int(s) for s in seeds), int(start), int(count), kind, str(device), dtype)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    block = directions(list(key[0]), start, count, kind, device=device, dtype=dtype)
    with _LOCK:
        _CACHE[key] = block
        while len(_CACHE) > MAX_ENTRIES:
            _CACHE.popitem(last=False)
    return block


def clear() -> None:
    with _LOCK:
        _CACHE.clear()
