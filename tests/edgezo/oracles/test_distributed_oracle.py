"""DistributedOracle: sharded queries, all-gathered scalars, identical updates on every rank.

The multi-process tests start 2 gloo ranks on the loopback interface (marker
``distributed``); they compare with single-process runs bit for bit.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from edgezo.models import MLP

from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, OracleError, SeedQueries
from edgezo.oracles.distributed import (
    DistributedOracle,
    allgather_bytes,
    parameter_checksum,
    query_fingerprint,
    ring_allreduce_bytes,
    shard_bounds,
    sub_queries,
)
from edgezo.oracles.torch_oracle import TorchOracle


@pytest.mark.parametrize("q", [0, 1, 2, 5, 40, 41])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_are_contiguous_balanced_and_cover_every_query(q, world):
    bounds = [shard_bounds(q, world, r) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == q
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) == -(-q // world)
    with pytest.raises(ValueError, match="outside"):
        shard_bounds(q, world, world)


def test_sub_queries_keep_kind_group_and_order():
    q = SeedQueries((1, 2, 3, 4), (0.1, -0.1, 0.2, 0.0), group="g", kind="gaussian")
    assert sub_queries(q, 1, 3) == SeedQueries((2, 3), (-0.1, 0.2), "g", "gaussian")
    assert sub_queries(CoordQueries((5, 6, 7), (1.0, 2.0, 3.0)), 2, 3) == CoordQueries((7,), (3.0,))
    assert query_fingerprint(q, 8) != query_fingerprint(sub_queries(q, 0, 4), 9)


def test_communication_formulas():
    # ring all-gather of ⌈q/N⌉ + 1 float64 per rank: (N − 1) chunks sent per rank
    assert allgather_bytes(40, 2) == 8 * 21 and allgather_bytes(41, 3) == 2 * 8 * 15 and allgather_bytes(9, 1) == 0
    # DDP-style ring all-reduce of a float32 gradient: 2 (N − 1) / N · 4 d
    assert ring_allreduce_bytes(1000, 2) == 4000 and ring_allreduce_bytes(1000, 4) == 6000


def test_checksum_sees_a_one_ulp_change():
    theta = torch.randn(1000)
    crc, total = parameter_checksum(theta)
    nudged = theta.clone()
    nudged[500] = torch.nextafter(nudged[500], torch.tensor(float("inf")))
    assert parameter_checksum(nudged)[0] != crc and parameter_checksum(theta.clone()) == (crc, total)
    assert parameter_checksum(theta.to(torch.bfloat16))[0] != crc  # any dtype is hashed by its bytes


def test_needs_an_initialised_process_group():
    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialised in this test process")
    with pytest.raises(OracleError, match="torchrun"):
        DistributedOracle(TorchOracle(MLP([4, 2]), cross_entropy))


@pytest.mark.parametrize("path", ["stacked", "loop", "vmap"])
def test_per_query_losses_do_not_depend_on_the_sharding(path):
    """The premise of exact equality with one process: a shard's losses equal the same rows of the full set."""
    torch.manual_seed(0)
    oracle = TorchOracle(MLP([64, 32, 10]), cross_entropy, path=path)
    batch = (torch.randn(64, 64), torch.randint(0, 10, (64,)))
    queries = SeedQueries(tuple(range(1, 21)) * 2, (0.01,) * 20 + (-0.01,) * 20)
    full = oracle.evaluate(queries, batch)
    for world in (2, 3):
        parts = [oracle.evaluate(sub_queries(queries, *shard_bounds(40, world, r)), batch) for r in range(world)]
        assert torch.equal(torch.cat(parts), full)


