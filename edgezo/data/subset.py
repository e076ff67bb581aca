"""Cheaper copies of a data set for benchmarks that must fit a CPU budget: a seeded training subset, pooled images."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import DataError, Dataset


def subset_order(n: int, subset_seed: int = 0) -> Tensor:
    """The permutation of ``range(n)`` whose head :func:`reduce_dataset` keeps (its tail is unseen data)."""
    return torch.randperm(int(n), generator=torch.Generator().manual_seed(int(subset_seed)))


def reduce_dataset(data: Dataset, *, train_subset: int | None = None, pool: int = 1,
                   subset_seed: int = 0) -> Dataset:
    """A cheaper copy of ``data``: the first ``train_subset`` training samples of a permutation
    seeded by ``subset_seed`` (the test set is kept whole), and images average-pooled by ``pool``
    (``pool × pool`` blocks; 28×28 → 14×14 for ``pool = 2``).

    Recipe keys ``[data] train_subset``, ``pool``, ``subset_seed``. The subset depends only on
    ``subset_seed``, so every run and estimator of a comparison trains on the same images.
    """
    x_train, y_train, x_test = data.x_train, data.y_train, data.x_test
    if train_subset is not None:
        n = int(train_subset)
        if not 1 <= n <= x_train.shape[0]:
            raise DataError(f"train_subset must be in [1, {x_train.shape[0]}] for {data.name}, got {train_subset}")
        idx = subset_order(x_train.shape[0], subset_seed)[:n]
        x_train, y_train = x_train[idx], y_train[idx]
    shape = data.input_shape
    if int(pool) != 1:
        if int(pool) < 1 or len(shape) != 3 or shape[1] % int(pool) or shape[2] % int(pool):
            raise DataError(f"pool={pool} needs unflattened images whose sides it divides; {data.name} samples "
                            f"have shape {shape} (set [data] flatten = false, or pool = 1)")
        x_train, x_test = (torch.nn.functional.avg_pool2d(x, int(pool)) for x in (x_train, x_test))
        shape = tuple(x_train.shape[1:])
    return Dataset(x_train, y_train, x_test, data.y_test, data.name, data.num_classes, shape)
