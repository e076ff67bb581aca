"""pinn.png for ``edgezo bench pinn``: derivative errors and the training curves of every configuration."""

from __future__ import annotations


def _derivative_panel(ax, result: dict) -> None:
    d = result["derivatives"]
    for key, color, label in (("grad_err", "C0", "gradient"), ("lap_err", "C3", "Laplacian")):
        mc = d["monte_carlo"]
        ax.plot([r["evaluations"] for r in mc], [r[key] for r in mc], "o--", color=color, ms=4,
                label=f"Monte Carlo, {label}")
        sg = d["sparse_grid"]
        ax.plot([r["evaluations"] for r in sg], [r[key] for r in sg], "s-", color=color, ms=6,
                label=f"sparse grid (levels {', '.join(str(r['level']) for r in sg)}), {label}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forward evaluations per point")
    ax.set_ylabel("relative error vs autograd")
    bound = "≥ " if any(r["lower_bound"] for r in d["equal_error"].values()) else ""
    ratio = result["goals"]["sparse_grid_eval_ratio"]
    ax.set_title(f"Stein derivatives, {d['points']} points (MC/SG evaluations {bound}{ratio:.3g})", fontsize=9)
    ax.legend(fontsize=6)


def _curves(ax, runs: dict, xkey: str, zero: float, title: str) -> None:
    for name, run in runs.items():
        h = [r for r in run["history"] if xkey != "wall_s" or r[xkey] > 0]
        xs = [max(r[xkey], 1) if xkey == "forward_passes" else r[xkey] for r in h]
        ax.plot(xs, [r["test_rel_l2"] for r in h], marker="o", ms=2.5,
                label=f"{name.replace('_', ' ')} ({run['test_rel_l2']:.2e})")
    ax.axhline(zero, color="gray", ls=":", lw=1, label=f"network ≡ 0 ({zero:.2e})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forward passes (loss evaluations)" if xkey == "forward_passes" else "training wall-clock s")
    ax.set_ylabel("test relative L2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)


def plot_result(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    rows = 2 if "pde2" in result else 1
    fig, axes = plt.subplots(rows, 3, figsize=(17, 4.6 * rows), squeeze=False)
    _derivative_panel(axes[0][0], result)
    name = result["recipe"]["name"]
    for col, xkey in ((1, "forward_passes"), (2, "wall_s")):
        _curves(axes[0][col], result["training"], xkey, result["zero_net_rel_l2"],
                f"{name}, {result['steps']} steps" + (" vs wall-clock" if xkey == "wall_s" else ""))
    if "pde2" in result:
        p2 = result["pde2"]
        for col, xkey in ((0, "forward_passes"), (1, "wall_s")):
            _curves(axes[1][col], p2["training"], xkey, p2["zero_net_rel_l2"],
                    f"{p2['recipe']['name']}, {p2['steps']} steps" + (" vs wall-clock" if xkey == "wall_s" else ""))
        _throughput_panel(axes[1][2], result)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _throughput_panel(ax, result: dict) -> None:
    items = [(k, v) for k, v in result["throughput"].items() if v.get("forward_rows_per_s")]
    names = [k for k, _ in items]
    ax.barh(range(len(items)), [v["forward_rows_per_s"] / 1e6 for _, v in items], color="C2")
    for i, (_, v) in enumerate(items):
        share = v.get("outside_forward_share")
        ax.text(0, i, f" {100 * share:.0f}% outside forward" if share is not None else "", va="center", fontsize=7)
    ax.set_yticks(range(len(items)), names, fontsize=7)
    ax.set_xlabel("network rows per second (millions, nominal)")
    ax.set_title(f"throughput ({result['cpu_budget']['threads'] if 'cpu_budget' in result else 1} thread)",
                 fontsize=9)