RANK_SCRIPT = textwrap.dedent("""
    import copy, glob, json, os, sys
    import torch
    import torch.distributed as dist
    from edgezo.estimators import RGE
    from edgezo.losses import cross_entropy
    from edgezo.models import MLP
    from edgezo.oracle import CoordQueries, OracleError, SeedQueries
    from edgezo.oracles.distributed import DistributedOracle, ParameterMismatch, QueryMismatch, parameter_checksum
    from edgezo.oracles.torch_oracle import TorchOracle
    from edgezo.trainer import DatasetBatches, Phase, TrainConfig, Trainer
    from edgezo.distributed import init_process_group, leaving_process_group

    rank, out_dir = int(os.environ["RANK"]), sys.argv[1]
    torch.set_num_threads(1)
    init_process_group("gloo", init_method=os.environ["INIT"], rank=rank, world_size=2)
    res = {}
    torch.manual_seed(rank)  # a different θ on each rank: the broadcast must replace rank 1's
    inner = TorchOracle(MLP([12, 16, 4]), cross_entropy, path="stacked")
    oracle = DistributedOracle(inner, checksum_every=0)
    res["theta_crc"] = parameter_checksum(oracle.get_flat())[0]
    ref = TorchOracle(copy.deepcopy(inner.model), cross_entropy, path="stacked")
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 12, generator=g), torch.randint(0, 4, (32,), generator=g))
    res["equal"] = []
    for q in (1, 5, 40):
        for queries in (SeedQueries(tuple(range(7, 7 + q)), (0.01,) * q, kind="gaussian"),
                        CoordQueries(tuple(range(q)), (1e-2,) * q)):
            res["equal"].append(torch.equal(oracle.evaluate(queries, batch), ref.evaluate(queries, batch)))
    res["stats"] = oracle.comm_stats()
    res["forward_passes"] = oracle.counters.forward_passes

    # training: every rank reaches the single-process parameters
    x, y = torch.randn(96, 12, generator=g), torch.randint(0, 4, (96,), generator=g)
    def train(o, opt):
        Trainer(o, [Phase(RGE(q=6, mu=1e-2), opt)], DatasetBatches(x, y, 32, seed=0), TrainConfig(epochs=2, seed=0),
                progress=False).run()
        return o.get_flat()
    for name, opt in (("seed-sgd", {"kind": "seed-sgd", "lr": 0.05}), ("adam", {"kind": "adam", "lr": 0.01})):
        torch.manual_seed(5)
        model = MLP([12, 16, 4])
        local = train(TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked"), opt)
        shared = train(DistributedOracle(TorchOracle(model, cross_entropy, path="stacked"), checksum_every=2), opt)
        res["train_" + name] = torch.equal(local, shared)

    # ranks on different steps: the query fingerprints differ
    try:
        oracle.evaluate(SeedQueries((rank,), (0.1,)), batch)
    except QueryMismatch as err:
        res["query_mismatch"] = str(err)

    # a parameter that drifts on rank 1 is caught by the periodic checksum (every 2 evaluations)
    periodic = DistributedOracle(inner, checksum_every=2)
    periodic.evaluate(SeedQueries((1, 2), (0.1, 0.1)), batch)  # evaluation 0: checked, equal
    if rank == 1:
        theta = inner.get_flat()
        theta[3] = torch.nextafter(theta[3], torch.tensor(float("inf")))
        inner.set_flat(theta)
    periodic.evaluate(SeedQueries((1, 2), (0.1, 0.1)), batch)  # evaluation 1: not checked
    try:
        periodic.evaluate(SeedQueries((1, 2), (0.1, 0.1)), batch)
    except ParameterMismatch as err:
        res["mismatch"] = str(err)
    res["checksum_bytes"] = periodic.comm_stats()["checksum_bytes_sent"]
    try:  # ranks that built different models
        DistributedOracle(TorchOracle(MLP([12, 16, 4 + rank]), cross_entropy))
    except OracleError as err:
        res["models_differ"] = str(err)
    with leaving_process_group():
        pass
    # torch.optim imported torch._dynamo after the group was made: its gloo threads must be gone all the same
    res["gloo_threads_left"] = [n for n in (open(t).read().strip() for t in glob.glob("/proc/self/task/*/comm"))
                                if "gloo" in n]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
""")


