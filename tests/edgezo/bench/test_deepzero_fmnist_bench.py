"""The Fashion-MNIST part of ``edgezo bench deepzero``: statistics against analytic values, and the
whole pipeline on a tiny synthetic IDX data set (behaviour only; the benchmark measures)."""

import gzip
import math
import struct

import numpy as np
import pytest

from edgezo.bench import deepzero_fmnist as fm
from edgezo.bench.deepzero_scaling import fit_exponent


def test_t_interval_matches_the_textbook_formula():
    values = [80.0, 82.0, 84.0]  # mean 82, s = 2, n = 3; t_{0.975, 2} = 4.302652729911275
    cell = fm.t_interval(values)
    half = 4.302652729911275 * 2.0 / math.sqrt(3)
    assert cell["mean"] == pytest.approx(82.0)
    assert cell["low"] == pytest.approx(82.0 - half, abs=1e-9)
    assert cell["high"] == pytest.approx(82.0 + half, abs=1e-9)


def test_fit_exponent_recovers_a_power_law():
    params = [100, 400, 1600, 6400]
    fit = fit_exponent(params, [3e-6 * p ** 1.7 for p in params])
    assert fit["exponent"] == pytest.approx(1.7, abs=1e-9) and fit["r2"] == pytest.approx(1.0)


def _row(fo, cge, rge):
    return {m: fm.t_interval(v) for m, v in (("fo", fo), ("cge", cge), ("rge", rge))}


def test_goals_need_separated_intervals_on_every_size():
    apart = _row([80, 81, 82], [79.5, 80, 80.5], [70, 71, 72])
    overlapping = _row([80, 81, 82], [79, 80, 81], [74, 76, 78])  # margin 4 pt, intervals overlap
    g = fm.goals([apart, overlapping])
    assert g["fmnist_cge_fo_gap_pp"] == pytest.approx(1.0)
    assert g["fmnist_cge_rge_margin_pp"] == pytest.approx(4.0)
    assert g["fmnist_cge_rge_separated"] is False
    assert fm.goals([apart])["fmnist_cge_rge_separated"] is True


def write_fake_fmnist(root, n_train=32, n_test=16, seed=0):
    """Random 28×28 images in the four IDX files (gzip), as Debian's dataset-fashion-mnist ships them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, arr in arrays.items():
        header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
        (root / f"{name}.gz").write_bytes(gzip.compress(header + arr.tobytes()))
    return root


TINY = {"train_subset": 8, "batch_size": 8, "grasp_q": 4, "epochs": 1, "pool": 2, "val": 16, "seeds": 2,
        "lrs": {"fo": [0.05, 0.1], "cge": [0.05], "rge": [0.02]}, "sparsities": [0.0, 0.99]}


@pytest.mark.slow
def test_run_fmnist_on_tiny_data(tmp_path):
    data = str(write_fake_fmnist(tmp_path / "fmnist"))
    lines = []
    part = fm.run_fmnist(data, "quick", settings=TINY, log=lines.append, jobs=2, threads=1)
    assert [r["params"] for r in part["rows"]] == [736, 3734]
    for size in fm.RECIPES:  # the sweep runs per size; a two-point grid's best is always an end of it
        assert [s["lr"] for s in part["lr_sweep"][size]["fo"]["runs"]] == [0.05, 0.1]
        assert part["lr_sweep"][size]["fo"]["at_grid_edge"] and not part["lr_sweep"][size]["cge"]["at_grid_edge"]
        assert [row[m]["lr"] for row in part["rows"] if row["model"] == size for m in ("fo",)] == [
            part["lr_sweep"][size]["fo"]["best_lr"]]
    # every run was logged once, as it finished: 2 sizes x 4 sweep runs, 2 sizes x 3 methods x 2 seeds, 2 sparsities
    assert len([ln for ln in lines if " seed " in ln]) == 8 + 12 + 2
    for row in part["rows"]:
        for method in fm.METHODS:
            cell = row[method]
            assert cell["n"] == 2 and cell["low"] <= cell["mean"] <= cell["high"]
            assert all(r["steps"] == 1 for r in cell["runs"])
        # RGE gets CGE's forward passes per step (q = CGE's coordinates), seed by seed
        for cge, rge in zip(row["cge"]["runs"], row["rge"]["runs"]):
            assert rge["forward_passes"] == cge["active_per_step"] + 1
    dense, sparse = part["sparsity"]
    assert dense["active_per_step"] == 3734 and sparse["active_per_step"] < 3734 // 10
    assert set(part["goals"]) == {"fmnist_cge_fo_gap_pp", "fmnist_cge_rge_margin_pp", "fmnist_cge_rge_separated"}


@pytest.mark.slow
def test_run_scaling_quick_on_tiny_data(tmp_path):
    from edgezo.bench.deepzero_scaling import run_scaling
    from edgezo.bench.deepzero_timing import VARIANTS

    out = run_scaling(str(write_fake_fmnist(tmp_path / "fmnist")), "quick")
    assert out["image_size"] == 28 and len(out["sizes"]) == 3
    assert set(out["fits"]) == set(VARIANTS) and all(math.isfinite(f["exponent"]) for f in out["fits"].values())
    assert out["largest_table_model"]["params"] == 1 * 8 * 9 + 8 + 16 + 8 * 8 * 9 + 8 + 16 + 8 * 10 + 10
    assert all(r["max_abs_grad_difference"] < 1e-3 for r in out["sizes"])  # the variants agree


def test_plot_with_the_fmnist_panels(tmp_path):
    from edgezo.bench import deepzero
    from edgezo.bench.deepzero_timing import VARIANTS

    rows = []
    for params in (736, 3734):
        row = {"params": params, **_row([80, 81, 82], [79, 80, 81], [70, 71, 72])}
        for m in fm.METHODS:
            row[m]["lr"] = 0.1
        rows.append(row)
    sizes = [{"params": p, "depth": 1, "width": 2, "step_s": {v: 1e-5 * p for v in VARIANTS}}
             for p in (736, 3734, 7040)]
    fits = {v: fit_exponent([s["params"] for s in sizes], [s["step_s"][v] for s in sizes]) for v in VARIANTS}
    goals = {"reuse_speedup": 1.0, "reuse_batched_speedup": 2.0, **fm.goals(rows)}
    result = {"timing": {"sizes": sizes}, "goals": goals, "fmnist_timing": {"batch": 16, "sizes": sizes, "fits": fits},
              "fmnist": {"rows": rows, "seeds": [0, 1, 2], "goals": fm.goals(rows),
                         "sparsity": [{"sparsity": s, "test_accuracy": 0.7, "step_s": 0.1} for s in (0.0, 0.9)]}}
    deepzero.plot(result, tmp_path / "deepzero.png")
    assert (tmp_path / "deepzero.png").stat().st_size > 0
