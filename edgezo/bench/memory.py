"""``edgezo bench memory``: peak memory of a ZO step vs inference vs backprop + Adam, and step time vs MeZO.

For GPT-2-architecture language models (built from a config, random init) at
three sizes spanning more than 10× in parameters, every measurement runs in a
fresh process (:mod:`edgezo.bench.memory_probe`) so that no allocation of one
survives into the next:

* inference: one ``no_grad`` forward and the loss;
* ZO steps on the lean path (``oracle.max_memory`` below the stacked path's
  need): RGE forward and central differences with q = 1 and q = 4 Gaussian
  seeds, then the seed-SGD update;
* FO: one backward pass and one ``torch.optim.Adam`` step;
* MeZO: the in-place loop of :mod:`edgezo.bench.mezo` (memory, for reference).

On the largest model the step time of edgezo (lean, central, q = 1, Gaussian)
is compared with the MeZO loop in one process, interleaved, best of ``reps``.

Goals (largest model): ``zo_inference_memory_ratio`` = worst ZO step peak /
inference peak (≤ 1.2); ``fo_zo_memory_ratio`` = FO + Adam peak / worst ZO
peak (≥ 4); ``mezo_step_ratio`` = MeZO step time / edgezo step time (≥ 1).
See docs/memory.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SIZES_FULL = {"S": (6, 512, 8, 8192), "M": (12, 768, 12, 8192), "L": (24, 1024, 16, 8192)}
SIZES_QUICK = {"S": (2, 128, 4, 8192), "M": (4, 256, 4, 8192), "L": (6, 384, 6, 8192)}
ZO_CONFIGS = [("forward", 1), ("central", 1), ("forward", 4), ("central", 4)]


def add_arguments(parser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CUDA peaks: torch.cuda.max_memory_allocated)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every measuring process")
    parser.add_argument("--reps", type=int, help="timed steps of edgezo and MeZO (default 2 quick, 3 full)")


def probe(spec: dict, timeout: float = 3600) -> dict:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    print(f"memory probe: {json.dumps(spec)}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "edgezo.bench.memory_probe", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {spec} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _size_row(name: str, size, common: dict) -> dict:
    row = {"size": name, "config": dict(zip(("n_layer", "n_embd", "n_head", "vocab"), size))}
    inf = probe({**common, "size": size, "mode": "inference"})
    row["parameters"], row["inference_mb"] = inf["parameters"], inf["peak_mb"]
    for difference, q in ZO_CONFIGS:
        r = probe({**common, "size": size, "mode": "zo", "difference": difference, "q": q})
        row[f"zo_{difference}_q{q}_mb"], row[f"zo_{difference}_q{q}_paths"] = r["peak_mb"], r["paths"]
    row["fo_adam_mb"] = probe({**common, "size": size, "mode": "fo"})["peak_mb"]
    row["mezo_q1_mb"] = probe({**common, "size": size, "mode": "mezo", "q": 1})["peak_mb"]
    row["zo_worst_mb"] = max(row[f"zo_{d}_q{q}_mb"] for d, q in ZO_CONFIGS)
    return row


def run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    sizes = SIZES_QUICK if quick else SIZES_FULL
    batch, context = (4, 64) if quick else (8, 256)
    common = {"batch": batch, "context": context, "device": getattr(args, "device", "cpu"),
              "threads": getattr(args, "threads", 1)}
    rows = [_size_row(name, size, common) for name, size in sizes.items()]
    reps = getattr(args, "reps", None) or (2 if quick else 3)
    timing = probe({**common, "size": sizes["L"], "mode": "time", "q": 1, "reps": reps})
    big = rows[-1]
    ours, mezo = min(timing["edgezo_step_s"]), min(timing["mezo_step_s"])
    return {
        "goals": {"zo_inference_memory_ratio": big["zo_worst_mb"] / big["inference_mb"],
                  "fo_zo_memory_ratio": big["fo_adam_mb"] / big["zo_worst_mb"],
                  "mezo_step_ratio": mezo / ours},
        "targets": {"zo_inference_memory_ratio": "<= 1.2", "fo_zo_memory_ratio": ">= 4", "mezo_step_ratio": ">= 1"},
        "setup": {**common, "tokens_per_batch": batch * context, "direction": "gaussian", "mu": 1e-3,
                  "memory": "CUDA max_memory_allocated" if common["device"].startswith("cuda")
                  else "peak RSS (VmHWM after a reset) minus RSS after imports",
                  "parameter_span": rows[-1]["parameters"] / rows[0]["parameters"]},
        "sizes": rows,
        "step_time_largest_q1": {"edgezo_lean_central_s": timing["edgezo_step_s"],
                                 "mezo_loop_s": timing["mezo_step_s"]},
    }


def plot(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    rows = result["sizes"]
    params = [r["parameters"] / 1e6 for r in rows]
    series = [("inference", "inference_mb"), ("ZO forward q=1", "zo_forward_q1_mb"),
              ("ZO central q=4", "zo_central_q4_mb"), ("MeZO loop q=1", "mezo_q1_mb"), ("FO + Adam", "fo_adam_mb")]
    for label, key in series:
        ax1.plot(params, [r[key] for r in rows], "o-", label=label)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("parameters (millions)")
    ax1.set_ylabel("peak memory of one step (MiB)")
    g = result["goals"]
    ax1.set_title(f"ZO / inference {g['zo_inference_memory_ratio']:.2f}, FO / ZO {g['fo_zo_memory_ratio']:.2f} "
                  f"(largest)", fontsize=9)
    ax1.legend(fontsize=7)
    t = result["step_time_largest_q1"]
    ax2.bar(["edgezo lean\ncentral q=1", "MeZO loop\nq=1"], [min(t["edgezo_lean_central_s"]), min(t["mezo_loop_s"])],
            color=["C0", "C3"])
    ax2.set_ylabel("step time (s, best)")
    ax2.set_title(f"largest model: MeZO / edgezo step time {g['mezo_step_ratio']:.2f}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
