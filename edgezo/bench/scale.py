"""``edgezo bench scale``: one ZO step shared by 2 processes — throughput and bytes on the wire.

Setup: an MLP whose forward pass dominates the step (large batch; direction
generation and the seed update are a few per cent), central RGE with q
directions (2q queries per step), seed-SGD. Two worker processes are spawned
(gloo on the loopback interface, one intra-op thread each) and driven round by
round from this process:

* ``1 proc``: rank 0 alone runs the steps with a plain TorchOracle (1 thread;
  rank 1 sleeps on a queue), and again with 2 threads for reference;
* ``2 procs``: both ranks run the same steps through a DistributedOracle;
* control: both ranks run all the steps alone at the same time, without
  communicating — the parallelism the machine offers at that moment
  (``throughput.parallel_capacity``, 2.0 on two idle cores), which bounds any
  2-process speedup; ``efficiency_vs_independent`` = 2-proc / that pair.

Queries per second = 2q · steps / wall time. ``two_proc_speedup`` is the median
over rounds of (2-proc / 1-proc-1-thread) throughput, the rounds interleaved so
that a change in machine load hits both sides. Both sides start from the same θ
and must end with bit-identical θ (recorded). Beside this wall-clock goal,
``throughput.speedup_cpu_time`` = (CPU seconds of the 1-proc run) / (largest
CPU seconds of a rank) for the same steps: the speedup two dedicated cores
would give, for when other work shares the machine (``setup.loadavg_*``).

Communication: each rank counts the bytes it sends (ring all-gather of
⌈q/N⌉ + 1 float64, see :mod:`edgezo.oracles.distributed`) and reads the bytes
its process actually wrote (``wchar`` of ``/proc/self/io``: the gloo socket
writes, headers included). A sweep over the number of queries fits
``bytes per step (both ranks) = a · queries + b``; ``comm_bytes_per_query`` is
the slope a, b the constant. A DDP-style step would all-reduce the float32
gradient: a ring all-reduce sends 2(N−1)/N · 4d bytes per rank (4d at N = 2);
the same all-reduce is also run through gloo and measured.
``comm_ratio_vs_allreduce`` = all-reduce bytes / our bytes per step (counted,
checksums included).

Goals: ``two_proc_speedup`` (≥ 1.6), ``comm_bytes_per_query`` (≤ 8),
``comm_ratio_vs_allreduce``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

WORLD = 2


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, help="interleaved 1-proc / 2-proc rounds (default 3 quick, 7 full)")


def _wchar() -> int | None:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _setup(spec: dict):
    from ..models import MLP

    torch.manual_seed(spec["seed"])
    model = MLP(spec["sizes"])
    g = torch.Generator().manual_seed(spec["seed"] + 1)
    batch = (torch.randn(spec["batch"], spec["sizes"][0], generator=g),
             torch.randint(0, spec["sizes"][-1], (spec["batch"],), generator=g))
    return model, batch


def _steps(oracle, batch, spec: dict, first: int, count: int) -> float:
    from ..estimators import RGE
    from ..optim import seed_sgd_step

    rge = RGE(q=spec["q"], mu=1e-2, difference="central")
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(first, first + count):
        seed_sgd_step(oracle, rge.estimate(oracle, batch, step=step, seed=spec["seed"]), spec["lr"])
    return time.perf_counter() - t0, time.process_time() - c0


def _worker(rank: int, init: str, inbox, outbox, spec: dict) -> None:
    import copy

    import torch.distributed as dist

    from ..distributed import init_process_group, leaving_process_group
    from ..losses import cross_entropy
    from ..oracle import SeedQueries
    from ..oracles.distributed import DistributedOracle, parameter_checksum
    from ..oracles.torch_oracle import TorchOracle

    torch.set_num_threads(1)
    init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    model, batch = _setup(spec)
    with leaving_process_group():
        while True:
            cmd, arg = inbox.get()
            if cmd == "stop":
                break
            if cmd == "single":  # rank 0 alone (`arg` threads), or both ranks independently (no communication)
                torch.set_num_threads(arg)
                oracle = TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked")
                _steps(oracle, batch, spec, 0, 1)  # warm-up (thread pool, allocator)
                wall, cpu = _steps(oracle, batch, spec, 1, spec["steps"])
                torch.set_num_threads(1)
                outbox.put((rank, {"wall": wall, "cpu": cpu, "crc": parameter_checksum(oracle.get_flat())[0]}))
            elif cmd == "dist":
                oracle = DistributedOracle(TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked"),
                                           checksum_every=spec["checksum_every"])
                _steps(oracle, batch, spec, 0, 1)
                dist.barrier()
                sent, w0 = oracle.bytes_sent + oracle.checksum_bytes, _wchar()
                wall, cpu = _steps(oracle, batch, spec, 1, spec["steps"])
                w1, counted = _wchar(), oracle.bytes_sent + oracle.checksum_bytes - sent
                oracle.check_parameters()
                outbox.put((rank, {"wall": wall, "cpu": cpu, "crc": parameter_checksum(oracle.get_flat())[0],
                                   "counted": counted, "wire": None if w0 is None else w1 - w0,
                                   "evaluations": spec["steps"], "rank_passes": oracle.inner.counters.forward_passes}))
            elif cmd == "sweep":  # bytes per evaluate against the number of queries (model-independent)
                tiny = DistributedOracle(TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked"),
                                         checksum_every=0)
                small = (batch[0][:2], batch[1][:2])
                rows = []
                for q in arg:
                    queries = SeedQueries(tuple(range(1, q + 1)), (1e-2,) * q)
                    tiny.evaluate(queries, small)
                    c0, w0 = tiny.bytes_sent, _wchar()
                    reps = 3
                    for _ in range(reps):
                        tiny.evaluate(queries, small)
                    w1 = _wchar()
                    rows.append({"queries": q, "counted": (tiny.bytes_sent - c0) / reps,
                                 "wire": None if w0 is None else (w1 - w0) / reps})
                outbox.put((rank, rows))
            elif cmd == "allreduce":  # the DDP-style alternative: all-reduce a float32 gradient of d entries
                grad = torch.ones(sum(p.numel() for p in model.parameters()))
                dist.all_reduce(grad)
                w0, t0 = _wchar(), time.perf_counter()
                for _ in range(arg):
                    dist.all_reduce(grad)
                wall, w1 = time.perf_counter() - t0, _wchar()
                outbox.put((rank, {"wire": None if w0 is None else (w1 - w0) / arg, "wall": wall / arg}))


def _collect(outbox, n: int) -> dict[int, object]:
    got = {}
    while len(got) < n:
        rank, value = outbox.get(timeout=900)
        got[rank] = value
    return got


def _fit(rows: list[dict], key: str) -> tuple[float, float] | None:
    if any(r[key] is None for r in rows):
        return None
    x = np.array([r["queries"] for r in rows], dtype=float)
    y = np.array([r[key] for r in rows], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _measure(spec: dict, rounds: int, sweep_q: list[int]):
    """Start the two ranks, run ``rounds`` rounds of the four configurations, the query sweep and an all-reduce."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    inboxes, outbox = [ctx.Queue() for _ in range(WORLD)], ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="edgezo-scale-") as tmp:
        init = f"file://{Path(tmp) / 'rendezvous'}"
        procs = [ctx.Process(target=_worker, args=(r, init, inboxes[r], outbox, spec), daemon=True)
                 for r in range(WORLD)]
        for p in procs:
            p.start()
        try:
            records = []
            for _ in range(rounds):
                inboxes[0].put(("single", 1))
                one = _collect(outbox, 1)[0]
                for box in inboxes:
                    box.put(("dist", None))
                two = _collect(outbox, WORLD)
                for box in inboxes:
                    box.put(("single", 1))
                pair = _collect(outbox, WORLD)
                inboxes[0].put(("single", 2))
                one_2t = _collect(outbox, 1)[0]
                records.append({"one": one, "two": two, "independent": pair, "one_2threads": one_2t})
            for box in inboxes:
                box.put(("sweep", sweep_q))
            sweep = _collect(outbox, WORLD)
            for box in inboxes:
                box.put(("allreduce", 5))
            allreduce = _collect(outbox, WORLD)
        finally:
            for box in inboxes:
                box.put(("stop", None))
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.terminate()
    return records, sweep, allreduce


