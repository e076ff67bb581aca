"""The direction cache: one generation per step, rows equal to freshly generated directions."""

import torch

from edgezo import direction_cache
from edgezo.directions import directions


def _counting(monkeypatch):
    calls = []
    real = direction_cache.directions

    def spy(seeds, *args, **kw):
        calls.append(list(seeds))
        return real(seeds, *args, **kw)

    monkeypatch.setattr(direction_cache, "directions", spy)
    direction_cache.clear()
    return calls


def test_a_repeated_block_is_generated_once(monkeypatch):
    calls = _counting(monkeypatch)
    a = direction_cache.cached_directions([5, 6], 3, 100, "gaussian", "cpu", torch.float32)
    b = direction_cache.cached_directions([5, 6], 3, 100, "gaussian", "cpu", torch.float32)
    assert a is b and calls == [[5, 6]]


def test_the_update_reuses_the_rows_of_the_forward_difference_block(monkeypatch):
    calls = _counting(monkeypatch)
    evaluated = direction_cache.cached_directions([7, 7, 8, 9], 0, 2410, "gaussian", "cpu", torch.float32)
    update = direction_cache.cached_directions([7, 8, 9], 0, 2410, "gaussian", "cpu", torch.float32)
    assert calls == [[7, 8, 9]]  # the duplicated base seed is generated once, the update not at all
    assert torch.equal(evaluated, directions([7, 7, 8, 9], 0, 2410, "gaussian"))
    assert torch.equal(update, directions([7, 8, 9], 0, 2410, "gaussian"))


def test_other_ranges_and_kinds_are_not_confused(monkeypatch):
    calls = _counting(monkeypatch)
    direction_cache.cached_directions([1, 2], 0, 50, "gaussian", "cpu", torch.float32)
    shifted = direction_cache.cached_directions([1], 1, 50, "gaussian", "cpu", torch.float32)
    other = direction_cache.cached_directions([1], 0, 50, "rademacher", "cpu", torch.float32)
    assert len(calls) == 3
    assert torch.equal(shifted, directions([1], 1, 50, "gaussian"))
    assert torch.equal(other, directions([1], 0, 50, "rademacher"))
