"""Every oracle class keeps to the contract of edgezo.oracles.base and TorchOracle's protected API."""

from __future__ import annotations

import importlib
import inspect

import pytest

from edgezo.oracles.base import Oracle
from edgezo.oracles.torch_oracle import TorchOracle

MODULES = ["edgezo.oracles.torch_oracle", "edgezo.oracles.staged", "edgezo.oracles.onnxruntime", "edgezo.oracles.tvm",
           "edgezo.oracles.distributed", "edgezo.oracles.simulated", "edgezo.adapters.solver.oracle",
           "edgezo.adapters.robustify.latent_oracle", "edgezo.host.device_oracle", "edgezo.host.fleet"]
PUBLIC_CONTRACT = {name for name, _ in inspect.getmembers(Oracle) if not name.startswith("_")}


def _oracle_classes():
    seen = {}
    for module in MODULES:
        for _, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass):
            if issubclass(cls, Oracle) and cls is not Oracle and cls.__module__ == module:
                seen[cls.__qualname__] = cls
    return sorted(seen.values(), key=lambda c: c.__qualname__)


def _own_methods(cls, base) -> set[str]:
    """Callables ``cls`` defines or overrides below ``base`` (its own helpers included)."""
    names = set()
    for klass in cls.__mro__:
        if klass is base or not issubclass(klass, base):
            break
        names |= {n for n, v in vars(klass).items() if callable(v) or isinstance(v, property)}
    return names


def test_every_oracle_module_contributes_a_class():
    assert len(_oracle_classes()) >= len(MODULES)


def _leaves():
    classes = _oracle_classes()
    return [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]


@pytest.mark.parametrize("cls", _leaves(), ids=lambda c: c.__name__)
def test_concrete_oracles_implement_the_abstract_methods(cls):
    """Every leaf class can be instantiated: no abstract method of the contract is left open."""
    assert not inspect.isabstract(cls), f"{cls.__name__} leaves {sorted(cls.__abstractmethods__)} abstract"


@pytest.mark.parametrize("cls", [c for c in _oracle_classes() if issubclass(c, TorchOracle) and c is not TorchOracle],
                         ids=lambda c: c.__name__)
def test_torch_oracle_subclasses_override_only_the_protected_api(cls):
    """A subclass may add its own private helpers, but of TorchOracle's privates only SUBCLASS_HOOKS."""
    torch_private = {n for n in vars(TorchOracle) if n.startswith("_") and not n.startswith("__")}
    overridden = {n for n in _own_methods(cls, TorchOracle) if n in torch_private}
    assert overridden <= set(TorchOracle.SUBCLASS_HOOKS), \
        f"{cls.__name__} overrides TorchOracle internals {sorted(overridden - set(TorchOracle.SUBCLASS_HOOKS))}"
