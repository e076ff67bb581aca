import json

import pytest

from edgezo.cli import main

CONTRACT_KEYS = {"recipe", "estimator", "backend", "seed", "params", "forward_passes", "samples_forwarded",
                 "wall_s", "peak_rss_mb", "test_accuracy"}


def test_recipes_lists_the_default(capsys):
    assert main(["recipes"]) == 0
    assert "digits-mlp" in capsys.readouterr().out


def test_train_writes_contract_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "2", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert CONTRACT_KEYS <= metrics.keys()
    assert metrics["recipe"] == "digits-mlp" and metrics["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert (out / "checkpoint.pt").exists() and (out / "curves.png").stat().st_size > 1000
    assert "test_accuracy" in capsys.readouterr().out
    # the same --out again is refused without --resume/--force, and nothing is lost
    before = (out / "checkpoint.pt").read_bytes()
    assert main(["train", "--out", str(out), "--epochs", "2", "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before


def test_fo_baseline_on_the_same_recipe(tmp_path):
    out = tmp_path / "fo"
    assert main(["train", "--out", str(out), "--estimator", "fo", "--epochs", "2", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["estimator"] == "fo" and metrics["forward_passes"] == metrics["steps"]


@pytest.mark.parametrize("extra", [[], ["--set", 'fo_optimizer.kind="sgd"']])
def test_fo_optimizer_overrides_reach_the_fo_baseline(tmp_path, extra):
    """`--estimator fo` trains with [fo_optimizer]: `--set fo_optimizer.lr` must change its learning rate
    (digits-mlp has no [fo_optimizer]: the recipe's Adam is the base the override edits)."""
    import torch

    out = tmp_path / "fo"
    argv = ["train", "--out", str(out), "--estimator", "fo", "--max-steps", "2", "--no-progress",
            "--set", "fo_optimizer.lr=0.0123", *extra]
    assert main(argv) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=False)["optimizer"]
    assert state["param_groups"][0]["initial_lr"] == 0.0123
    assert ("betas" in state["param_groups"][0]) == (not extra)  # Adam kept, or the kind overridden too


@pytest.mark.parametrize("argv,message", [
    (["train", "--recipe", "nope"], "unknown recipe 'nope'"),
    (["train", "--resume"], "--resume needs --out"),
    (["train", "--set", "estimator.q"], "--set expects KEY=VALUE"),
    (["train", "--estimator", "magic", "--epochs", "1"], "unknown estimator 'magic'"),
    (["train", "--recipe", "missing.toml"], "does not exist"),
])
def test_bad_input_gives_clear_errors(tmp_path, capsys, argv, message):
    assert main(argv + ["--out", str(tmp_path / "x")] if "--resume" not in argv else argv) == 2
    assert message in capsys.readouterr().err


def test_resume_without_checkpoint(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--resume", "--no-progress"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_malformed_recipe_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[model\n")
    assert main(["train", "--recipe", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not valid TOML" in capsys.readouterr().err
