"""Forward parallelization across processes: cost-balanced split, (coordinate, difference) exchange."""

import pytest
import torch
from edgezo.models.cnn import CNN

from edgezo.adapters.deepzero.distributed import (
    DistributedCGE,
    balanced_split,
    coordinate_costs,
    split_summary,
    stage_costs,
)
from edgezo.adapters.deepzero.sparse_cge import SparseCGE
from edgezo.losses import cross_entropy
from edgezo.oracles.staged import StagedOracle


def problem():
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = CNN(2, 4, in_channels=1, image_size=8, min_size=2)
    batch = (torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    return model, batch


def sparse_estimator():
    return SparseCGE(mu=1e-4, sparsity=0.5, ratios="uniform")


def test_stage_costs_count_multiply_adds():
    model = CNN(2, 4, in_channels=1, image_size=8, min_size=2)
    # conv 1->4 on 8x8, conv 4->4 on 4x4 (after the first pool), linear 4->10
    assert stage_costs(model, torch.zeros(1, 1, 8, 8)) == [4 * 64 * 9, 4 * 16 * 36, 40]


def test_balanced_split_is_contiguous_and_balanced():
    coords = torch.arange(100)
    costs = torch.cat([torch.full((20,), 10.0), torch.ones(80)])  # heavy first stage
    parts = balanced_split(coords, costs, 3)
    assert torch.equal(torch.cat(parts), coords)
    loads = [s["cost"] for s in split_summary(parts, costs)]
    assert max(loads) - min(loads) <= 10.0 and abs(sum(loads) - 280.0) < 1e-9
    assert [p.numel() for p in balanced_split(torch.arange(5), None, 5)] == [1] * 5
    assert sum(p.numel() for p in balanced_split(torch.arange(0), None, 2)) == 0


def test_costs_follow_the_suffix():
    model, _ = problem()
    try:
        oracle = StagedOracle(model, cross_entropy)
        costs = coordinate_costs(oracle.layout, model, torch.zeros(1, 1, 8, 8))
        first = costs[oracle.layout.entry("stages.0.conv.weight").offset]
        last = costs[oracle.layout.entry("stages.2.fc.bias").offset]
        assert first == 4 * 64 * 9 + 4 * 16 * 36 + 40 + 1 and last == 41
    finally:
        torch.set_default_dtype(torch.float32)


def _worker(rank, world, init_file, out_dir):
    from edgezo.distributed import init_process_group, leaving_process_group

    torch.set_num_threads(1)
    init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    with leaving_process_group():
        model, batch = problem()
        oracle = StagedOracle(model, cross_entropy, path="delta")
        costs = coordinate_costs(oracle.layout, model, batch[0])
        est = DistributedCGE(sparse_estimator(), costs=costs).estimate(oracle, batch, step=2, seed=5)
        coords, values = est.coord_terms[0]
        theta = oracle.get_flat()
        theta[coords] -= 0.1 * values  # the same SGD step on every rank
        oracle.set_flat(theta)
        torch.save({"coords": coords, "values": values, "loss": est.loss, "info": est.info,
                    "theta": oracle.get_flat(), "passes": oracle.counters.forward_passes}, f"{out_dir}/rank{rank}.pt")


@pytest.mark.distributed
def test_two_gloo_ranks_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    try:
        model, batch = problem()
        oracle = StagedOracle(model, cross_entropy)
        ref = sparse_estimator().estimate(oracle, batch, step=2, seed=5)
    finally:
        torch.set_default_dtype(torch.float32)
    coords, values = ref.coord_terms[0]
    for r in (r0, r1):
        assert torch.equal(r["coords"], coords)
        assert (r["values"] - values).abs().max() < 1e-10
        assert abs(r["loss"] - ref.loss) < 1e-12
    assert torch.equal(r0["theta"], r1["theta"])
    # each rank evaluated its share plus its own centre point
    assert r0["passes"] + r1["passes"] == coords.numel() + 2
    assert min(r0["info"]["rank_coords"], r1["info"]["rank_coords"]) > 0


def test_needs_an_initialized_group():
    model, batch = problem()
    try:
        with pytest.raises(RuntimeError, match="init_process_group"):
            DistributedCGE(sparse_estimator()).estimate(StagedOracle(model, cross_entropy), batch, step=0, seed=0)
        with pytest.raises(TypeError, match="wraps a CGE"):
            DistributedCGE(object())
    finally:
        torch.set_default_dtype(torch.float32)
