"""One error hierarchy: every error meant for users is an EdgezoError; the CLI prints only those."""

import pytest

from edgezo import errors
from edgezo.cli import main


def test_user_errors_share_one_base():
    from edgezo.host.link import DeviceReset, LinkError
    from edgezo.targets.memory import BudgetError
    from edgezo.targets.qemu import FirmwareError

    from edgezo.adapters.robustify.blackbox import BlackBoxError, QueryBudgetExceeded
    from edgezo.data import DataError
    from edgezo.oracle import OracleError
    from edgezo.protocol import FrameError
    from edgezo.recipes import RecipeError
    from edgezo.trainer import ResumeError, TrainingDiverged

    for cls in (BlackBoxError, QueryBudgetExceeded, DataError, DeviceReset, LinkError, FrameError,
                OracleError, RecipeError, BudgetError, FirmwareError, ResumeError, TrainingDiverged,
                errors.ConfigError, errors.CheckpointError, errors.DeviceError):
        assert issubclass(cls, errors.EdgezoError), cls
    assert issubclass(RecipeError, ValueError) and issubclass(ResumeError, errors.CheckpointError)


def test_one_device_error_for_the_link_and_the_simulator():
    import edgezo.host.link as link
    import edgezo.targets.sim as sim

    assert link.DeviceError is errors.DeviceError is sim.DeviceError
    err = link.refused(6, "too big", 0x02)
    assert isinstance(err, errors.DeviceError) and err.code == 6 and err.request == 0x02
    assert str(err) == "device refused set_model: out_of_memory: too big"
    assert isinstance(link.refused(4, "reset", 0x05), link.DeviceReset)


def test_cli_prints_user_errors_and_lets_bugs_surface(monkeypatch, capsys):
    # the sub-command is replaced by its dotted path: tests drive the CLI only through main()
    def user_error(args):
        raise errors.ConfigError("first line\nsecond line")

    def bug(args):
        raise KeyError("a bug")

    monkeypatch.setattr("edgezo.cli.cmd_recipes", user_error)
    assert main(["recipes"]) == 2
    assert capsys.readouterr().err == "edgezo: error: first line · second line\n"
    monkeypatch.setattr("edgezo.cli.cmd_recipes", bug)
    with pytest.raises(KeyError, match="a bug"):
        main(["recipes"])


def test_did_you_mean():
    assert errors.did_you_mean("epoch", ["epochs", "seed"]) == " (did you mean 'epochs'?)"
    assert errors.did_you_mean("zzz", ["epochs"]) == ""
