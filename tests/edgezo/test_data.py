"""Tests for edgezo.data: loaders (digits, IDX, CIFAR pickles), errors, batching."""

from __future__ import annotations

import gzip
import pickle
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from edgezo.data import (
    FASHION_MNIST_DEBIAN_DIR,
    DataError,
    Dataset,
    batches,
    epoch_permutation,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    read_idx,
)

# ---------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray, *, dtype_code: int = 0x08) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, dtype_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False, **kw) -> Path:
    data = idx_bytes(arr, **kw)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_mnist_dir(
    d: Path, *, n_train: int = 12, n_test: int = 5, rows: int = 4, cols: int = 3,
    gz: bool = False, dotted: bool = False, seed: int = 0,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images": ("idx3", rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8)),
        "train-labels": ("idx1", rng.integers(0, 10, n_train, dtype=np.uint8)),
        "t10k-images": ("idx3", rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8)),
        "t10k-labels": ("idx1", rng.integers(0, 10, n_test, dtype=np.uint8)),
    }
    for stem, (kind, arr) in arrays.items():
        name = f"{stem}.{kind}-ubyte" if dotted else f"{stem}-{kind}-ubyte"
        write_idx(d / (name + (".gz" if gz else "")), arr, gz=gz)
    return {k: a for k, (_, a) in arrays.items()}


def cifar_batch(n: int, seed: int, override: dict | None = None) -> dict:
    rng = np.random.default_rng(seed)
    b = {
        b"batch_label": b"batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"f%d.png" % i for i in range(n)],
    }
    b.update(override or {})
    return b


def make_cifar_dir(root: Path, n: int = 4, test_override: dict | None = None) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(cifar_batch(n, i), protocol=2))
    (d / "test_batch").write_bytes(pickle.dumps(cifar_batch(n, 99, test_override), protocol=2))
    return d


# ---------------------------------------------------------------- digits


def test_digits_split_counts_scaling_and_stratification():
    ds = load_digits()
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (1347, 64) and ds.x_test.shape == (450, 64)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.num_classes == 10 and ds.input_shape == (64,) and ds.num_features == 64
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) == 1.0
    # stratified: per-class test share is within one sample of 25 %
    tr, te = torch.bincount(ds.y_train, minlength=10), torch.bincount(ds.y_test, minlength=10)
    assert torch.all((te.double() - 0.25 * (tr + te).double()).abs() <= 1.0)
    assert "train=1347" in repr(ds) and "test=450" in repr(ds)


def test_digits_is_deterministic_and_images_match_flat():
    a, b = load_digits(), load_digits(flatten=False)
    assert b.x_train.shape == (1347, 1, 8, 8) and b.input_shape == (1, 8, 8)
    assert torch.equal(a.x_train, b.x_train.reshape(-1, 64))
    assert torch.equal(a.y_test, load_digits().y_test)
    assert not torch.equal(a.y_test, load_digits(seed=1).y_test)


# ---------------------------------------------------------------- IDX / MNIST


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_mnist_roundtrip(tmp_path, gz, dotted):
    arrays = make_mnist_dir(tmp_path, gz=gz, dotted=dotted)
    ds = load_mnist(tmp_path)
    assert ds.x_train.shape == (12, 12) and ds.x_test.shape == (5, 12)
    assert ds.input_shape == (12,) and ds.num_classes == 10 and ds.name == "mnist"
    np.testing.assert_allclose(
        ds.x_train.numpy(), arrays["train-images"].reshape(12, -1) / 255.0, rtol=1e-6
    )
    assert ds.y_test.dtype == torch.int64
    assert ds.y_test.tolist() == arrays["t10k-labels"].tolist()
    img = load_mnist(tmp_path, flatten=False)
    assert img.x_test.shape == (5, 1, 4, 3) and img.input_shape == (1, 4, 3)


