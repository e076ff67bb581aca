"""The deepzero benchmark's pieces at toy size (behaviour only; the benchmark measures)."""

import pytest
import torch

from edgezo.bench import deepzero


@pytest.mark.slow
def test_step_timing_variants_agree(tmp_path):
    batch = (torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    row = deepzero.time_cge_steps(1, 2, batch, reps=1, seed=0)
    assert row["params"] == 1 * 2 * 9 + 2 + 4 + 2 * 10 + 10
    assert set(row["step_s"]) == set(deepzero.VARIANTS)
    assert row["speedup_vs_naive"]["naive"] == 1.0
    assert row["max_abs_grad_difference"] < 1e-3  # all four evaluate the same finite differences
    result = {"timing": {"sizes": [row]}, "goals": {"reuse_speedup": 1.0, "reuse_batched_speedup": 2.0},
              "table": {"epochs": 1,
                        "rows": [{"params": 10, **{m: {"test_accuracy": 0.5} for m in ("fo", "cge", "rge")}}]}}
    result["goals"].update(cge_fo_gap_pp=0.0, cge_rge_margin_pp=0.0)
    deepzero.plot(result, tmp_path / "deepzero.png")
    assert (tmp_path / "deepzero.png").stat().st_size > 0
