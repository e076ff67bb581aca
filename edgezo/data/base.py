"""The data set container and its error (shared by every loader in :mod:`edgezo.data`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..errors import EdgezoError

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four .gz files."""



_MNIST_URLS = (
    "http://yann.lecun.com/exdb/mnist/ (MNIST) or "
    "https://github.com/zalandoresearch/fashion-mnist (Fashion-MNIST)"
)



_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"



class DataError(EdgezoError, ValueError):
    """A dataset is missing, misnamed or malformed; the message says what to do."""



@dataclass(repr=False)
class Dataset:
    """A train/test split held in memory.

    ``x_*`` are float32 with samples along dim 0, ``y_*`` int64 class indices
    in ``[0, num_classes)``. ``input_shape`` is the shape of one sample as
    stored in ``x_*`` (``(784,)`` when flattened, ``(1, 28, 28)`` when not).
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    name: str
    num_classes: int
    input_shape: tuple

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(d) for d in self.input_shape)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{self.name}: x_{split} has {x.shape[0]} samples but "
                    f"y_{split} has {y.shape[0]}"
                )
            if tuple(x.shape[1:]) != self.input_shape:
                raise ValueError(
                    f"{self.name}: x_{split} samples have shape {tuple(x.shape[1:])}, "
                    f"input_shape says {self.input_shape}"
                )

    @property
    def num_features(self) -> int:
        """Number of input values per sample (product of ``input_shape``)."""
        return math.prod(self.input_shape)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.x_train.shape[0]}, "
            f"test={self.x_test.shape[0]}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )
