"""The package-level API: every public name resolves lazily, and `import edgezo` imports no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import edgezo


def test_import_edgezo_is_cheap():
    code = "import sys, edgezo; print(sorted(m for m in ('torch', 'numpy', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(edgezo._PUBLIC))
def test_every_public_name_resolves_to_its_module_object(name):
    module_name, _, attr = edgezo._PUBLIC[name].partition(":")
    module = __import__(module_name, fromlist=[attr])
    assert getattr(edgezo, name) is getattr(module, attr)
    assert name in dir(edgezo) and name in edgezo.__all__


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        edgezo.Nope  # noqa: B018


def test_quick_start_names_train_a_step():
    from edgezo import MLP, RGE, TorchOracle, cross_entropy, load_digits

    data = load_digits()
    oracle = TorchOracle(MLP([64, 8, 10]), cross_entropy)
    batch = (data.x_train[:32], data.y_train[:32])
    before = oracle.loss(batch)
    est = RGE(q=4, mu=1e-2).estimate(oracle, batch, step=0, seed=0)
    for term in est.seed_terms:
        oracle.apply_seed_update(term, lr=1e-2)
    assert est.forward_passes > 0 and oracle.loss(batch) != before
