"""A small cache of generated directions, so one step generates each once.

A ZO step uses the same directions twice: to evaluate the perturbed losses and
to form the update ``Σ c_i z(seed_i)``. ZO-Bench found steps slowed by
regenerating them (three times per step in its baseline); this LRU keeps the
last few blocks keyed by everything that determines them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch

from .directions import directions

_CACHE: OrderedDict[tuple, torch.Tensor] = OrderedDict()
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
        rows = _rows_of_cached(key)
    if rows is not None:
        return rows
    unique = list(dict.fromkeys(key[0]))
    block = directions(unique, start, count, kind, device=device, dtype=dtype)
    if len(unique) < len(key[0]):
        where = {s: i for i, s in enumerate(unique)}
        block = block[torch.tensor([where[s] for s in key[0]], device=block.device)]
    with _LOCK:
        _CACHE[key] = block
        while len(_CACHE) > MAX_ENTRIES:
            _CACHE.popitem(last=False)
    return block


def _rows_of_cached(key: tuple) -> torch.Tensor | None:
    """The requested seeds' rows of a cached block over the same range, if one holds them all.

    A forward-difference step evaluates ``[s_1, s_1, …, s_q]`` (the base point
    reuses the first seed with scale 0) and updates with ``[s_1, …, s_q]``.
    """
    for other, block in reversed(_CACHE.items()):
        if other[1:] != key[1:]:
            continue
        where = {s: i for i, s in enumerate(other[0])}
        if all(s in where for s in key[0]):
            return block[torch.tensor([where[s] for s in key[0]], device=block.device)]
    return None


def clear() -> None:
    with _LOCK:
        _CACHE.clear()
