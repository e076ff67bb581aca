"""The CLI refuses bad input with one line and exit status 2 (never a traceback); recipes have a schema."""

import json
import subprocess
import sys

import pytest
import torch

from edgezo import recipes as R
from edgezo.cli import main
from edgezo.recipe_schema import RecipeSchema, json_schema


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("edgezo: error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv,fragments", [
    (["--set", "train.epoch=3"], ["unknown key 'train.epoch'", "did you mean 'train.epochs'"]),
    (["--set", "epochs=3"], ["unknown key 'epochs'", "did you mean 'train.epochs'"]),
    (["--set", "trian.epochs=3"], ["unknown key 'trian'", "did you mean 'train'"]),
    (["--set", "estimator.muu=0.1"], ["'muu' is not an option of estimator 'cge'", "did you mean 'mu'"]),
    (["--set", "model.sise=[1]"], ["'sise' is not an option of model 'mlp'", "did you mean 'sizes'"]),
    (["--set", "train.epochs=2.5"], ["train.epochs", "valid integer", "2.5"]),
    (["--set", "train.batch_size=ten"], ["train.batch_size", "valid integer", "'ten'"]),
    (["--set", "optimizer.lr=nan"], ["optimizer.lr", "finite number"]),
    (["--set", "=3"], ["is not a key"]),
    (["--epochs", "0"], ["train.epochs", "greater than 0"]),
    (["--epochs", "-2"], ["train.epochs", "greater than 0"]),
    (["--max-steps", "0"], ["train.max_steps", "greater than 0"]),
    (["--batch-size", "0"], ["train.batch_size", "greater than 0"]),
    (["--set", "train.seed=99999999999999999999"], ["train.seed"]),
    (["--set", "task=pinn"], ["task 'pinn' needs a [pde] table"]),
    (["--set", "data.train=5"], ["data.train sets the solver task's initial conditions"]),
    (["--set", "oracle.path=nope", "--epochs", "1"], ["unknown evaluation path 'nope'"]),
    (["--set", "model.sizes=[65, 10]", "--epochs", "1"], ["does not take this data set's samples of shape [64]"]),
    (["--set", "model.sizes=[64, 10, 3]", "--epochs", "1"], ["the model has 3 outputs, the data set 10 classes"]),
    (["--set", "estimator.coords=[99999]", "--epochs", "1"], ["estimator.coords", "[0, 2410)"]),
])
def test_train_refuses_bad_overrides(tmp_path, capsys, argv, fragments):
    assert main(["train", "--out", str(tmp_path / "run"), "--no-progress", *argv]) == 2
    line = _one_error_line(capsys)
    for fragment in fragments:
        assert fragment in line, line
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("body,fragments", [
    ("[train]\nepochs = \"5\"\n", ["train.epochs", "valid integer", "'5' (str)"]),
    ("[train]\nbatch_size = 1.5\n", ["train.batch_size", "valid integer"]),
    ("[model]\nkind = \"mlp\"\nsizes = [64, 0, 10]\n", ["model.sizes.1", "greater than 0"]),
    ("[optimizer]\nkind = \"adamm\"\n", ["unknown optimizer 'adamm'", "did you mean 'adam'"]),
    ("[train]\nepoch = 3\n", ["unknown key 'train.epoch'", "did you mean 'train.epochs'"]),
    ("[estimator.x]\n", ["'x' is not an option of estimator 'rge'"]),
])
def test_recipe_file_errors_name_the_field_and_type(tmp_path, capsys, body, fragments):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\ndescription = "d"\n[estimator]\nkind = "rge"\n' + body)
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys)
    assert str(recipe) in line
    for fragment in fragments:
        assert fragment in line, line


def test_out_that_is_a_file(tmp_path, capsys):
    taken = tmp_path / "file"
    taken.write_text("keep me")
    assert main(["train", "--out", str(taken), "--epochs", "1", "--no-progress"]) == 2
    assert "is a file, not a directory" in _one_error_line(capsys)
    assert taken.read_text() == "keep me"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_unavailable_device(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--device", "cuda", "--epochs", "1"]) == 2
    assert "no usable CUDA device" in _one_error_line(capsys)
    assert main(["train", "--out", str(tmp_path / "run"), "--device", "tpu:x", "--epochs", "1"]) == 2
    assert "--device" in _one_error_line(capsys)


def test_robustify_set_uses_the_same_syntax(tmp_path, capsys):
    base = ["robustify", "--onnx", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "o")]
    assert main(base + ["--set", "batch_sise=4"]) == 2
    assert "did you mean 'batch_size'" in _one_error_line(capsys)
    assert main(base + ["--set", "batch_size=4.5"]) == 2
    assert "'batch_size' must be an integer" in _one_error_line(capsys)
    assert main(base + ["--set", "radii=[0.25, \"x\"]"]) == 2
    assert "'radii' must be a list of finite numbers" in _one_error_line(capsys)


def test_every_shipped_recipe_validates():
    names = sorted(R.recipes())
    assert len(names) >= 10
    for name in names:
        RecipeSchema.model_validate(R.get_recipe(name).config)


def test_schema_command_prints_json_schema(capsys):
    assert main(["recipes", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json_schema()
    assert schema["additionalProperties"] is False and "train" in schema["properties"]
    train = schema["$defs"]["TrainSection"]["properties"]["epochs"]
    assert train["type"] == "integer" and train["exclusiveMinimum"] == 0


def test_no_traceback_from_a_real_process(tmp_path):
    """The installed entry point, not only main(): a typo gives one stderr line and exit status 2."""
    proc = subprocess.run([sys.executable, "-m", "edgezo", "train", "--set", "train.epoch=1", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("edgezo: error:")
