"""MNIST and Fashion-MNIST from IDX files (raw or .gz) in a folder the user points at."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import _MNIST_URLS, DataError, Dataset

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
