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

import gzip
import math
import os
import pickle
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .registry import Registry

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

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four .gz files."""

# Loaders ``(path, **options) -> Dataset`` by name; packages add theirs through ``edgezo.datasets``.
DATASETS: Registry = Registry("dataset", group="edgezo.datasets")

_MNIST_URLS = (
    "http://yann.lecun.com/exdb/mnist/ (MNIST) or "
    "https://github.com/zalandoresearch/fashion-mnist (Fashion-MNIST)"
)
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class DataError(ValueError):
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


# ----------------------------------------------------------------------------
# scikit-learn digits


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


# ----------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08
# role -> (stem, idx kind); names are "<stem>-<kind>-ubyte" or "<stem>.<kind>-ubyte", [+ ".gz"]
_MNIST_FILES = {
    "train_images": ("train-images", "idx3"),
    "train_labels": ("train-labels", "idx1"),
    "test_images": ("t10k-images", "idx3"),
    "test_labels": ("t10k-labels", "idx1"),
}
_SEARCH_DEPTH = 3


def _mnist_names(role: str) -> list[str]:
    stem, kind = _MNIST_FILES[role]
    raw = [f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte"]
    return raw + [n + ".gz" for n in raw]  # raw preferred when both exist


def _mnist_hint() -> str:
    names = ", ".join(f"{_MNIST_FILES[r][0]}-{_MNIST_FILES[r][1]}-ubyte[.gz]" for r in _MNIST_FILES)
    return (
        f"expected the four MNIST-format IDX files ({names}) in one directory; "
        f"download them from {_MNIST_URLS} and pass --data DIR"
    )


def _read_maybe_gzip(path: Path) -> tuple[bytes, bool]:
    """File contents (gunzipped when the file starts with the gzip magic), was-gzip flag."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e})") from e
    if raw[:2] != _GZIP_MAGIC:
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: gzip data is corrupt or truncated ({e}); download the file again"
        ) from e


