"""Datasets and mini-batching.

Loaders return a :class:`Dataset` of CPU tensors (x float32 in [0, 1], y int64).
Nothing here downloads: digits ships with scikit-learn; MNIST, Fashion-MNIST and
CIFAR-10 are read from files the user points at (``--data DIR``). Every problem
with those files raises :class:`DataError` naming the file, the fault and the fix.

Mini-batch order is a pure function of a ``torch.Generator`` (:func:`batches`)
or of ``(seed, epoch)`` (:func:`epoch_permutation`), so a resumed run can
replay it exactly.
"""

from __future__ import annotations

import os

from ..registry import Registry
from .base import _CIFAR_URL, _MNIST_URLS, FASHION_MNIST_DEBIAN_DIR, DataError, Dataset
from .batching import batches, epoch_permutation
from .cifar import _CIFAR_DIRNAME, load_cifar10
from .digits import load_digits
from .mnist import load_mnist, read_idx
from .subset import reduce_dataset, subset_order

__all__ = [
    "DataError",
    "Dataset",
    "DATASETS",
    "FASHION_MNIST_DEBIAN_DIR",
    "load_digits",
    "load_mnist",
    "load_cifar10",
    "load_dataset",
    "reduce_dataset",
    "subset_order",
    "read_idx",
    "batches",
    "epoch_permutation",
]

# Loaders ``(path, **options) -> Dataset`` by name; packages add theirs through ``edgezo.datasets``.
DATASETS: Registry = Registry("dataset", group="edgezo.datasets")


def load_dataset(name: str, path: str | os.PathLike | None = None, **kw) -> Dataset:
    """Load a dataset by name: ``digits``, ``mnist``, ``fashion-mnist`` or ``cifar10``.

    ``path`` is the ``--data DIR`` of the CLI; digits takes none. For
    ``fashion-mnist`` with no path, the Debian location
    ``/usr/share/datasets/fashion-mnist`` is used when present. Extra keywords
    go to the loader (``flatten``; ``test_size``/``seed`` for digits).
    """
    key = name.strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise DataError(str(DATASETS.unknown(name)))
    reduce = {k: kw.pop(k) for k in ("train_subset", "pool", "subset_seed") if k in kw}
    data = DATASETS.get(key)(path, **kw)
    return reduce_dataset(data, **reduce) if reduce else data


def _digits(path, **kw) -> Dataset:
    if path is not None:
        raise DataError(f"digits ships with scikit-learn and reads no files; drop --data {path}")
    return load_digits(**kw)


def _mnist_like(key: str):
    def load(path, **kw) -> Dataset:
        if path is None and key == "fashion-mnist" and FASHION_MNIST_DEBIAN_DIR.is_dir():
            path = FASHION_MNIST_DEBIAN_DIR
        if path is None:
            extra = (
                f" (or `apt-get install dataset-fashion-mnist`, which installs them to "
                f"{FASHION_MNIST_DEBIAN_DIR})"
                if key == "fashion-mnist"
                else ""
            )
            raise DataError(
                f"{key} needs --data DIR: a directory holding train-images-idx3-ubyte, "
                f"train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte "
                f"(raw or .gz); download them from {_MNIST_URLS}{extra}"
            )
        return load_mnist(path, name=key, **kw)

    return load


def _cifar10(path, **kw) -> Dataset:
    if path is None:
        raise DataError(f"cifar10 needs --data DIR: the extracted {_CIFAR_DIRNAME} directory (or its "
                        f"parent) from {_CIFAR_URL}")
    return load_cifar10(path, **kw)


DATASETS.register("digits", _digits)
DATASETS.register("mnist", _mnist_like("mnist"))
DATASETS.register("fashion-mnist", _mnist_like("fashion-mnist"))
DATASETS.register("cifar10", _cifar10)
