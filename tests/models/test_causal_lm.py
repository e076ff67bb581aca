"""GPT-2 from a config (tiny, random init) through the lean oracle path; skipped without transformers."""

import pytest
import torch

pytest.importorskip("transformers")

from edgezo.models import build_model  # noqa: E402

from edgezo.estimators import RGE  # noqa: E402
from edgezo.losses import next_token  # noqa: E402
from edgezo.oracle import SeedQueries  # noqa: E402
from edgezo.oracles.torch_oracle import TorchOracle  # noqa: E402
from edgezo.trainer import DatasetBatches, Phase, TrainConfig, Trainer  # noqa: E402


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = build_model({"kind": "gpt2", "size": "tiny", "vocab_size": 61, "context": 12})
    ids = torch.randint(0, 61, (4, 12))
    return model, (ids, ids)


def test_next_token_loss_matches_a_manual_shifted_cross_entropy(tiny):
    model, (ids, _) = tiny
    with torch.no_grad():
        logits = model(ids)
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 61), ids[:, 1:].reshape(-1))
    assert torch.allclose(next_token(logits, ids), manual, rtol=1e-6)
    stacked = next_token(torch.stack([logits, 2 * logits]), ids)
    assert stacked.shape == (2,) and torch.allclose(stacked[0], manual, rtol=1e-6)


def test_lean_path_equals_loop_path_and_leaves_theta_alone(tiny):
    model, batch = tiny
    queries = SeedQueries((1, 2, 1, 2), (1e-2, 1e-2, -1e-2, -1e-2), kind="gaussian")
    lean = TorchOracle(model, next_token, path="lean")
    before = lean.get_flat()
    losses = lean.evaluate(queries, batch)
    assert torch.equal(losses, TorchOracle(model, next_token, path="loop").evaluate(queries, batch))
    assert torch.equal(lean.get_flat(), before)
    assert model.lm.lm_head.weight is model.lm.transformer.wte.weight  # tied, perturbed in both owners


def test_zo_fine_tuning_lowers_the_loss_on_a_repeated_sequence(tiny):
    model, _ = tiny
    ids = torch.arange(12).repeat(8, 1) % 61  # one sequence: its next token is always predictable
    oracle = TorchOracle(model, next_token, max_memory=1)  # any budget below θ's size picks the lean path
    start = oracle.loss((ids, ids))
    Trainer(oracle, [Phase(RGE(q=4, mu=1e-3, direction="gaussian"), {"kind": "seed-sgd", "lr": 1e-2})],
            DatasetBatches(ids, ids, 8, seed=0), TrainConfig(epochs=12, seed=0), progress=False).run()
    assert set(oracle.choices.values()) == {"lean"}
    assert oracle.loss((ids, ids)) < start - 0.05