def test_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    # gzip content under a raw name, raw content under a .gz name
    write_idx(tmp_path / "a-idx3-ubyte", arr, gz=True)
    write_idx(tmp_path / "b-idx3-ubyte.gz", arr, gz=False)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte", ndim=3), arr)
    assert np.array_equal(read_idx(tmp_path / "b-idx3-ubyte.gz", ndim=3), arr)


def test_mnist_found_in_subfolder_and_ambiguity_reported(tmp_path):
    make_mnist_dir(tmp_path / "MNIST" / "raw", gz=True)
    assert load_mnist(tmp_path).x_train.shape[0] == 12
    make_mnist_dir(tmp_path / "Other" / "raw", n_train=7)
    with pytest.raises(DataError, match="several directories") as e:
        load_mnist(tmp_path)
    assert "MNIST" in str(e.value) and "Other" in str(e.value)
    assert load_mnist(tmp_path / "Other").x_train.shape[0] == 7


def _replace(d: Path, stem: str, data: bytes) -> Path:
    path = d / stem
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "fname, mutate, expect",
    [
        ("train-images-idx3-ubyte", lambda b: b"\x12\x34" + b[2:], ["not an IDX file", "--data DIR"]),
        ("train-images-idx3-ubyte", lambda b: b[:2] + b"\x0d" + b[3:], ["dtype code 0x0d", "unsigned byte"]),
        ("train-labels-idx1-ubyte", lambda b: b[:3] + b"\x03" + b[4:], ["3 dimension(s), expected 1", "misnamed"]),
        ("train-images-idx3-ubyte", lambda b: b[:-5], ["truncated", "download it again"]),
        ("t10k-images-idx3-ubyte", lambda b: b[:10], ["header is truncated", "download it again"]),
        ("t10k-labels-idx1-ubyte", lambda b: b + b"\x00", ["longer than its header", "download it again"]),
        ("train-labels-idx1-ubyte", lambda b: b[:-1] + b"\x0a", ["label 10", "outside 0-9"]),
        ("t10k-images-idx3-ubyte.gz", lambda b: gzip.compress(b)[:-12],
         ["gzip data is corrupt", "download the file again"]),
    ],
)
def test_mnist_malformed_files_raise(tmp_path, fname, mutate, expect):
    make_mnist_dir(tmp_path)
    raw_name = fname.removesuffix(".gz")
    good = (tmp_path / raw_name).read_bytes()
    (tmp_path / raw_name).unlink()
    _replace(tmp_path, fname, mutate(good))
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path)
    msg = str(e.value)
    assert fname in msg
    for part in expect:
        assert part in msg


def test_mnist_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11, np.uint8))
    with pytest.raises(DataError, match="12 images but .*11 labels"):
        load_mnist(tmp_path)