def read_idx(path: str | os.PathLike, *, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip, detected by magic) as a uint8 array.

    Checks the magic (``00 00 08 <ndim>``: unsigned-byte data only), the number
    of dimensions when ``ndim`` is given, and that the file holds exactly the
    ``prod(dims)`` bytes the header announces. Raises :class:`DataError`.
    """
    path = Path(path)
    buf, gz = _read_maybe_gzip(path)
    what = {3: "an image file (idx3)", 1: "a label file (idx1)"}.get(ndim or 0, "an IDX file")
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (first bytes {buf[:4].hex(' ') or 'missing'}, expected "
            f"00 00 08 0{ndim or 'N'}); {_mnist_hint()}"
        )
    if buf[2] != _IDX_UBYTE:
        raise DataError(
            f"{path}: IDX dtype code 0x{buf[2]:02x} is not 0x08 (unsigned byte) as MNIST "
            f"uses; {_mnist_hint()}"
        )
    nd = buf[3]
    if ndim is not None and nd != ndim:
        raise DataError(
            f"{path}: IDX header says {nd} dimension(s), expected {ndim} for {what}; "
            f"is the file misnamed? {_mnist_hint()}"
        )
    if nd == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions; {_mnist_hint()}")
    header = 4 + 4 * nd
    if len(buf) < header:
        raise DataError(
            f"{path}: IDX header is truncated ({len(buf)} bytes, header needs {header}); "
            "the file is corrupt or incomplete, download it again"
        )
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=nd, offset=4))
    if any(d == 0 for d in dims):
        raise DataError(f"{path}: IDX header has a zero dimension {dims}; the file holds no data")
    expected = header + math.prod(dims)
    if len(buf) != expected:
        kind = "truncated" if len(buf) < expected else "longer than its header says"
        raise DataError(
            f"{path}: file is {kind}: header dims {dims} need {expected} bytes"
            f"{' after gunzip' if gz else ''}, "
            f"found {len(buf)}; the file is corrupt or incomplete, download it again"
        )
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


def _find_mnist_dir(root: Path) -> dict[str, Path]:
    """Locate the directory (``root`` or a subfolder up to 3 levels down) with all four files."""
    if not root.exists():
        raise DataError(f"{root}: directory does not exist; {_mnist_hint()}")
    if not root.is_dir():
        raise DataError(
            f"{root}: is a file, not a directory; pass the directory that holds the four "
            f"files. {_mnist_hint()}"
        )
    complete: list[tuple[int, Path, dict[str, Path]]] = []
    partial: list[tuple[Path, list[str]]] = []
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        depth = len(here.parts) - root_depth
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if depth >= _SEARCH_DEPTH:
            dirnames[:] = []
        lower = {f.lower(): f for f in filenames}
        found: dict[str, Path] = {}
        for role in _MNIST_FILES:
            for name in _mnist_names(role):
                if name in lower and (here / lower[name]).is_file():
                    found[role] = here / lower[name]
                    break
        if len(found) == len(_MNIST_FILES):
            complete.append((depth, here, found))
        elif found:
            partial.append((here, [r for r in _MNIST_FILES if r not in found]))
    if complete:
        best = min(d for d, _, _ in complete)
        tops = [(p, f) for d, p, f in complete if d == best]
        if len(tops) > 1:
            listing = ", ".join(str(p) for p, _ in tops)
            raise DataError(
                f"{root}: several directories hold a full set of IDX files ({listing}); "
                "pass the one you mean with --data DIR"
            )
        return tops[0][1]
    msg = (
        f"{root}: no directory here (or up to {_SEARCH_DEPTH} levels below) holds all four "
        f"MNIST IDX files (names tried: {', '.join(_mnist_names('train_images'))}, and the same "
        "for train-labels/idx1, t10k-images/idx3, t10k-labels/idx1)."
    )
    if partial:
        p, missing = partial[0]
        miss = ", ".join(_mnist_names(r)[0] + "[.gz]" for r in missing)
        msg += f" {p} has some of them but lacks {miss}."
    raise DataError(f"{msg} {_mnist_hint()}")


def load_mnist(
    path: str | os.PathLike, *, flatten: bool = True, name: str = "mnist"
) -> Dataset:
    """MNIST-format IDX data (MNIST, Fashion-MNIST) from a directory.

    Finds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (also the
    ``train-images.idx3-ubyte`` spelling, each raw or gzip) in ``path`` or a
    subfolder up to three levels down; all four must sit in one directory.
    Validates headers, lengths, label range 0-9 and image/label counts, else
    raises :class:`DataError`. Pixels are divided by 255. ``flatten=True``
    gives ``(N, rows*cols)``, otherwise ``(N, 1, rows, cols)``. Debian's
    ``dataset-fashion-mnist`` installs to ``/usr/share/datasets/fashion-mnist``.
    """
    files = _find_mnist_dir(Path(path))
    arrays = {
        role: read_idx(p, ndim=3 if role.endswith("images") else 1) for role, p in files.items()
    }
    for split in ("train", "test"):
        imgs, labs = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        ip, lp = files[f"{split}_images"], files[f"{split}_labels"]
        if imgs.shape[0] != labs.shape[0]:
            raise DataError(
                f"{ip} holds {imgs.shape[0]} images but {lp} holds {labs.shape[0]} labels; "
                "the files do not belong together (mixed datasets or a truncated download)"
            )
        if labs.max() > 9:
            bad = int(np.flatnonzero(labs > 9)[0])
            raise DataError(
                f"{lp}: label {int(labs[bad])} at index {bad} is outside 0-9; this is not an "
                f"MNIST-style label file. {_mnist_hint()}"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"{files['train_images']} has {arrays['train_images'].shape[1:]} images but "
            f"{files['test_images']} has {arrays['test_images'].shape[1:]}; the files do not "
            "belong together"
        )
    rows, cols = arrays["train_images"].shape[1:]
    shape = (rows * cols,) if flatten else (1, rows, cols)

    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy((a.astype(np.float32) / 255.0).reshape(-1, *shape))

    return Dataset(
        x_train=images(arrays["train_images"]),
        y_train=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        x_test=images(arrays["test_images"]),
        y_test=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        name=name,
        num_classes=10,
        input_shape=shape,
    )


# ----------------------------------------------------------------------------
# CIFAR-10 (python pickles)

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


# ----------------------------------------------------------------------------
# dispatch


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


# ----------------------------------------------------------------------------
# batching


def batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    order: Tensor | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Iterate over ``(xb, yb)`` mini-batches of one epoch.

    With ``shuffle=True`` the order is ``torch.randperm(n, generator=generator)``,
    drawn when ``batches`` is called (not lazily), so the generator state after
    the call is the same whether or not the epoch is consumed. ``order`` (e.g.
    from :func:`epoch_permutation`) fixes the order explicitly and excludes
    ``generator``. ``shuffle=False`` keeps index order. The last short batch is
    yielded unless ``drop_last``.
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {y.shape[0]}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    if order is not None:
        if generator is not None:
            raise ValueError("pass either order or generator, not both")
        idx = torch.as_tensor(order, dtype=torch.int64)
        if idx.ndim != 1:
            raise ValueError(f"order must be 1-D, got shape {tuple(idx.shape)}")
    elif shuffle:
        if generator is None:
            raise ValueError("shuffle=True needs generator=torch.Generator() (or pass order=)")
        idx = torch.randperm(n, generator=generator, device=generator.device)
    else:
        idx = torch.arange(n)
    idx = idx.to(x.device)
    stop = idx.shape[0] - (idx.shape[0] % batch_size if drop_last else 0)

    def _iter() -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, stop, batch_size):
            b = idx[start : start + batch_size]
            yield x[b], y[b.to(y.device)]

    return _iter()


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """A permutation of ``range(n)`` that depends only on ``(n, seed, epoch)``.

    With ``G = 0x9E3779B97F4A7C15``, ``mix`` the splitmix64 finalizer and 64-bit
    wrap-around: ``s = mix((mix(seed + G) ^ epoch) + G)``; sample ``i`` gets the
    key ``mix(s + (i + 1) * G)`` and the permutation sorts the keys (stable).
    Pure integer arithmetic, so it is the same on every platform and library
    version; a resumed run recomputes it.
    Returns an int64 tensor.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    with np.errstate(over="ignore"):
        s = np.array([(int(seed) + _GOLDEN) & _MASK64], dtype=np.uint64)
        s = _splitmix64(s)
        s = _splitmix64((s ^ np.uint64(int(epoch) & _MASK64)) + np.uint64(_GOLDEN))
        i = np.arange(1, n + 1, dtype=np.uint64)
        keys = _splitmix64(s + i * np.uint64(_GOLDEN))
    return torch.from_numpy(np.argsort(keys, kind="stable").astype(np.int64))
