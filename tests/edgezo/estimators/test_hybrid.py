"""Hybrid (per-group) gradient estimation and the estimator schedule of a recipe.

Deterministic: the CGE parts are compared with a standalone CGE and with
autograd (float64, forward difference with μ = 1e-6: error O(μ)); the RGE parts
with a standalone RGE built with the same seeds (bit-identical).
"""

import pytest
import torch
from edgezo.models.ttm import TTMLP

from edgezo.estimators import CGE, RGE, build_estimator
from edgezo.estimators.hybrid import Hybrid
from edgezo.losses import cross_entropy
from edgezo.oracles.torch_oracle import TorchOracle
from edgezo.recipes import build_trainer, parse_recipe

F64 = torch.float64


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = TTMLP([([2, 4], [2, 4], 2), (8, 3)], activation="tanh", dtype=F64)
    batch = (torch.randn(16, 8, dtype=F64), torch.randint(0, 3, (16,)))
    return model, batch


def test_registered_and_repr_shows_options():
    est = build_estimator({"kind": "hybrid", "cge_below": 100})
    assert isinstance(est, Hybrid)
    assert repr(est) == "Hybrid(cge_below=100)"


def test_all_cge_equals_plain_cge_with_one_shared_center(setup):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, groups="per_tensor")
    hybrid = Hybrid(cge_below=10**9, cge={"kind": "cge", "mu": 1e-6})
    est = hybrid.estimate(oracle, batch, step=0, seed=0)
    ref = CGE(mu=1e-6).estimate(TorchOracle(model, cross_entropy), batch, step=0, seed=0)
    torch.testing.assert_close(est.to_dense(oracle.layout, dtype=F64), ref.to_dense(oracle.layout, dtype=F64),
                               rtol=0, atol=1e-9)
    # one CGE block per tensor, but the loss at θ is evaluated once: dim + 1 passes
    assert len(hybrid.plan(oracle.layout)) == len(oracle.layout.entries)
    assert est.forward_passes == oracle.dim + 1 == oracle.counters.forward_passes
    _, grad = oracle.autograd(batch)
    assert torch.allclose(est.to_dense(oracle.layout, dtype=F64), grad, atol=1e-4)


def test_biases_by_cge_rest_by_rge(setup):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, groups="per_tensor")
    rge_spec = {"kind": "rge", "q": 4, "mu": 1e-3, "difference": "forward"}
    hybrid = Hybrid(assign=[{"groups": ["*bias"], "estimator": {"kind": "cge", "mu": 1e-6}}], default=rge_spec)
    est = hybrid.estimate(oracle, batch, step=3, seed=7)
    layout = oracle.layout
    bias = [g.name for g in layout.groups if g.name.endswith("bias")]
    rest = [g.name for g in layout.groups if g.name not in bias]
    assert [row["groups"] for row in hybrid.describe(layout)] == [rest, bias]  # first appearance

    g = est.to_dense(layout, dtype=F64)
    _, grad = oracle.autograd(batch)
    for name in bias:  # CGE part: the exact gradient up to O(μ)
        grp = layout.group(name)
        assert torch.allclose(g[grp.offset:grp.stop], grad[grp.offset:grp.stop], atol=1e-4)
    assert {t.group for t in est.seed_terms} == set(rest)
    # RGE part: what a standalone RGE on those groups (same salt, same seeds) returns
    alone = RGE(**{k: v for k, v in rge_spec.items() if k != "kind"}, groups=rest, salt=1)
    ref = alone.estimate(TorchOracle(model, cross_entropy, groups="per_tensor"), batch, step=3, seed=7)
    assert [t.seeds for t in est.seed_terms] == [t.seeds for t in ref.seed_terms]
    # equal up to round-off: the shared center comes from another stacked evaluation
    torch.testing.assert_close(torch.tensor([t.coeffs for t in est.seed_terms]),
                               torch.tensor([t.coeffs for t in ref.seed_terms]), rtol=0, atol=1e-8)
    # passes: a single center, then len(rest) * q perturbed points and one per bias entry
    n_bias = sum(layout.group(n).numel for n in bias)
    assert est.forward_passes == 1 + 4 * len(rest) + n_bias == oracle.counters.forward_passes - 1


