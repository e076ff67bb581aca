"""TVMOracle (Relax, llvm) against the TorchOracle: same θ, batch, queries → same losses.

Tolerance (float32): |Δ| ≤ 1e-5 + 1e-5·|ℓ| — the ``stacked-nt`` kernels sum in
8 vector lanes, so they agree with torch to rounding, not bit for bit.
"""

import copy

import pytest
import torch
from edgezo.models import MLP

from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, OracleError, SeedQueries, SeedUpdate
from edgezo.oracles.torch_oracle import TorchOracle
from edgezo.oracles.tvm import tvm_available

pytestmark = [pytest.mark.tvm,
              pytest.mark.skipif(not tvm_available(), reason="Apache TVM is not installed (pip install edgezo[tvm])")]


def close(a, b, atol=1e-5, rtol=1e-5):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return bool(((a - b).abs() <= atol + rtol * b.abs()).all())


@pytest.fixture(scope="module")
def exported():
    from edgezo.export.onnx import export_onnx

    torch.manual_seed(0)
    model = MLP([64, 32, 10])  # the default recipe's architecture: compiled graphs are shared with other tests
    batch = (torch.randn(6, 64), torch.randint(0, 10, (6,)))
    return model, batch, export_onnx(model, batch, groups="per_module")


@pytest.fixture
def pair(exported):
    from edgezo.export.tvm_compile import HostCompiler

    from edgezo.oracles.tvm import TVMOracle

    model, batch, exp = exported
    ref = TorchOracle(copy.deepcopy(model), cross_entropy, groups="per_module", path="stacked")
    tvm = TVMOracle(exp.model, exp.layout, exp.param_inputs, ref.get_flat(), stacked=exp.stacked,
                    compiler=HostCompiler())
    return ref, tvm, batch


@pytest.mark.parametrize("path", ["sequential", "stacked", "stacked-nt"])
def test_queries_match_torch(pair, path):
    ref, tvm, batch = pair
    tvm.path = path
    for q in (SeedQueries((1, 2, 1), (0.1, -0.1, 0.0)),
              SeedQueries((3, 4), (0.05, 0.05), group="layers.1", kind="sphere"),
              CoordQueries((0, 5, ref.dim - 1), (0.2, -0.2, 0.3))):
        assert close(tvm.evaluate(q, batch), ref.evaluate(q, batch))
    # another batch size than the example: the compiled graphs have a symbolic batch
    small = (batch[0][:1], batch[1][:1])
    assert close(tvm.evaluate(SeedQueries((9,), (0.1,)), small), ref.evaluate(SeedQueries((9,), (0.1,)), small))


def test_loss_predict_updates_and_state(pair):
    ref, tvm, batch = pair
    assert close(tvm.loss(batch), ref.loss(batch))
    assert close(tvm.predict(batch[0]), ref.predict(batch[0]))
    for oracle in (ref, tvm):
        oracle.apply_seed_update(SeedUpdate((5,), (1.0,), group="layers.0"), 0.05)
        opt = torch.optim.SGD(oracle.optimizer_parameters(), lr=0.1)
        oracle.set_grad(torch.linspace(-1, 1, oracle.dim))
        opt.step()
        oracle.after_step()
    assert torch.allclose(tvm.get_flat(), ref.get_flat(), atol=1e-6)
    assert close(tvm.loss(batch), ref.loss(batch))
    tvm.path = "auto"
    tvm.evaluate(SeedQueries((1, 2), (0.1, -0.1)), batch)
    assert tvm.state_dict()["choices"]["seed:q=2:b=6"] in tvm.available_paths()
    with pytest.raises(OracleError):
        tvm.autograd(batch)


def test_cli_factory_builds_a_tvm_oracle(exported):
    from edgezo.export.backends import tvm_factory

    model, batch, _ = exported
    oracle = tvm_factory(None)(model, cross_entropy, example_batch=batch, path="stacked")
    assert oracle.backend == "tvm"
    assert close(oracle.loss(batch), TorchOracle(model, cross_entropy).loss(batch))
