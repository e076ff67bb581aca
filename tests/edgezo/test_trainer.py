import pytest
import torch
from edgezo.models import MLP

from edgezo.estimators import CGE, RGE, FirstOrder
from edgezo.losses import cross_entropy
from edgezo.oracles.torch_oracle import TorchOracle
from edgezo.trainer import (
    DatasetBatches,
    Phase,
    ResumeError,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    classification_evaluator,
)


def make_trainer(digits, out_dir=None, *, estimator=None, optimizer=None, epochs=2, phases=None, batches=None,
                 checkpoint_every=0, path="stacked"):
    torch.manual_seed(0)
    model = MLP([64, 16, 10])
    oracle = TorchOracle(model, cross_entropy, path=path)
    config = TrainConfig(epochs=epochs, batch_size=128, seed=5, checkpoint_every=checkpoint_every)
    phases = phases or [Phase(estimator or RGE(q=8), optimizer or {"kind": "adam", "lr": 3e-3})]
    batches = batches or DatasetBatches(digits.x_train, digits.y_train, 128, 5)
    return Trainer(oracle, phases, batches, config, out_dir=out_dir, progress=False,
                   evaluator=classification_evaluator(digits.x_test, digits.y_test))


class Interrupting:
    """A batch source that raises KeyboardInterrupt at a given step (a killed run)."""

    def __init__(self, inner, at_step):
        self.inner, self.at_step, self.steps_per_epoch = inner, at_step, inner.steps_per_epoch

    def get(self, epoch, index, step):
        if step == self.at_step:
            raise KeyboardInterrupt
        return self.inner.get(epoch, index, step)


class Poisoning(Interrupting):
    """Returns a batch full of NaN at a given step."""

    def get(self, epoch, index, step):
        x, y = self.inner.get(epoch, index, step)
        return (x * float("nan"), y) if step == self.at_step else (x, y)


def test_resume_reaches_exactly_the_uninterrupted_parameters(digits, tmp_path):
    full = make_trainer(digits, tmp_path / "full", checkpoint_every=3)
    full.run()
    batches = Interrupting(DatasetBatches(digits.x_train, digits.y_train, 128, 5), at_step=13)
    broken = make_trainer(digits, tmp_path / "cut", checkpoint_every=3, batches=batches)
    with pytest.raises(KeyboardInterrupt):
        broken.run()
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]["step"] == 12
    resumed = make_trainer(digits, tmp_path / "cut", checkpoint_every=3)
    m = resumed.run(resume=True)
    assert torch.equal(resumed.oracle.get_flat(), full.oracle.get_flat())
    assert m["forward_passes"] == full.metrics()["forward_passes"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(digits, tmp_path):
    batches = Poisoning(DatasetBatches(digits.x_train, digits.y_train, 128, 5), at_step=7)
    t = make_trainer(digits, tmp_path, checkpoint_every=5, batches=batches)
    with pytest.raises(TrainingDiverged, match="non-finite .* step 7.*last good checkpoint.*step 5"):
        t.run()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["step"] == 5
    assert torch.isfinite(t.oracle.get_flat()).all()


def test_resume_refuses_other_configuration(digits, tmp_path):
    make_trainer(digits, tmp_path, epochs=1).run()
    other = make_trainer(digits, tmp_path, epochs=1, estimator=RGE(q=9))
    with pytest.raises(ResumeError, match="other settings"):
        other.run(resume=True)
    with pytest.raises(ResumeError, match="no checkpoint"):
        make_trainer(digits, tmp_path / "empty").run(resume=True)


@pytest.mark.parametrize("estimator,optimizer", [
    (RGE(q=10), {"kind": "adam", "lr": 3e-3}),
    (RGE(q=10), {"kind": "sgd", "lr": 0.05, "momentum": 0.9}),
    (RGE(q=10, difference="forward"), {"kind": "sign-sgd", "lr": 1e-2}),
    (RGE(q=10), {"kind": "seed-sgd", "lr": 0.05}),
    (CGE(), {"kind": "adam", "lr": 3e-3}),
    (FirstOrder(), {"kind": "adam", "lr": 3e-3}),
])
def test_training_lowers_the_loss(digits, estimator, optimizer):
    t = make_trainer(digits, estimator=estimator, optimizer=optimizer, epochs=3)
    before = t.evaluator(t.oracle)["test_loss"]
    m = t.run()
    assert m["test_loss"] < before - 0.05
    assert m["forward_passes"] > 0 and m["samples_forwarded"] >= m["forward_passes"]


def test_phases_switch_at_declared_epoch(digits):
    phases = [Phase(RGE(q=4), {"kind": "sign-sgd", "lr": 1e-3}, 0), Phase(CGE(), {"kind": "adam", "lr": 1e-3}, 1)]
    t = make_trainer(digits, phases=phases, epochs=2)
    seen = []
    orig = t._enter_phase
    t._enter_phase = lambda i: (seen.append((t.state.step, i)), orig(i))
    t.run()
    assert seen == [(0, 0), (t.batches.steps_per_epoch, 1)]
    assert t.metrics()["estimator"] == "rge+cge"


def test_phase_order_validated(digits):
    with pytest.raises(ValueError, match="phases must start at epoch 0"):
        make_trainer(digits, phases=[Phase(RGE(), {"kind": "adam"}, 1)])
