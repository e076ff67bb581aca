"""StagedOracle: feature reuse + batched coordinates return the TorchOracle's losses."""

import pytest
import torch
from edgezo.models import MLP
from edgezo.models.cnn import CNN
from edgezo.models.resnet import ResNetCifar

from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, SeedQueries
from edgezo.oracles.staged import COORD_PATHS, StagedOracle, staged_oracle_factory
from edgezo.oracles.torch_oracle import TorchOracle


def setup_cnn(seed=0, batch=12):
    torch.manual_seed(seed)
    model = CNN(3, 3, in_channels=1, image_size=8, min_size=2)
    x = torch.randn(batch, 1, 8, 8)
    y = torch.randint(0, 10, (batch,))
    return model, (x, y)


def all_coords(dim, mu=5e-3, step=1):
    coords = tuple(range(0, dim, step))
    return CoordQueries(coords, tuple(mu if i % 3 else -mu for i in coords))


@pytest.mark.parametrize("path", COORD_PATHS)
def test_every_coordinate_matches_torch_oracle_float64(f64, path):
    model, batch = setup_cnn()
    ref = TorchOracle(model, cross_entropy, path="loop")
    chunk = 37 if path in ("stacked", "delta") else None  # odd chunk sizes on purpose
    staged = StagedOracle(model, cross_entropy, path=path, max_copies=chunk)
    queries = all_coords(ref.dim, step=5 if path == "vmap" else 1)  # vmap is slow on CPU; a sample suffices
    assert (staged.evaluate(queries, batch) - ref.evaluate(queries, batch)).abs().max() < 1e-10
    assert staged.counters.forward_passes == len(queries)
    assert staged.counters.samples_forwarded == len(queries) * 12


def test_float32_matches_and_parameters_untouched():
    model, batch = setup_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = TorchOracle(model, cross_entropy, path="loop")
    staged = StagedOracle(model, cross_entropy)  # auto: times the paths per (tensor, q bucket, batch)
    queries = CoordQueries(tuple(range(100, 160)), (1e-2,) * 60)
    assert (staged.evaluate(queries, batch) - ref.evaluate(queries, batch)).abs().max() < 2e-6
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(v in COORD_PATHS for k, v in staged.choices.items() if k.startswith("coord:"))
    other = StagedOracle(model, cross_entropy)
    other.load_state_dict(staged.state_dict())
    assert other.choices == staged.choices


def test_resnet_blocks_match(f64):
    torch.manual_seed(1)
    model = ResNetCifar(1, (4, 8, 8))
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    ref = TorchOracle(model, cross_entropy, path="loop")
    staged = StagedOracle(model, cross_entropy)
    coords = tuple(range(0, ref.dim, 29))
    queries = CoordQueries(coords, (1e-3,) * len(coords))
    assert (staged.evaluate(queries, (x, y)) - ref.evaluate(queries, (x, y))).abs().max() < 1e-10


def test_cache_follows_parameter_updates_and_batches(f64):
    model, batch = setup_cnn()
    staged = StagedOracle(model, cross_entropy)
    ref = TorchOracle(model, cross_entropy, path="loop")
    queries = CoordQueries((0, 50, 200, ref.dim - 1), (1e-3,) * 4)
    assert abs(staged.loss(batch) - ref.loss(batch)) < 1e-12
    staged.evaluate(queries, batch)
    assert (staged.cache_misses, staged.cache_hits) == (1, 2)  # loss() filled the cache, evaluate reused it
    with torch.no_grad():  # an optimizer step: in place, as torch.optim does it
        for p in model.parameters():
            p.add_(0.01)
    assert (staged.evaluate(queries, batch) - ref.evaluate(queries, batch)).abs().max() < 1e-10
    staged.set_flat(staged.get_flat() * 0.9)
    assert (staged.evaluate(queries, batch) - ref.evaluate(queries, batch)).abs().max() < 1e-10
    other = setup_cnn(seed=5)[1]
    assert (staged.evaluate(queries, other) - ref.evaluate(queries, other)).abs().max() < 1e-10
    batch[0].mul_(2.0)  # the same batch tensor edited in place
    assert (staged.evaluate(queries, batch) - ref.evaluate(queries, batch)).abs().max() < 1e-10
    assert staged.cache_misses == 5


def test_seed_queries_match_torch_oracle(f64):
    model, batch = setup_cnn()
    ref = TorchOracle(model, cross_entropy, path="loop")
    staged = StagedOracle(model, cross_entropy, max_activation_elems=4000)  # forces chunks of a few copies
    queries = SeedQueries(tuple(range(9)), (0.0,) + (1e-2,) * 8, kind="gaussian")
    assert (staged.evaluate(queries, batch) - ref.evaluate(queries, batch)).abs().max() < 1e-10


def test_out_of_range_and_non_staged_models():
    model, batch = setup_cnn()
    staged = StagedOracle(model, cross_entropy)
    with pytest.raises(IndexError, match="out of range"):
        staged.evaluate(CoordQueries((staged.dim,), (1e-3,)), batch)
    with pytest.raises(ValueError, match="not a staged network"):
        StagedOracle(MLP([4, 3]), cross_entropy)
    with pytest.raises(ValueError, match="unknown evaluation path"):
        StagedOracle(model, cross_entropy, path="grouped")
    assert type(staged_oracle_factory(MLP([4, 3]), cross_entropy)) is TorchOracle
    assert type(staged_oracle_factory(model, cross_entropy, path="delta")) is StagedOracle
