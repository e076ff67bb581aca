"""The lean evaluation path: per-layer perturbations from forward hooks, compared with the stacked/loop paths.

Tolerances: the perturbed weights, θ after evaluation and q = 1 seed updates are
compared bit for bit; losses against the loop path (same kernels, same shapes)
bit for bit; against the stacked path (batched kernels) to 1e-6 absolute.
"""

import json

import pytest
import torch
from edgezo.models import MLP
from torch import nn

from edgezo.estimators import RGE
from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, OracleError, SeedQueries, SeedUpdate
from edgezo.oracles.lean import parse_memory, stacked_extra_bytes
from edgezo.oracles.torch_oracle import TorchOracle
from edgezo.trainer import DatasetBatches, Phase, TrainConfig, Trainer


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = MLP([8, 6, 5, 3])
    batch = (torch.randn(10, 8), torch.randint(0, 3, (10,)))
    return model, batch


QUERIES = [
    SeedQueries((11, 12, 11, 12), (0.1, 0.1, -0.1, -0.1), kind="rademacher"),
    SeedQueries((3, 4, 5), (0.0, 1e-2, 1e-2), kind="gaussian"),
    SeedQueries((7, 8), (0.05, -0.05), kind="sphere"),
    SeedQueries((9, 10), (0.2, -0.2), group="layers.1.*", kind="gaussian"),
    CoordQueries((0, 47, 100), (1e-2, -1e-2, 1e-2)),
]


def _oracle(model, path, groups=None):
    return TorchOracle(model, cross_entropy, path=path, groups=groups)


