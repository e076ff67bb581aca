"""The deepzero task and its recipes: digits-cnn runs; cifar10-resnet20 builds and steps on synthetic CIFAR files."""

import json
import pickle

import numpy as np
import pytest
import torch

from edgezo.cli import main
from edgezo.recipes import RecipeError, apply_overrides, build_trainer, get_recipe, with_estimator

SMALL_DIGITS = {"train.epochs": 1, "train.max_steps": 2, "estimator.grasp_q": 8, "deepzero.grasp_samples": 32,
                "model.width": 6, "oracle.path": "delta"}


def test_digits_cnn_recipe_trains_with_sparse_cge(tmp_path):
    recipe = apply_overrides(get_recipe("digits-cnn"), SMALL_DIGITS)
    trainer = build_trainer(recipe, out_dir=tmp_path, progress=False)
    info = trainer.info["deepzero"]
    assert info["sparsity"] == 0.5 and info["ratio_source"] == "zo-grasp"
    assert set(info["keep_ratios"]) == {"stages.0.conv.weight", "stages.1.conv.weight", "stages.2.fc.weight"}
    before = trainer.oracle.get_flat()
    metrics = trainer.run()
    assert metrics["steps"] == 2 and metrics["backend"] == "torch-staged" and metrics["estimator"] == "sparse-cge"
    grasp_passes = 2 * (8 + 1)
    assert metrics["forward_passes"] == grasp_passes + 2 * (info["active_per_step"] + 1)
    assert not torch.equal(trainer.oracle.get_flat(), before)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_ratios_are_rebuilt_identically_for_resume(tmp_path):
    recipe = apply_overrides(get_recipe("digits-cnn"), SMALL_DIGITS)
    a = build_trainer(recipe, progress=False).info["deepzero"]["keep_ratios"]
    b = build_trainer(recipe, progress=False).info["deepzero"]["keep_ratios"]
    assert a == b


def test_fo_baseline_through_the_same_task():
    recipe = apply_overrides(with_estimator(get_recipe("digits-cnn"), "fo"), {"train.max_steps": 3})
    trainer = build_trainer(recipe, progress=False)
    assert "deepzero" not in trainer.info
    assert trainer.run()["steps"] == 3


def test_unknown_deepzero_option():
    recipe = apply_overrides(get_recipe("digits-cnn"), {"deepzero.samples": 3})
    with pytest.raises(RecipeError, match="grasp_samples"):
        build_trainer(recipe, progress=False)


def write_fake_cifar(root, n_train=4, n_test=4):
    """Tiny CIFAR-10 python batches (the pickle format of cifar-10-batches-py)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", n_train) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, size=n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return root


@pytest.mark.slow
def test_cifar10_resnet20_recipe_builds_and_steps(tmp_path):
    """ResNet-20 CPU smoke test: 3 steps on 20 synthetic CIFAR images, batch 2, ~27 weight coordinates + no
    BN/bias per step (the GPU command is in docs/methods/deepzero.md)."""
    data = write_fake_cifar(tmp_path / "data")
    out = tmp_path / "run"
    code = main(["train", "--recipe", "cifar10-resnet20", "--data", str(data), "--out", str(out), "--no-progress",
                 "--max-steps", "3", "--batch-size", "2", "--set", "estimator.sparsity=0.9999",
                 "--set", "estimator.include_small=false", "--set", "estimator.grasp_q=2",
                 "--set", "deepzero.grasp_samples=2", "--set", "oracle.path=\"delta\""])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"] == 269_722 and metrics["steps"] == 3 and metrics["dataset"] == "cifar10"
    assert np.isfinite(metrics["final_train_loss"])
    assert metrics["deepzero"]["active_per_step"] == 27  # round(1e-4 · 268,336 weights)
    assert (out / "checkpoint.pt").exists()


def write_fake_fmnist(root, n_train=24, n_test=8):
    """Random 28×28 images in the four gzip IDX files of Debian's dataset-fashion-mnist."""
    import gzip
    import struct

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name, shape in (("train-images-idx3-ubyte", (n_train, 28, 28)), ("train-labels-idx1-ubyte", (n_train,)),
                        ("t10k-images-idx3-ubyte", (n_test, 28, 28)), ("t10k-labels-idx1-ubyte", (n_test,))):
        arr = rng.integers(0, 10 if len(shape) == 1 else 256, size=shape, dtype=np.uint8)
        header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
        (root / f"{name}.gz").write_bytes(gzip.compress(header + arr.tobytes()))
    return root


@pytest.mark.parametrize("name, params", [("fmnist-cnn-730", 736), ("fmnist-cnn-3700", 3734)])
@pytest.mark.parametrize("estimator", [None, "fo"])
def test_fmnist_recipes_train_from_the_command_line(tmp_path, name, params, estimator):
    data = write_fake_fmnist(tmp_path / "fmnist")
    out = tmp_path / "run"
    argv = ["train", "--recipe", name, "--data", str(data), "--out", str(out), "--no-progress", "--max-steps", "2",
            "--batch-size", "4"]
    if estimator:
        argv += ["--estimator", estimator]
    else:
        argv += ["--set", "estimator.grasp_q=4", "--set", "deepzero.grasp_samples=8"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"] == params and metrics["steps"] == 2 and metrics["dataset"] == "fashion-mnist"
    assert metrics["estimator"] == (estimator or "sparse-cge")
    if not estimator:
        assert metrics["feature_reuse"] is True and metrics["deepzero"]["sparsity"] == 0.8
