"""The figure of ``edgezo bench tensor-zo``: test accuracy against forward passes (log axis) and
against wall time for every configuration of every task, and the TT rank study."""

from __future__ import annotations

import math

_STYLES = {"fo-dense": ("C0", "--"), "fo-tt": ("C1", "--"), "zo-rge-dense": ("C0", "-"),
           "zo-rge-tt": ("C1", "-"), "zo-hybrid-tt": ("C2", "-")}


def _curves(ax, res: dict, xkey: str) -> None:
    for label, rows in res["runs"].items():
        hist = [h for h in rows[0]["history"] if h.get(xkey) is not None]
        color, ls = _STYLES.get(label, ("C7", ":"))
        s = res["summary"][label]
        ax.plot([max(1e-3 if xkey == "wall_s" else 1, h[xkey]) for h in hist],
                [100 * h["test_accuracy"] for h in hist], color=color, ls=ls, marker="o", ms=2.5,
                label=f"{label} ({s['params']:,} params): {100 * s['test_accuracy']:.1f}%")
    ax.set_xscale("log")
    ax.set_xlabel("forward passes (loss evaluations)" if xkey == "forward_passes" else "wall time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")


def _rank_panel(ax, res: dict) -> None:
    table = res["rank_table"]
    for key, label in (("fo_accuracy", "FO"), ("zo_accuracy", "ZO schedule")):
        pts = [(r["rank"], 100 * r[key]) for r in table if key in r]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    for r in table:
        ax.annotate(f"{r['params']:,}", (r["rank"], 100 * max(r.get("fo_accuracy", 0), r.get("zo_accuracy", 0))),
                    fontsize=7, textcoords="offset points", xytext=(0, 4), ha="center")
    ax.set_xlabel("TT rank (784-256-10; labels: trainable parameters)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"rank study ({res['epochs']} epochs, one seed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_result(result: dict, path) -> None:
    """Accuracy vs forward passes (top) and vs wall time (bottom) per task; the rank study on the right."""
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    tasks = {k: v for k, v in result["tasks"].items() if k != "ranks"}
    ncols = len(tasks) + ("ranks" in result["tasks"])
    fig, axes = plt.subplots(2, max(1, ncols), figsize=(6.5 * max(1, ncols), 8.5), squeeze=False)
    for col, (name, res) in enumerate(tasks.items()):
        _curves(axes[0][col], res, "forward_passes")
        _curves(axes[1][col], res, "wall_s")
        bits = [f"{k}={v:.3g}" for k, v in res["goals"].items() if isinstance(v, (int, float)) and not math.isnan(v)]
        axes[0][col].set_title(f"{name} ({res['recipe']}, {res['epochs']} epochs)\n" + ", ".join(bits), fontsize=8)
    if "ranks" in result["tasks"]:
        _rank_panel(axes[0][-1], result["tasks"]["ranks"])
        axes[1][-1].axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
