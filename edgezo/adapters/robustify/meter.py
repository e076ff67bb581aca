"""The query meter of a robustify run: every sample sent to the black box is counted against the budget first."""

from __future__ import annotations

import torch

from .blackbox import QueryBudgetExceeded


class _Meter:
    """Counts samples sent to the black box and enforces the run's budget before sending."""

    def __init__(self, blackbox, limit: int | None):
        self.blackbox, self.limit, self.used = blackbox, limit, 0

    def left(self) -> int | None:
        return None if self.limit is None else self.limit - self.used

    def _reserve(self, n: int) -> None:
        if self.limit is not None and self.used + n > self.limit:
            raise QueryBudgetExceeded(f"query budget exhausted: {self.used} of the {self.limit} queries this "
                                      f"session may send are spent, the next call needs {n}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._reserve(x.shape[0])
        out = self.blackbox(x)
        self.used += x.shape[0]
        return out

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        self._reserve(x.shape[0])
        out = self.blackbox.labels(x)
        self.used += x.shape[0]
        return out
