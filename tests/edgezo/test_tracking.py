"""--log tensorboard|csv and the per-epoch lines of a run whose stderr is not a terminal."""

import csv
import json

import pytest

from edgezo.cli import main
from edgezo.recipes import get_recipe

pytest.importorskip("tensorboard")


def test_tensorboard_events_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "--recipe", "digits-mlp-rge", "--out", str(out), "--epochs", "2", "--log", "tensorboard",
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/step_time_s", "train/forward_passes", "test/test_accuracy"} <= tags
    losses = acc.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, metrics["steps"] + 1))
    assert losses[-1].value == pytest.approx(metrics["final_train_loss"], rel=1e-6)
    assert acc.Scalars("test/test_accuracy")[-1].value == pytest.approx(metrics["test_accuracy"], rel=1e-6)
    assert acc.Scalars("train/forward_passes")[-1].value == metrics["forward_passes"]
    lrs = [e.value for e in acc.Scalars("train/lr")]
    assert lrs[0] == pytest.approx(get_recipe("digits-mlp-rge").config["optimizer"]["lr"], rel=1e-6)
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < lrs[0]  # the recipe's cosine schedule
    # estimator settings as hparams (the plugin's session-start summary lists them)
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["estimator.kind"].string_value == "rge" and hp["estimator.q"].number_value == 20


def test_csv_rows_match_the_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--max-steps", "5", "--log", "csv", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    steps = list(csv.DictReader((out / "steps.csv").open()))
    assert [int(r["step"]) for r in steps] == [1, 2, 3, 4, 5]
    assert float(steps[-1]["loss"]) == metrics["final_train_loss"]
    assert int(steps[-1]["forward_passes"]) == metrics["forward_passes"]
    evals = list(csv.DictReader((out / "evals.csv").open()))
    assert float(evals[-1]["test_accuracy"]) == metrics["test_accuracy"]


def test_unknown_log_kind(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--log", "wandb", "--max-steps", "1"]) == 2
    assert "unknown --log 'wandb'" in capsys.readouterr().err


def test_one_line_per_epoch_when_stderr_is_not_a_terminal(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--epochs", "3"]) == 0  # progress on, stderr captured
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(" · ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "test_accuracy" in lines[-1] and "\r" not in err  # no progress-bar redraws
