"""The checkpoint module: atomic, versioned, fingerprinted, and never running code from a file."""

import pytest
import torch

from edgezo import checkpoint
from edgezo.cli import main
from edgezo.errors import CheckpointError


class Payload:
    """Unpickling this object would create ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _header(**changes):
    text = checkpoint.settings_json({"a": 1})
    header = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "kind": "train", "settings": text,
              "fingerprint": checkpoint.fingerprint({"a": 1})}
    header.update(changes)
    return header


def test_round_trip_and_settings_check(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, "train", {"params": torch.arange(3.0), "state": {"step": 4}}, settings={"a": 1, "b": [2]})
    got = checkpoint.load(path, "train", settings={"a": 1, "b": [2]}, required=("params",))
    assert torch.equal(got["params"], torch.arange(3.0)) and got["state"] == {"step": 4}
    with pytest.raises(CheckpointError, match=r"c\.pt: written by a run with other settings \(differs in: b\)"):
        checkpoint.load(path, "train", settings={"a": 1, "b": [3]})
    with pytest.raises(CheckpointError, match="a 'train' checkpoint, not a 'robustify' one"):
        checkpoint.load(path, "robustify")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    torch.save({"edgezo": _header(), "params": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: .*never runs code"):
        checkpoint.load(path, "train")
    assert not marker.exists()


@pytest.mark.parametrize("damage,message", [
    ("truncate", "truncated or corrupt"),
    ("text", "not an edgezo checkpoint"),
    ("version", "format version 99, this edgezo reads version 2"),
    ("old", "older edgezo's format version 1"),
    ("incomplete", "incomplete checkpoint, lacks 'params'"),
    ("tensor", "not an edgezo checkpoint (it holds a Tensor)"),
])
def test_bad_files_give_one_line_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "bad.pt"
    if damage == "truncate":
        checkpoint.save(path, "train", {"params": torch.zeros(1000)}, settings={})
        path.write_bytes(path.read_bytes()[:700])
    elif damage == "text":
        path.write_text("not a checkpoint\n")
    elif damage == "version":
        torch.save({"edgezo": _header(version=99), "params": torch.zeros(1)}, path)
    elif damage == "old":
        torch.save({"version": 1, "params": torch.zeros(1)}, path)
    elif damage == "incomplete":
        torch.save({"edgezo": _header()}, path)
    else:
        torch.save(torch.zeros(2), path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, "train", required=("params",))
    text = str(info.value)
    assert str(path) in text and message in text and "\n" not in text


@pytest.mark.parametrize("command", ["train", "export", "robustify"])
def test_every_command_refuses_a_payload_checkpoint(tmp_path, capsys, command):
    """``train --resume``, ``export --checkpoint`` and ``robustify --resume`` read through the same module."""
    marker = tmp_path / "payload-ran"
    out = tmp_path / "run"
    out.mkdir()
    kind = "robustify" if command == "robustify" else "train"
    torch.save({"edgezo": _header(kind=kind), "params": Payload(marker)}, out / "checkpoint.pt")
    if command == "train":
        argv = ["train", "--out", str(out), "--resume", "--no-progress", "--epochs", "1"]
    elif command == "export":
        argv = ["export", "--checkpoint", str(out), "--out", str(tmp_path / "exp")]
    else:
        from edgezo.adapters.robustify.onnx_export import export_module

        export_module(torch.nn.Linear(64, 10), torch.zeros(2, 64), tmp_path / "clf.onnx", output_name="logits")
        argv = ["robustify", "--onnx", str(tmp_path / "clf.onnx"), "--out", str(out), "--resume",
                "--train-size", "8", "--test-size", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("edgezo: error:")]
    assert "Traceback" not in err and len(errors) == 1, err
    assert "refused" in errors[0] and "checkpoint.pt" in errors[0]
    assert not marker.exists()

