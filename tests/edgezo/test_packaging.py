"""Packaging: one version, python -m edgezo is the edgezo script, py.typed ships."""

import importlib.metadata
import importlib.resources
import subprocess
import sys

import edgezo
from edgezo._version import __version__


def test_version_has_one_source():
    assert edgezo.__version__ == __version__ == importlib.metadata.version("edgezo")


def test_python_m_edgezo_is_the_script():
    module = subprocess.run([sys.executable, "-m", "edgezo", "--version"], capture_output=True, text=True, timeout=120)
    assert module.returncode == 0 and module.stdout.strip() == f"edgezo {__version__}"
    listed = subprocess.run([sys.executable, "-m", "edgezo", "recipes"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "digits-mlp" in listed.stdout


def test_py_typed_marker_is_package_data():
    assert importlib.resources.files("edgezo").joinpath("py.typed").is_file()
    entry = importlib.metadata.distribution("edgezo").entry_points.select(group="console_scripts", name="edgezo")
    assert [e.value for e in entry] == ["edgezo.cli:main"]


def test_all_extra_covers_every_feature_extra():
    requires = importlib.metadata.requires("edgezo") or []
    extras = {}
    for req in requires:
        if "extra ==" in req:
            name = req.split("extra ==")[1].strip().strip('"').strip("'")
            extras.setdefault(name, set()).add(req.split(";")[0].strip())
    for feature in ("tvm", "serve", "device", "tensorboard"):
        assert extras[feature] <= extras["all"], feature