def run(args) -> dict:
    from ..oracles.distributed import ring_allreduce_bytes

    quick = args.quick
    spec = {"sizes": [64, 256, 256, 10], "batch": 1024 if quick else 2048, "q": 8 if quick else 16,
            "steps": 4 if quick else 8, "seed": args.seed, "lr": 1e-3, "checksum_every": 50}
    rounds = args.rounds or (3 if quick else 7)
    sweep_q = [2, 16, 128, 1024] if quick else [2, 16, 128, 1024, 8192]
    load_before = os.getloadavg()
    records, sweep, allreduce = _measure(spec, rounds, sweep_q)
    queries = 2 * spec["q"] * spec["steps"]
    qps_one = [queries / r["one"]["wall"] for r in records]
    qps_one_2t = [queries / r["one_2threads"]["wall"] for r in records]
    qps_two = [queries / max(v["wall"] for v in r["two"].values()) for r in records]
    ratios = [b / a for a, b in zip(qps_one, qps_two)]
    # control: two processes that do not communicate, each running every step alone — the parallelism the
    # machine offers right now (2.0 on two idle cores); no 2-process implementation can beat it
    qps_pair = [WORLD * queries / max(v["wall"] for v in r["independent"].values()) for r in records]
    # what dedicated cores would give: each side's wall time if no other process competed for the CPU
    cpu_ratios = [r["one"]["cpu"] / max(v["cpu"] for v in r["two"].values()) for r in records]
    identical = all(r["one"]["crc"] == v["crc"] == r["one_2threads"]["crc"] for r in records
                    for v in list(r["two"].values()) + list(r["independent"].values()))

    from ..models import MLP

    dim = sum(p.numel() for p in MLP(spec["sizes"]).parameters())
    per_step_queries = 2 * spec["q"]
    counted_per_rank = statistics.mean(r["two"][0]["counted"] for r in records) / spec["steps"]
    wire_per_rank = (None if records[0]["two"][0]["wire"] is None
                     else statistics.mean(v["wire"] for r in records for v in r["two"].values()) / spec["steps"])
    sweep_rows = [{"queries": q, "counted": sum(sweep[r][i]["counted"] for r in range(WORLD)),
                   "wire": None if sweep[0][i]["wire"] is None else sum(sweep[r][i]["wire"] for r in range(WORLD))}
                  for i, q in enumerate(sweep_q)]
    counted_fit = _fit(sweep_rows, "counted")
    wire_fit = _fit(sweep_rows, "wire")
    allreduce_formula = ring_allreduce_bytes(dim, WORLD)  # per rank
    allreduce_wire = allreduce[0]["wire"]
    return {
        "goals": {
            "two_proc_speedup": statistics.median(ratios),
            "comm_bytes_per_query": counted_fit[0],
            "comm_ratio_vs_allreduce": allreduce_formula / counted_per_rank,
        },
        "setup": {**spec, "dim": dim, "queries_per_step": per_step_queries, "rounds": rounds,
                  "estimator": "rge central, seed-sgd", "path": "stacked", "threads_per_process": 1,
                  "cores": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "throughput": {
            "qps_one_process": qps_one, "qps_two_processes": qps_two, "qps_one_process_two_threads": qps_one_2t,
            "speedup_per_round": ratios, "speedup_best_vs_best": max(qps_two) / max(qps_one),
            "qps_two_independent_processes": qps_pair,
            "parallel_capacity": statistics.median(b / a for a, b in zip(qps_one, qps_pair)),
            "efficiency_vs_independent": statistics.median(b / a for a, b in zip(qps_pair, qps_two)),
            "speedup_cpu_time": statistics.median(cpu_ratios), "speedup_cpu_time_per_round": cpu_ratios,
            "rank_forward_passes": [records[0]["two"][r]["rank_passes"] for r in range(WORLD)],
            "speedup_vs_one_process_two_threads": statistics.median(b / a for a, b in zip(qps_one_2t, qps_two)),
            "identical_parameters": identical},
        "communication": {
            "counted_bytes_per_step_per_rank": counted_per_rank,
            "wire_bytes_per_step_per_rank": wire_per_rank,
            "sweep_both_ranks": sweep_rows,
            "fit_counted": {"bytes_per_query": counted_fit[0], "constant": counted_fit[1]},
            "fit_wire": None if wire_fit is None else {"bytes_per_query": wire_fit[0], "constant": wire_fit[1]},
            "allreduce_formula": "ring all-reduce sends 2(N-1)/N * 4d bytes per rank (float32 gradient of d entries)",
            "allreduce_bytes_per_rank": allreduce_formula,
            "allreduce_wire_bytes_per_rank": allreduce_wire,
            "allreduce_wall_s": allreduce[0]["wall"],
            "ratio_vs_allreduce_wire": (None if allreduce_wire is None or not wire_per_rank
                                        else allreduce_wire / wire_per_rank),
        },
    }


def plot(result: dict, path) -> None:
    from ..io import save_figure
    from ..plots import _pyplot

    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    t = result["throughput"]
    names = ["1 proc\n1 thread", "1 proc\n2 threads", "2 procs\nDistributedOracle", "2 procs, no comm.\n(control)"]
    series = [t["qps_one_process"], t["qps_one_process_two_threads"], t["qps_two_processes"],
              t["qps_two_independent_processes"]]
    ax1.bar(names, [statistics.median(s) for s in series], color=["C0", "C7", "C1", "C2"])
    for i, s in enumerate(series):
        ax1.plot([i] * len(s), s, "k.", ms=4)
    s = result["setup"]
    ax1.set_ylabel("queries / s")
    ax1.set_title(f"MLP {s['sizes']}, batch {s['batch']}, {s['queries_per_step']} queries/step\n"
                  f"2-proc speedup {result['goals']['two_proc_speedup']:.2f}× wall clock, "
                  f"{t['speedup_cpu_time']:.2f}× CPU time; machine offers {t['parallel_capacity']:.2f}× "
                  f"(median of {s['rounds']} rounds)", fontsize=9)
    c = result["communication"]
    rows = c["sweep_both_ranks"]
    qs = [r["queries"] for r in rows]
    ax2.plot(qs, [r["counted"] for r in rows], "o-", label="ours, counted payload (both ranks)")
    if rows[0]["wire"] is not None:
        ax2.plot(qs, [r["wire"] for r in rows], "s--", label="ours, measured socket writes (both ranks)")
    ax2.axhline(WORLD * c["allreduce_bytes_per_rank"], color="C3", label=f"ring all-reduce of ĝ, d = {s['dim']}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("queries per step")
    ax2.set_ylabel("bytes per step")
    ax2.set_title(f"{result['goals']['comm_bytes_per_query']:.2f} B/query + constant; "
                  f"{result['goals']['comm_ratio_vs_allreduce']:.0f}× less than all-reduce")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