def test_layerwise_default_and_size_threshold(setup):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, groups="per_tensor")
    sizes = oracle.layout.counts()
    hybrid = Hybrid(cge_below=10)  # default: layer-wise forward RGE, q = 10, over the big groups
    plan = {row["rule"]: row for row in hybrid.describe(oracle.layout)}
    assert set(plan["cge_below=10"]["groups"]) == {n for n, s in sizes.items() if s < 10}
    big = [n for n, s in sizes.items() if s >= 10]
    assert plan["default"]["groups"] == big
    for step in range(len(big)):
        est = hybrid.estimate(oracle, batch, step=step, seed=0)
        assert [t.group for t in est.seed_terms] == [big[step]]  # one group per step, round robin


def test_fo_part_is_restricted_to_its_groups(setup):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, groups="per_tensor")
    hybrid = Hybrid(assign=[{"groups": ["layers.1.*"], "estimator": {"kind": "fo"}}],
                    default={"kind": "cge", "mu": 1e-6})
    g = hybrid.estimate(oracle, batch, step=0, seed=0).to_dense(oracle.layout, dtype=F64)
    _, grad = oracle.autograd(batch)
    assert torch.allclose(g, grad, atol=1e-4)


def test_bad_specs_raise_clear_errors(setup):
    model, batch = setup
    oracle = TorchOracle(model, cross_entropy, groups="per_tensor")
    with pytest.raises(ValueError, match="matches no parameter group; the groups are: layers.0.core0"):
        Hybrid(assign=[{"groups": ["*norm*"], "estimator": "cge"}]).estimate(oracle, batch, step=0, seed=0)
    with pytest.raises(ValueError, match="assigns groups itself"):
        Hybrid(default={"kind": "rge", "groups": ["a"]})
    with pytest.raises(ValueError, match="cannot contain another hybrid"):
        Hybrid(assign=[{"groups": ["*"], "estimator": {"kind": "hybrid"}}])
    with pytest.raises(ValueError, match="exactly 'groups' and 'estimator'"):
        Hybrid(assign=[{"group": ["*"], "estimator": "cge"}])
    with pytest.raises(ValueError, match="cge_below must be a positive int"):
        Hybrid(cge_below=0)
    with pytest.raises(ValueError, match="unknown estimator 'rgee'"):
        Hybrid(default="rgee")
    with pytest.raises(ValueError, match="cge_split"):
        Hybrid(cge_split="coord")


SCHEDULE = """
name = "tiny-hybrid"
description = "test"
groups = "per_tensor"
[data]
name = "digits"
[model]
kind = "tt-mlp"
layer_specs = [[[4, 4, 4], [2, 2, 2], 2], [8, 10]]
[[phases]]
start_epoch = 0
estimator = { kind = "rge", q = 4, difference = "forward", layerwise = "cycle" }
optimizer = { kind = "sign-sgd", lr = 0.001 }
[[phases]]
start_epoch = 1
estimator = { kind = "hybrid", cge_below = 100, default = { kind = "rge", q = 2 } }
optimizer = { kind = "adam", lr = 0.001 }
[oracle]
path = "stacked"
[train]
epochs = 2
batch_size = 256
"""


def test_recipe_schedule_switches_estimator_at_the_declared_epoch():
    trainer = build_trainer(parse_recipe(SCHEDULE), progress=False)
    seen = []
    for phase in trainer.phases:
        orig = phase.estimator.estimate

        def spy(oracle, batch, *, step, seed, _orig=orig, _name=phase.estimator.name):
            est = _orig(oracle, batch, step=step, seed=seed)
            seen.append((step, _name, est.forward_passes, bool(est.coord_terms)))
            return est

        phase.estimator.estimate = spy
    metrics = trainer.run()
    spe = trainer.batches.steps_per_epoch
    assert [s[1] for s in seen] == ["rge"] * spe + ["hybrid"] * spe
    assert all(p == 5 and not c for _, _, p, c in seen[:spe])  # q + 1 passes, seeds only
    assert all(c for *_, c in seen[spe:])  # the hybrid phase adds coordinate terms
    assert metrics["estimator"] == "rge+hybrid"
    assert metrics["forward_passes"] == sum(s[2] for s in seen)
    assert isinstance(trainer.optimizer, torch.optim.Adam)