def test_mnist_image_size_mismatch(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(DataError, match="do not belong together"):
        load_mnist(tmp_path)


def test_mnist_missing_file_lists_names(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path)
    msg = str(e.value)
    assert "lacks t10k-labels-idx1-ubyte[.gz]" in msg
    assert "train-images.idx3-ubyte.gz" in msg and "--data DIR" in msg


def test_mnist_missing_dir_and_file_path(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--data DIR"):
        load_mnist(tmp_path / "nope")
    f = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(DataError, match="is a file, not a directory"):
        load_mnist(f)


@pytest.mark.skipif(
    not FASHION_MNIST_DEBIAN_DIR.is_dir(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist():
    ds = load_dataset("fashion-mnist", flatten=False)
    assert ds.name == "fashion-mnist"
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.shape == (60000,) and int(ds.y_train.max()) == 9
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert 0.0 <= float(ds.x_test.min()) and float(ds.x_test.max()) <= 1.0


# ---------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("parent", [False, True])
def test_cifar_roundtrip(tmp_path, parent):
    d = make_cifar_dir(tmp_path)
    ds = load_cifar10(tmp_path if parent else d)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and ds.name == "cifar10"
    b1 = cifar_batch(4, 1)
    np.testing.assert_allclose(
        ds.x_train[:4].numpy(), b1[b"data"].reshape(4, 3, 32, 32) / 255.0, rtol=1e-6
    )
    assert ds.y_train[:4].tolist() == b1[b"labels"] and ds.y_train.dtype == torch.int64
    flat = load_cifar10(d, flatten=True)
    assert flat.x_test.shape == (4, 3072) and flat.num_features == 3072


def test_cifar_accepts_highest_protocol_pickles(tmp_path):
    d = make_cifar_dir(tmp_path)
    (d / "test_batch").write_bytes(pickle.dumps(cifar_batch(3, 5), protocol=pickle.HIGHEST_PROTOCOL))
    assert load_cifar10(d).x_test.shape == (3, 3, 32, 32)


@pytest.mark.parametrize(
    "override, expect",
    [
        ({b"data": np.zeros((4, 100), np.uint8)}, "shape (4, 100), expected (N, 3072)"),
        ({b"data": np.zeros((4, 3072), np.float32)}, "float32 array, expected a uint8"),
        ({b"labels": [0, 1, 2, 10]}, "label 10 at index 3 is outside 0-9"),
        ({b"labels": [0, 1, 2]}, "4 images but 3 labels"),
        ({b"labels": [0.5, 1, 2, 3]}, "flat list of integers"),
    ],
)
def test_cifar_malformed_batch(tmp_path, override, expect):
    d = make_cifar_dir(tmp_path, test_override=override)
    with pytest.raises(DataError) as e:
        load_cifar10(d)
    assert "test_batch" in str(e.value) and expect in str(e.value)


def test_cifar_missing_key_not_a_dict_garbage(tmp_path):
    d = make_cifar_dir(tmp_path)
    b = cifar_batch(4, 0)
    del b[b"labels"]
    (d / "data_batch_2").write_bytes(pickle.dumps(b, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2: missing key\(s\) b'labels'"):
        load_cifar10(d)
    (d / "data_batch_2").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="data_batch_2: unpickled a list, expected a dict"):
        load_cifar10(d)
    (d / "data_batch_2").write_bytes(b"definitely not a pickle")
    with pytest.raises(DataError, match="data_batch_2: cannot unpickle.*cifar-10-python.tar.gz"):
        load_cifar10(d)


def test_cifar_refuses_foreign_globals(tmp_path):
    d = make_cifar_dir(tmp_path)
    (d / "data_batch_3").write_bytes(pickle.dumps({b"data": Fraction(1, 2)}))
    with pytest.raises(DataError, match="refusing to unpickle fractions.Fraction"):
        load_cifar10(d)


def test_cifar_missing_files_and_dir(tmp_path):
    d = make_cifar_dir(tmp_path)
    (d / "data_batch_4").unlink()
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path)
    assert "missing data_batch_4" in str(e.value) and "test_batch" in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nope")
    tgz = tmp_path / "cifar-10-python.tar.gz"
    tgz.write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError, match="extract it first"):
        load_cifar10(tgz)


# ---------------------------------------------------------------- dispatch


def test_load_dataset_dispatch_and_errors(tmp_path):
    assert load_dataset("digits", flatten=False).input_shape == (1, 8, 8)
    make_mnist_dir(tmp_path / "m", gz=True)
    assert load_dataset("mnist", tmp_path / "m").name == "mnist"
    assert load_dataset("Fashion_MNIST", tmp_path / "m").name == "fashion-mnist"
    make_cifar_dir(tmp_path / "c")
    assert load_dataset("cifar10", tmp_path / "c").x_train.shape == (20, 3, 32, 32)
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; available: .*digits"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="mnist needs --data DIR"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="cifar10 needs --data DIR"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="drop --data"):
        load_dataset("digits", tmp_path)
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------- batching


def test_batches_cover_each_sample_once_and_are_deterministic():
    x = torch.arange(23, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(23)
    got = list(batches(x, y, 5, generator=torch.Generator().manual_seed(3)))
    assert [len(b[1]) for b in got] == [5, 5, 5, 5, 3]
    seen = torch.cat([yb for _, yb in got])
    assert sorted(seen.tolist()) == list(range(23)) and seen.tolist() != list(range(23))
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in got)
    again = list(batches(x, y, 5, generator=torch.Generator().manual_seed(3)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(got, again))
    dropped = list(batches(x, y, 5, generator=torch.Generator().manual_seed(3), drop_last=True))
    assert [len(b[1]) for b in dropped] == [5, 5, 5, 5]
    plain = list(batches(x, y, 10, shuffle=False))
    assert torch.equal(torch.cat([b for _, b in plain]), y)


def test_batches_draws_permutation_eagerly():
    x, y = torch.zeros(8, 2), torch.arange(8)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    batches(x, y, 4, generator=g1)  # not consumed
    list(batches(x, y, 4, generator=g2))
    assert torch.equal(g1.get_state(), g2.get_state())


def test_batches_with_order_and_errors():
    x, y = torch.arange(6.0).unsqueeze(1), torch.arange(6)
    order = epoch_permutation(6, seed=1, epoch=0)
    got = torch.cat([yb for _, yb in batches(x, y, 4, order=order)])
    assert torch.equal(got, order)
    with pytest.raises(ValueError, match="needs generator"):
        batches(x, y, 2)
    with pytest.raises(ValueError, match="not both"):
        batches(x, y, 2, order=order, generator=torch.Generator())
    with pytest.raises(ValueError, match="positive integer"):
        batches(x, y, 0, shuffle=False)
    with pytest.raises(ValueError, match="6 samples but y has 5"):
        batches(x, y[:5], 2, shuffle=False)


def test_epoch_permutation_depends_only_on_seed_and_epoch():
    p = epoch_permutation(1000, seed=7, epoch=3)
    assert p.dtype == torch.int64 and sorted(p.tolist()) == list(range(1000))
    assert torch.equal(p, epoch_permutation(1000, seed=7, epoch=3))
    assert not torch.equal(p, epoch_permutation(1000, seed=7, epoch=4))
    assert not torch.equal(p, epoch_permutation(1000, seed=8, epoch=3))
    # global RNG state plays no part
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.equal(p, epoch_permutation(1000, seed=7, epoch=3))
    assert epoch_permutation(0, 0, 0).numel() == 0
    # pinned value: the permutation is pure integer arithmetic and must never drift
    assert epoch_permutation(10, seed=0, epoch=0).tolist() == [0, 7, 8, 2, 5, 9, 4, 6, 3, 1]


def test_reduce_dataset_subset_and_pool(tmp_path):
    from edgezo.data import load_dataset, subset_order

    arrays = make_mnist_dir(tmp_path / "m", n_train=12, n_test=5, rows=4, cols=4)
    full = load_dataset("mnist", tmp_path / "m", flatten=False)
    small = load_dataset("mnist", tmp_path / "m", flatten=False, train_subset=5, pool=2, subset_seed=3)
    idx = subset_order(12, 3)[:5]
    assert small.input_shape == (1, 2, 2) and small.x_test.shape[0] == 5
    torch.testing.assert_close(small.y_train, full.y_train[idx])
    # 2×2 average pooling, checked against the raw pixels
    img = arrays["train-images"][int(idx[0])].astype(np.float64) / 255.0
    expected = img.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(small.x_train[0, 0].numpy(), expected, atol=1e-6)
    with pytest.raises(DataError, match="pool=3"):
        load_dataset("mnist", tmp_path / "m", flatten=False, pool=3)
    with pytest.raises(DataError, match="train_subset"):
        load_dataset("mnist", tmp_path / "m", flatten=False, train_subset=13)
