"""CIFAR-10 from the python pickles, read with an allow-list unpickler (no arbitrary code)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import _CIFAR_URL, DataError, Dataset

_CIFAR_DIRNAME = "cifar-10-batches-py"



_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))



_CIFAR_TEST = "test_batch"



# The only globals a CIFAR-10 batch (numpy arrays, lists, bytes) needs.
_CIFAR_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)



def _cifar_hint() -> str:
    return (
        f"expected the CIFAR-10 python version: download {_CIFAR_URL}, extract it "
        f"(tar xzf) and pass --data pointing at {_CIFAR_DIRNAME} or its parent"
    )



class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals a CIFAR batch contains."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_ALLOWED_GLOBALS:
            raise DataError(
                f"{self._path}: refusing to unpickle {module}.{name}; a CIFAR-10 batch holds "
                f"only numpy arrays, lists and bytes. {_cifar_hint()}"
            )
        return super().find_class(module, name)



def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as e:  # pickle raises many types on garbage input
        raise DataError(
            f"{path}: cannot unpickle ({type(e).__name__}: {e}); the file is corrupt or not "
            f"a CIFAR-10 batch. {_cifar_hint()}"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(
            f"{path}: unpickled a {type(obj).__name__}, expected a dict. {_cifar_hint()}"
        )
    missing = [k for k in (b"data", b"labels") if k not in obj]
    if missing:
        keys = sorted(repr(k) for k in obj)
        raise DataError(
            f"{path}: missing key(s) {', '.join(map(repr, missing))} (found {', '.join(keys)}); "
            f"CIFAR-100 uses b'fine_labels' and is not supported. {_cifar_hint()}"
        )
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        desc = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' is a {desc}, expected a uint8 array. {_cifar_hint()}")
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] == 0:
        raise DataError(
            f"{path}: b'data' has shape {data.shape}, expected (N, 3072) with N > 0 "
            f"(3x32x32 images). {_cifar_hint()}"
        )
    try:
        labels = np.asarray(obj[b"labels"])
    except Exception as e:
        raise DataError(f"{path}: b'labels' is not a list of integers ({e})") from e
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(
            f"{path}: b'labels' should be a flat list of integers, got shape {labels.shape} "
            f"dtype {labels.dtype}. {_cifar_hint()}"
        )
    if labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{path}: {data.shape[0]} images but {labels.shape[0]} labels; the file is "
            f"corrupt. {_cifar_hint()}"
        )
    if labels.min() < 0 or labels.max() > 9:
        bad = int(np.flatnonzero((labels < 0) | (labels > 9))[0])
        raise DataError(
            f"{path}: label {int(labels[bad])} at index {bad} is outside 0-9; this is not a "
            f"CIFAR-10 batch. {_cifar_hint()}"
        )
    return data, labels.astype(np.int64)



def load_cifar10(path: str | os.PathLike, *, flatten: bool = False) -> Dataset:
    """CIFAR-10, python version: ``data_batch_1..5`` (50,000) and ``test_batch`` (10,000).

    ``path`` is the extracted ``cifar-10-batches-py`` directory or its parent.
    Each batch is a pickle of ``{b"data": uint8 (N, 3072), b"labels": [int]}``,
    read with ``encoding="bytes"`` and checked for keys, shape, dtype and label
    range 0-9 (:class:`DataError` otherwise). Images are ``(N, 3, 32, 32)``
    divided by 255, or ``(N, 3072)`` with ``flatten=True``.

    Security: unpickling can run code chosen by whoever wrote the file. Only
    the files under the directory you pass are opened, and the unpickler
    refuses any global other than the few numpy constructors a batch needs,
    but still only point this at data from a source you trust.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: directory does not exist; {_cifar_hint()}")
    if root.is_file():
        extra = ""
        if root.name.endswith((".tar.gz", ".tgz")):
            extra = " (that looks like the archive: extract it first)"
        raise DataError(f"{root}: is a file, not a directory{extra}; {_cifar_hint()}")
    names = (*_CIFAR_TRAIN, _CIFAR_TEST)
    if not (root / _CIFAR_TRAIN[0]).exists() and (root / _CIFAR_DIRNAME).is_dir():
        root = root / _CIFAR_DIRNAME
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataError(
            f"{root}: missing {', '.join(missing)} (looked for {', '.join(names)} here and in "
            f"{_CIFAR_DIRNAME}/); {_cifar_hint()}"
        )
    train = [_load_cifar_batch(root / n) for n in _CIFAR_TRAIN]
    x_te, y_te = _load_cifar_batch(root / _CIFAR_TEST)
    x_tr = np.concatenate([d for d, _ in train])
    y_tr = np.concatenate([lab for _, lab in train])
    shape = (3072,) if flatten else (3, 32, 32)

    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy((a.astype(np.float32) / 255.0).reshape(-1, *shape))

    return Dataset(
        x_train=images(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_test=images(x_te),
        y_test=torch.from_numpy(y_te),
        name="cifar10",
        num_classes=10,
        input_shape=shape,
    )
