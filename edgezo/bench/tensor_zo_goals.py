"""The goals of ``edgezo bench tensor-zo`` (see :mod:`.tensor_zo` for what they mean and their targets)."""

from __future__ import annotations

import statistics
from typing import Any


def passes_to_reach(history: list[dict], target: float) -> int | None:
    """Forward passes at the first evaluation whose test accuracy is ≥ ``target``."""
    for h in history:
        if h["test_accuracy"] >= target - 1e-12:
            return h["forward_passes"]
    return None


def forward_pass_ratio(dense: dict, tt: dict) -> float | None:
    target = dense["test_accuracy"]
    need_dense = passes_to_reach(dense["history"], target)
    need_tt = passes_to_reach(tt["history"], target)
    if need_dense is None or not need_tt:
        return None
    return need_dense / need_tt


def task_goals(runs: dict[str, list[dict]]) -> dict[str, Any]:
    """The issue's goals from the runs of one task (lists over seeds)."""

    def acc(c):
        return statistics.fmean(r["test_accuracy"] for r in runs[c]) if c in runs else None

    goals: dict[str, Any] = {}
    if "fo-tt" in runs and "zo-hybrid-tt" in runs:  # points, rounded below one test image of 10^4
        goals["hybrid_tt_gap_pp"] = round(100 * (acc("fo-tt") - acc("zo-hybrid-tt")), 6) + 0.0
    tt = next((runs[c][0]["params"] for c in ("fo-tt", "zo-rge-tt", "zo-hybrid-tt") if c in runs), None)
    dense = next((runs[c][0]["params"] for c in ("fo-dense", "zo-rge-dense") if c in runs), None)
    if tt and dense:
        goals["tt_compression"] = dense / tt
    if "fo-dense" in runs and "fo-tt" in runs:
        goals["tt_fo_loss_pp"] = round(100 * (acc("fo-dense") - acc("fo-tt")), 6) + 0.0
    dense_zo = [c for c in runs if c.split("@")[0] == "zo-rge-dense"]
    tt_zo = [c for c in runs if c.split("@")[0] == "zo-rge-tt"]
    if dense_zo and tt_zo:  # each side at its best setting of the sweep (point 3)
        best, best_tt = max(dense_zo, key=acc), max(tt_zo, key=acc)
        goals["zo_dense_baseline"], goals["zo_tt_setting"] = best, best_tt
        ratios = [forward_pass_ratio(d, t) for d, t in zip(runs[best], runs[best_tt])]
        ratios = [r for r in ratios if r is not None]
        goals["tt_forward_pass_ratio"] = statistics.median(ratios) if ratios else None
    return goals



def all_goals(result: dict) -> tuple[dict, dict]:
    """The top-level goals (digits ones unprefixed, MNIST ones prefixed) and their targets."""
    goals: dict[str, Any] = {}
    targets: dict[str, str] = {}
    tasks = result["tasks"]
    if "digits" in tasks:
        g = tasks["digits"]["goals"]
        goals.update({k: g.get(k) for k in ("hybrid_tt_gap_pp", "tt_compression", "tt_fo_loss_pp",
                                            "tt_forward_pass_ratio")})
        targets.update({"hybrid_tt_gap_pp": "<= 1.0", "tt_compression": ">= 20", "tt_fo_loss_pp": "<= 1.0",
                        "tt_forward_pass_ratio": "> 1"})
    if "mnist" in tasks:
        g = tasks["mnist"]["goals"]
        goals.update({f"mnist_{k}": g.get(k) for k in ("hybrid_tt_gap_pp", "tt_forward_pass_ratio",
                                                       "tt_compression", "tt_fo_loss_pp")})
        targets.update({"mnist_hybrid_tt_gap_pp": "<= 2", "mnist_tt_forward_pass_ratio": ">= 3",
                        "mnist_tt_compression": ">= 100", "mnist_tt_fo_loss_pp": "<= 3"})
    if "mnist1024" in tasks:
        g = tasks["mnist1024"]["goals"]
        goals.update({"mnist1024_hybrid_tt_gap_pp": g.get("hybrid_tt_gap_pp"),
                      "mnist1024_tt_compression": g.get("tt_compression")})
        targets.update({"mnist1024_hybrid_tt_gap_pp": "<= 3", "mnist1024_tt_compression": "~205"})
    layer = result.get("stacked_forward", {}).get("layers", {}).get("784x256 r4")
    if layer:
        goals["tt_stacked_forward_time_over_dense"] = layer["time_over_dense"]["tt-reconstruct"]
        targets["tt_stacked_forward_time_over_dense"] = "report (784x256 r4, q=11, batch 2000; ~1 = dense speed)"
    return goals, targets
