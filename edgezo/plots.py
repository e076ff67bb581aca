"""Training-curve plots (matplotlib, headless)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .io import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_training(losses: Sequence[tuple[int, float]], evals: Sequence[dict], path: str | os.PathLike,
                  *, title: str = "", metric: str = "test_accuracy") -> None:
    """Two panels: training loss per step, and the task metric at each evaluation."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    if losses:
        steps, values = zip(*losses)
        ax1.plot(steps, values, lw=0.8)
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax1.set_yscale("log")
    pts = [(e["step"], e[metric]) for e in evals if metric in e]
    if pts:
        s, m = zip(*pts)
        ax2.plot(s, m, marker="o", ms=3)
    ax2.set_xlabel("step")
    ax2.set_ylabel(metric.replace("_", " "))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
