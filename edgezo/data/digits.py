"""scikit-learn's 8x8 digits (ships with scikit-learn; reads no files)."""

from __future__ import annotations

import numpy as np
import torch

from .base import Dataset


def load_digits(*, test_size: float = 0.25, seed: int = 0, flatten: bool = True) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes; no download).

    Split (fixed with the defaults): ``sklearn.model_selection.train_test_split(
    X, y, test_size=0.25, random_state=0, stratify=y)`` -> 1,347 train / 450
    test images, class proportions preserved on both sides. Pixels (0..16) are
    divided by 16 to lie in [0, 1]. ``flatten=False`` gives ``(N, 1, 8, 8)``
    images instead of ``(N, 64)`` rows. ``test_size``/``seed`` change the
    split; the defaults are the documented benchmark split.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    shape = (64,) if flatten else (1, 8, 8)
    return Dataset(
        x_train=torch.from_numpy(x_tr.astype(np.float32).reshape(-1, *shape)),
        y_train=torch.from_numpy(y_tr.astype(np.int64)),
        x_test=torch.from_numpy(x_te.astype(np.float32).reshape(-1, *shape)),
        y_test=torch.from_numpy(y_te.astype(np.int64)),
        name="digits",
        num_classes=10,
        input_shape=shape,
    )
