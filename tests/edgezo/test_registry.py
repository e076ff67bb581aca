"""edgezo.registry.Registry: duplicates refused, lazy entries, one unknown-name message, entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

import pytest

from edgezo.registry import DuplicateName, Registry, UnknownName, resolve


def test_register_get_and_available_sorted():
    reg = Registry("widget")
    reg.register("b", len)
    reg.register("a", "math:sqrt")
    assert reg.available() == ["a", "b"]
    assert reg.get("b") is len and reg["a"](9.0) == 3.0
    assert "a" in reg and "c" not in reg and len(reg) == 2


def test_duplicate_names_are_refused():
    reg = Registry("widget")
    reg.register("a", len)
    with pytest.raises(DuplicateName, match="a widget named 'a' is already registered"):
        reg.register("a", "math:sqrt")


def test_unknown_name_lists_the_available_ones():
    reg = Registry("widget")
    reg.register("x", len)
    reg.register("y", len)
    with pytest.raises(UnknownName, match=r"^unknown widget 'z'; available: x, y$"):
        reg.get("z")
    assert isinstance(reg.unknown("z"), ValueError)


def test_lazy_entries_import_on_first_use_only():
    name = "edgezo_registry_probe_module"
    sys.modules.pop(name, None)
    reg = Registry("widget")
    reg.register("probe", f"{name}:VALUE")
    assert name not in sys.modules and reg.path("probe") == f"{name}:VALUE"
    with pytest.raises(ModuleNotFoundError):
        reg.get("probe")


def test_resolve_module_and_dotted_attribute():
    assert resolve("os.path") is sys.modules["os.path"]
    assert resolve("os:path.join") is sys.modules["os.path"].join


def test_entry_point_group_is_read(monkeypatch):
    ep = importlib.metadata.EntryPoint("cube", "math:pow", "edgezo.test_widgets")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [ep] if group == "edgezo.test_widgets" else [])
    reg = Registry("widget", group="edgezo.test_widgets")
    reg.register("square", "math:sqrt")
    assert reg.available() == ["cube", "square"]
    assert reg.get("cube")(2, 3) == 8


@pytest.mark.parametrize("module, registry, names", [
    ("edgezo.estimators", "ESTIMATORS", {"rge", "cge", "fo", "hybrid", "sparse-cge", "combined"}),
    ("edgezo.models", "MODELS", {"mlp", "tt-mlp", "cnn", "pinn-mlp"}),
    ("edgezo.recipes", "TASKS", {"classification", "pinn", "solver", "deepzero"}),
    ("edgezo.oracles.backends", "BACKENDS", {"torch", "onnxruntime", "tvm", "int8", "photonic"}),
    ("edgezo.optim", "OPTIMIZERS", {"sgd", "adam", "adamw", "sign-sgd", "seed-sgd"}),
    ("edgezo.data", "DATASETS", {"digits", "mnist", "fashion-mnist", "cifar10"}),
    ("edgezo.losses", "LOSSES", {"cross_entropy", "mse"}),
    ("edgezo.models.activations", "ACTIVATIONS", {"relu", "tanh", "sin", "gelu", "silu"}),
    ("edgezo.devices", "DEVICES", {"sim", "host", "qemu"}),
    ("edgezo.bench", "REGISTRY", {"estimators", "backends", "device"}),
])
def test_every_kind_uses_one_registry(module, registry, names):
    reg = getattr(importlib.import_module(module), registry)
    assert isinstance(reg, Registry)
    assert names <= set(reg.available())


def test_a_packaged_group_without_entry_points_says_to_reinstall(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    reg = Registry("backend", group="edgezo.test_backends", packaged=True)
    reg.register("torch", len)
    with pytest.raises(UnknownName, match=r"available: torch \(no 'edgezo.test_backends' entry points .* reinstall"):
        reg.get("tvm")
    plain = Registry("loss", group="edgezo.test_losses")
    with pytest.raises(UnknownName, match=r"^unknown loss 'x'; available: $"):
        plain.get("x")