def run_ranks(tmp_path, script: str, world: int = 2, timeout: float = 180) -> list[dict]:
    path = tmp_path / "rank_script.py"
    path.write_text(script)
    env = dict(os.environ, INIT=f"file://{tmp_path / 'rendezvous'}", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(path), str(tmp_path)], env={**env, "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(world)]
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.mark.distributed
def test_two_gloo_ranks(tmp_path):
    r0, r1 = run_ranks(tmp_path, RANK_SCRIPT)
    for res in (r0, r1):
        assert res["theta_crc"] == r0["theta_crc"]  # θ broadcast from rank 0
        assert all(res["equal"]) and len(res["equal"]) == 6  # losses equal one process evaluating all queries
        assert res["train_seed-sgd"] and res["train_adam"]  # bit-identical training on every rank
        assert res["forward_passes"] == 2 * (1 + 5 + 40)  # counters: the whole step, both ranks
        # bytes: one ring all-gather of ⌈q/2⌉ + 1 float64 per evaluation
        assert res["stats"]["loss_bytes_sent"] == 2 * sum(8 * (-(-q // 2) + 1) for q in (1, 5, 40))
        assert "the ranks asked different queries" in res["query_mismatch"]
        assert "rank 1 differ from rank 0" in res["mismatch"] and "before evaluation 2" in res["mismatch"]
        assert res["checksum_bytes"] == 2 * 16  # two checks (evaluations 0 and 2), 16 bytes each
        assert "rank 0: 276, rank 1: 293" in res["models_differ"]
        if os.path.isdir("/proc/self/task"):  # Linux: the group's threads were joined before the interpreter exits
            assert res["gloo_threads_left"] == []
    assert r0["stats"]["rank_forward_passes"] + r1["stats"]["rank_forward_passes"] == r0["forward_passes"]
    assert r0["stats"]["broadcast_bytes_sent"] == 4 * (12 * 16 + 16 + 16 * 4 + 4)


@pytest.mark.distributed
def test_train_with_two_workers_matches_one_process(tmp_path, capfd):
    """`edgezo train --workers 2` (2 gloo ranks) ends with the parameters of the single-process run."""
    from edgezo.cli import main

    common = ["--estimator", "rge", "--set", "estimator.q=20", "--max-steps", "6", "--no-progress",
              "--set", 'oracle.path="stacked"']
    assert main(["train", "--out", str(tmp_path / "one")] + common) == 0
    assert main(["train", "--out", str(tmp_path / "two"), "--workers", "2"] + common) == 0
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert torch.equal(one["params"], two["params"])
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["workers"] == 2 and m2["forward_passes"] == m1["forward_passes"] == 6 * 40
    assert m2["test_accuracy"] == m1["test_accuracy"]
    assert m2["communication"]["loss_bytes_sent"] == 6 * 8 * 21  # 40 queries per step: (20 + 1) float64
    assert capfd.readouterr().out.count("digits-mlp: test_accuracy") == 2  # rank 1 prints nothing


@pytest.mark.distributed
@pytest.mark.slow
def test_torchrun_matches_one_process(tmp_path):
    """`torchrun --standalone --nproc_per_node=2 -m edgezo train` ends where one process does."""
    from edgezo.cli import main

    common = ["--estimator", "rge", "--set", "estimator.q=8", "--max-steps", "4", "--no-progress",
              "--set", 'oracle.path="stacked"']
    assert main(["train", "--out", str(tmp_path / "one")] + common) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "edgezo",
           "train", "--out", str(tmp_path / "two")] + common
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("test_accuracy") == 1  # only rank 0 reports
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert torch.equal(one["params"], two["params"])
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["workers"] == 2


def test_workers_flag_errors(tmp_path, capsys, monkeypatch):
    from edgezo.cli import main

    assert main(["train", "--out", str(tmp_path / "x"), "--workers", "0", "--max-steps", "1"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert main(["train", "--out", str(tmp_path / "y"), "--workers", "2", "--max-steps", "1"]) == 2
    assert "disagrees with WORLD_SIZE=3" in capsys.readouterr().err