@pytest.mark.parametrize("queries", QUERIES, ids=lambda q: getattr(q, "kind", "coord") + str(getattr(q, "group", "")))
def test_lean_losses_equal_loop_and_stacked(setup, queries):
    model, batch = setup
    groups = {"l1": "layers.1.*"} if getattr(queries, "group", None) else None
    if groups:
        queries = SeedQueries(queries.seeds, queries.scales, "l1", queries.kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lean = _oracle(model, "lean", groups).evaluate(queries, batch)
    assert torch.equal(lean, _oracle(model, "loop", groups).evaluate(queries, batch))
    assert torch.allclose(lean, _oracle(model, "stacked", groups).evaluate(queries, batch), rtol=0, atol=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # θ never written


def test_perturbed_weights_are_the_stacked_rows_bit_for_bit(setup):
    model, batch = setup
    queries = SeedQueries((21, 22), (1e-3, -3e-3), kind="gaussian")
    seen = []
    handle = model.layers[1].register_forward_hook(lambda m, a, o: seen.append(m.weight.detach().clone()))
    lean = _oracle(model, "lean")
    lean.evaluate(queries, batch)
    handle.remove()
    stacked = _oracle(model, "stacked")
    rows = stacked.layout.split(stacked._perturbed(stacked.get_flat(), queries, 0, 2))
    name = next(n for n in rows if n.startswith("layers.1.") and n.endswith("weight"))
    assert len(seen) == 2 and all(torch.equal(seen[i], rows[name][i]) for i in range(2))


@pytest.mark.parametrize("kind", ["rademacher", "gaussian", "sphere"])
def test_seed_update_matches_stacked(setup, kind):
    model, _ = setup
    a, b = _oracle(model, "lean"), _oracle(MLP([8, 6, 5, 3]), "stacked")
    b.set_flat(a.get_flat())
    one = SeedUpdate((5,), (0.7,), None, kind)
    a.apply_seed_update(one, 0.1)
    b.apply_seed_update(one, 0.1)
    assert torch.equal(a.get_flat(), b.get_flat())  # q = 1: c·z is one rounding either way
    four = SeedUpdate((1, 2, 3, 4), (0.5, -0.25, 1.5, 0.125), None, kind)
    a.apply_seed_update(four, 0.1)
    b.apply_seed_update(four, 0.1)
    assert torch.allclose(a.get_flat(), b.get_flat(), rtol=0, atol=1e-6)  # Σ in seed order vs a matmul


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_rge_seed_sgd_training_matches_stacked(difference):
    torch.manual_seed(1)
    x, y = torch.randn(48, 8), torch.randint(0, 3, (48,))
    finals = {}
    for path in ("lean", "stacked"):
        torch.manual_seed(2)
        oracle = _oracle(MLP([8, 6, 3]), path)
        Trainer(oracle, [Phase(RGE(q=4, mu=1e-2, difference=difference, direction="gaussian"),
                               {"kind": "seed-sgd", "lr": 0.05})],
                DatasetBatches(x, y, 16, seed=0), TrainConfig(epochs=2, seed=0), progress=False).run()
        finals[path] = oracle.get_flat()
    assert torch.allclose(finals["lean"], finals["stacked"], rtol=0, atol=1e-5)


def test_budget_picks_lean_only_when_the_stacked_path_does_not_fit(setup):
    model, batch = setup
    queries = SeedQueries((1, 2, 3, 4), (0.1,) * 4)
    dim = sum(p.numel() for p in model.parameters())
    need = stacked_extra_bytes(dim, 4, 4, 4)
    tight = TorchOracle(model, cross_entropy, max_memory=need - 1)
    roomy = TorchOracle(model, cross_entropy, max_memory=f"{need}B")
    assert torch.allclose(tight.evaluate(queries, batch), roomy.evaluate(queries, batch), atol=1e-6)
    assert tight.choices == {"seed:q=4:b=10": "lean"}
    assert roomy.choices["seed:q=4:b=10"] in ("loop", "stacked", "vmap")
    assert TorchOracle(model, cross_entropy, max_memory="auto").max_memory > 0


def test_parse_memory():
    assert parse_memory("8GB") == 8 * 10**9 and parse_memory("1.5 GiB") == 3 * 2**29 and parse_memory(1024) == 1024
    assert parse_memory("auto") == "auto" and parse_memory(None) is None
    for bad in ("lots", "-1GB", 0, True, "8 parsecs"):
        with pytest.raises(ValueError, match="max_memory"):
            parse_memory(bad)


class _ReadsChildWeight(nn.Module):
    """A parent that reads its child's weight directly (the lean path cannot see this use)."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 3)

    def forward(self, x):
        return x @ self.inner.weight.T


def test_a_parameter_used_outside_its_module_is_refused():
    oracle = TorchOracle(_ReadsChildWeight(), cross_entropy, path="lean", groups={"w": "inner.weight"})
    with pytest.raises(OracleError, match="path='loop'"):
        oracle.evaluate(SeedQueries((1,), (0.1,), group="w"), (torch.randn(5, 4), torch.randint(0, 3, (5,))))
    assert isinstance(oracle.model.inner.weight, nn.Parameter)  # the original is back after the error


def test_tied_weights_are_perturbed_in_every_owner():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 4)
            self.head = nn.Linear(4, 7, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, x):
            return self.head(self.emb(x).mean(1))

    torch.manual_seed(0)
    model = Tied()
    batch = (torch.randint(0, 7, (6, 3)), torch.randint(0, 7, (6,)))
    queries = SeedQueries((4, 5), (0.1, -0.1), kind="gaussian")
    assert torch.equal(_oracle(model, "lean").evaluate(queries, batch),
                       _oracle(model, "loop").evaluate(queries, batch))


@pytest.mark.distributed
def test_two_workers_on_the_lean_path_match_one_process(tmp_path):
    from edgezo.cli import main

    common = ["--estimator", "rge", "--set", "estimator.q=8", "--max-steps", "3", "--no-progress",
              "--set", 'oracle.path="lean"', "--set", 'optimizer.kind="seed-sgd"', "--set", "optimizer.lr=0.01"]
    assert main(["train", "--out", str(tmp_path / "one")] + common) == 0
    assert main(["train", "--out", str(tmp_path / "two"), "--workers", "2"] + common) == 0
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    assert torch.equal(one["params"], two["params"])
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["workers"] == 2
