import pytest
import torch
from edgezo.models import MLP
from torch import nn
from torch.func import functional_call

from edgezo.directions import directions
from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, SeedQueries, SeedUpdate
from edgezo.oracles.torch_oracle import TorchOracle


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = MLP([8, 6, 3])
    batch = (torch.randn(10, 8), torch.randint(0, 3, (10,)))
    return model, batch


def reference_loss(model, theta, batch, layout):
    params = {k: v for k, v in layout.split(theta).items()}
    return float(cross_entropy(functional_call(model, params, (batch[0],)), batch[1]))


@pytest.mark.parametrize("path", ["loop", "stacked", "vmap"])
def test_seed_queries_match_manual_perturbation(setup, path):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, path=path)
    theta = oracle.get_flat()
    seeds, scales = (11, 12, 13), (0.1, -0.1, 0.0)
    losses = oracle.evaluate(SeedQueries(seeds, scales), batch)
    z = directions(list(seeds), 0, oracle.dim, "rademacher")
    for i in range(3):
        ref = reference_loss(model, theta + scales[i] * z[i], batch, oracle.layout)
        assert abs(float(losses[i]) - ref) < 1e-5
    assert oracle.counters.forward_passes == 3 and oracle.counters.samples_forwarded == 30


@pytest.mark.parametrize("path", ["loop", "stacked", "vmap"])
def test_parameters_restored_bit_exactly_float32(setup, path):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, path=path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(20):
        oracle.evaluate(SeedQueries((step, step + 100), (1e-3, -1e-3), kind="gaussian"), batch)
        oracle.evaluate(CoordQueries((step, step + 1), (1e-3, -1e-3)), batch)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_group_queries_touch_only_the_group(setup):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, groups={"last": "layers.1.*"}, path="stacked")
    g = oracle.layout.group("last")
    theta = oracle.get_flat()
    loss = oracle.evaluate(SeedQueries((5,), (0.5,), group="last"), batch)
    z = directions([5], g.offset, g.numel, "rademacher")[0]
    pert = theta.clone()
    pert[g.offset : g.stop] += 0.5 * z
    assert abs(float(loss[0]) - reference_loss(model, pert, batch, oracle.layout)) < 1e-5


def test_paths_agree_and_auto_records_choice(setup):
    model, batch = setup
    q = SeedQueries(tuple(range(8)), (0.01,) * 8)
    vals = {p: TorchOracle(model, cross_entropy, path=p).evaluate(q, batch) for p in ("loop", "stacked", "vmap")}
    assert torch.allclose(vals["loop"], vals["stacked"], atol=1e-6)
    assert torch.allclose(vals["loop"], vals["vmap"], atol=1e-6)
    auto = TorchOracle(model, cross_entropy)
    auto.evaluate(q, batch)
    (key, choice), = auto.choices.items()
    assert choice in ("loop", "stacked", "vmap") and key == "seed:q=8:b=10"
    other = TorchOracle(model, cross_entropy)
    other.load_state_dict(auto.state_dict())
    assert other.choices == auto.choices


def test_coordinate_queries_and_chunking(setup):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, path="stacked", max_stack_elems=3 * 81)
    theta = oracle.get_flat()
    coords = tuple(range(0, oracle.dim, 7))
    losses = oracle.evaluate(CoordQueries(coords, (0.2,) * len(coords)), batch)
    for i, c in enumerate(coords):
        pert = theta.clone()
        pert[c] += 0.2
        assert abs(float(losses[i]) - reference_loss(model, pert, batch, oracle.layout)) < 1e-5
    with pytest.raises(IndexError):
        oracle.evaluate(CoordQueries((oracle.dim,), (0.1,)), batch)


def test_seed_update_matches_dense_step(setup):
    model, _ = setup
    oracle = TorchOracle(model, cross_entropy)
    theta = oracle.get_flat()
    upd = SeedUpdate((1, 2, 3), (0.5, -1.0, 2.0), kind="gaussian")
    oracle.apply_seed_update(upd, lr=0.1)
    z = directions([1, 2, 3], 0, oracle.dim, "gaussian")
    expected = theta - 0.1 * (torch.tensor([0.5, -1.0, 2.0]) @ z)
    assert torch.allclose(oracle.get_flat(), expected, atol=1e-6)


def test_query_validation():
    with pytest.raises(ValueError, match="uint32"):
        SeedQueries((-1,), (0.1,))
    with pytest.raises(ValueError, match="2 seeds but 1 scales"):
        SeedQueries((1, 2), (0.1,))
    with pytest.raises(ValueError, match="forward_stacked"):
        TorchOracle(nn.Linear(2, 2), cross_entropy, path="stacked")
    with pytest.raises(ValueError, match="unknown evaluation path"):
        TorchOracle(nn.Linear(2, 2), cross_entropy, path="fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(setup):
    model, batch = setup
    q = SeedQueries(tuple(range(4)), (0.01,) * 4)
    cpu = TorchOracle(model, cross_entropy, path="stacked").evaluate(q, batch)
    gpu = TorchOracle(MLP([8, 6, 3]).cuda().requires_grad_(True), cross_entropy, path="stacked")
    gpu.set_flat(TorchOracle(model, cross_entropy).get_flat())
    assert torch.allclose(gpu.evaluate(q, batch).cpu(), cpu, atol=1e-5)


def test_coord_path_delta_matches_the_block_path_on_a_tt_mlp():
    from edgezo.models.ttm import TTMLP

    torch.manual_seed(3)
    net = TTMLP([([2, 3, 4], [3, 2, 2], 3), ([3, 4], [2, 5], 2)]).double()
    batch = (torch.randn(12, 24, dtype=torch.float64), torch.randint(0, 10, (12,)))
    block = TorchOracle(net, cross_entropy, path="stacked")
    delta = TorchOracle(net, cross_entropy, path="stacked", coord_path="delta")
    coords = tuple(range(0, block.dim, 3)) + (5, 5)  # every tensor, one coordinate twice
    queries = CoordQueries(coords, tuple(0.01 * (1 + i % 4) * (-1) ** i for i in range(len(coords))))
    expected = block.evaluate(queries, batch)
    got = delta.evaluate(queries, batch)
    center = block.loss(batch)
    assert (expected - center).abs().max() > 1e-4
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)
    assert delta.counters.forward_passes == len(coords)
    assert delta.counters.samples_forwarded == 12 * len(coords)


def test_coord_path_delta_needs_forward_coordinates(setup):
    model, _ = setup
    with pytest.raises(ValueError, match="forward_coordinates"):
        TorchOracle(model, cross_entropy, coord_path="delta")
    with pytest.raises(ValueError, match="coord_path"):
        TorchOracle(model, cross_entropy, coord_path="fast")


def test_coord_path_delta_rejects_out_of_range_coordinates():
    from edgezo.models.ttm import TTMLP

    net = TTMLP([([2, 3], [2, 2], 2)])
    oracle = TorchOracle(net, cross_entropy, path="stacked", coord_path="delta")
    with pytest.raises(IndexError, match="out of range"):
        oracle.evaluate(CoordQueries((oracle.dim,), (0.1,)), (torch.randn(2, 6), torch.tensor([0, 1])))
