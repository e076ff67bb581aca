"""One conformance suite for every oracle and backend (like optax's common optimizer tests).

Each case builds an oracle and an independent *reference* — the loss at a
flat parameter vector θ computed directly with torch (a plain forward of a
copy of the model with θ written in), or, for a simulated target datapath,
with that datapath's own forward. Every case must pass the same checks:

* ``loss(batch)`` equals the reference at θ;
* seed queries ``θ + s·z(seed)`` on one group (s = 0, +μ, −μ) equal the
  reference at the explicitly formed points (z from :mod:`edgezo.directions`);
* coordinate queries ``θ + δ e_j`` equal the reference (oracles that answer
  seed queries only — a device — are exempt and say so);
* a seed update leaves ``θ − lr Σ c_i z(seed_i)`` (to the case's tolerance).

Stated tolerances (absolute, on losses of order 1): float32 host oracles
(torch, staged, fleet, ORT, TVM) 2e-5; the device simulator (numpy float32
with its own summation order) 5e-6; float64 solver rollouts 1e-10; the
simulated int8 / photonic datapaths 1e-5 against their own forward (the
quantisation error against float torch is not what is being tested).
Every backend registered in :data:`edgezo.oracles.backends.BACKENDS` must
have a case here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from edgezo.models import MLP

from edgezo.directions import directions
from edgezo.extras import tvm_available
from edgezo.losses import cross_entropy
from edgezo.oracle import CoordQueries, Oracle, SeedQueries, SeedUpdate
from edgezo.oracles.backends import BACKENDS, oracle_factory
from edgezo.params import ParamSpace
from edgezo.recipes import get_recipe, make_oracle

MU = 1e-2


@dataclass
class Case:
    oracle: Oracle
    reference: Callable[[torch.Tensor], float]  # loss at a flat θ
    batch: tuple
    atol: float
    coords: bool = True
    close: Callable[[], None] = lambda: None


def _digits_batch(n=32):
    g = torch.Generator().manual_seed(2)
    return torch.rand(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)


def _torch_reference(model, loss_fn, groups=None, forward=None):
    """Loss at θ: θ written into a copy of ``model``, one plain forward (``forward(model, x)`` if given)."""
    ref_model = copy.deepcopy(model)
    space = ParamSpace(ref_model, groups)

    def loss(theta, batch):
        with torch.no_grad():
            space.set_flat(theta.to(next(ref_model.parameters()).dtype))
            out = forward(ref_model, batch[0]) if forward else ref_model(batch[0])
            return float(loss_fn(out, batch[1]))

    return loss


def _mlp_case(backend: str):
    torch.manual_seed(0)
    model = MLP([64, 32, 10])
    batch = _digits_batch()
    recipe = get_recipe("digits-mlp")
    oracle = make_oracle(copy.deepcopy(model), cross_entropy, example_batch=batch, path="stacked"
                         if backend in ("torch", "onnxruntime", "tvm") else "loop",
                         oracle_factory=oracle_factory(backend, recipe))
    ref = _torch_reference(model, cross_entropy)
    return Case(oracle, lambda t: ref(t, batch), batch, atol=2e-5)


def _simulated_case(profile: str):
    from edgezo.targets.backends import simulated_oracle
    from edgezo.targets.numerics import SimulatedForward
    from edgezo.targets.profile import load_profile

    torch.manual_seed(0)
    model = MLP([64, 32, 10])
    batch = _digits_batch()
    oracle = simulated_oracle(profile, profile, copy.deepcopy(model), cross_entropy, seed=5)
    prof = load_profile(profile)
    # the reference draws the same noise as the oracle: same seed, same points in the same order
    gen = torch.Generator().manual_seed(5) if prof.has_noise else None
    ref = _torch_reference(model, cross_entropy,
                           forward=lambda m, x: SimulatedForward(m, prof, generator=gen)(x))
    return Case(oracle, lambda t: ref(t, batch), batch, atol=1e-5)


def _staged_case():
    from edgezo.models.cnn import CNN

    from edgezo.oracles.staged import StagedOracle

    torch.manual_seed(0)
    model = CNN(depth=1, width=4, in_channels=1, image_size=8)
    g = torch.Generator().manual_seed(3)
    batch = (torch.rand(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))
    oracle = StagedOracle(copy.deepcopy(model), cross_entropy, path="delta")
    ref = _torch_reference(model, cross_entropy)
    return Case(oracle, lambda t: ref(t, batch), batch, atol=2e-5)


def _solver_case():
    from edgezo.models.corrector import PeriodicCorrector

    from edgezo.adapters.solver.burgers import BurgersSolver, TorchBurgers, random_initial_conditions
    from edgezo.adapters.solver.loop import SolverInTheLoop, rollout_error
    from edgezo.adapters.solver.oracle import SolverOracle

    torch.manual_seed(0)
    corrector = PeriodicCorrector((4,), 3).double()
    solver, steps = BurgersSolver(), 3
    u0 = random_initial_conditions(2, 32, seed=1)
    reference_traj = np.swapaxes(BurgersSolver(32, 0.02, 0.1).rollout(u0, steps), 0, 1)
    batch = (torch.from_numpy(u0), torch.from_numpy(np.ascontiguousarray(reference_traj)))
    make = lambda c: SolverInTheLoop(solver.step, c, steps=steps,  # noqa: E731
                                     torch_solver=TorchBurgers.from_solver(solver))
    oracle = SolverOracle(make(copy.deepcopy(corrector)), path="stacked")
    ref_loop = make(copy.deepcopy(corrector))
    space = ParamSpace(ref_loop.corrector)

    def reference(theta):
        with torch.no_grad():
            space.set_flat(theta.double())
            return float(rollout_error(ref_loop.rollout(batch[0]), batch[1]))

    return Case(oracle, reference, batch, atol=1e-10)


def _fleet_case():
    from edgezo.host.fleet import FleetOracle

    from edgezo.oracles.torch_oracle import TorchOracle

    torch.manual_seed(0)
    model = MLP([64, 32, 10])
    batch = _digits_batch()
    oracle = FleetOracle([TorchOracle(copy.deepcopy(model), cross_entropy, path="stacked") for _ in range(2)])
    ref = _torch_reference(model, cross_entropy)
    return Case(oracle, lambda t: ref(t, batch), batch, atol=2e-5)


def _device_case():
    pytest.importorskip("cobs")
    from edgezo.host.device_oracle import DeviceOracle
    from edgezo.targets.sim import SimulatorThread

    torch.manual_seed(0)
    model = MLP([64, 32, 10])
    batch = _digits_batch()
    sim = SimulatorThread()
    oracle = DeviceOracle(copy.deepcopy(model), cross_entropy, link=sim.port, max_batch=32)
    ref = _torch_reference(model, cross_entropy)

    def close():
        oracle.link.close()
        sim.close()

    return Case(oracle, lambda t: ref(t, batch), batch, atol=5e-6, coords=False, close=close)


TVM = pytest.mark.skipif(not tvm_available(), reason="Apache TVM is not installed (pip install edgezo[tvm])")
CASES = {
    "torch": lambda: _mlp_case("torch"),
    "onnxruntime": lambda: _mlp_case("onnxruntime"),
    "tvm": lambda: _mlp_case("tvm"),
    "int8": lambda: _simulated_case("fpga-int8"),
    "photonic": lambda: _simulated_case("photonic-noisy"),
    "staged": _staged_case,
    "solver": _solver_case,
    "fleet": _fleet_case,
    "device-sim": _device_case,
}
PARAMS = [pytest.param(name, marks=[pytest.mark.tvm, TVM]) if name == "tvm" else name for name in CASES]


@pytest.fixture(params=PARAMS)
def case(request):
    torch.set_num_threads(1)
    built = CASES[request.param]()
    yield built
    built.close()


def test_every_registered_backend_has_a_case():
    assert set(BACKENDS.available()) <= set(CASES), sorted(set(BACKENDS.available()) - set(CASES))


def test_loss_at_theta(case):
    theta = case.oracle.get_flat().detach().cpu()
    assert abs(case.oracle.loss(case.batch) - case.reference(theta)) <= case.atol


def _seed_points(oracle, seeds, scales, group, kind="rademacher"):
    theta = oracle.get_flat().detach().cpu().double()
    g = oracle.layout.group(group)
    z = directions(list(seeds), g.offset, g.numel, kind, dtype=torch.float64)
    points = []
    for s, row in zip(scales, z):
        p = theta.clone()
        p[g.offset:g.stop] += s * row
        points.append(p)
    return points


def test_seed_queries(case):
    group = case.oracle.layout.group_names[-1]
    seeds, scales = (5, 6, 7), (0.0, MU, -MU)
    got = case.oracle.evaluate(SeedQueries(seeds, scales, group), case.batch)
    want = [case.reference(p) for p in _seed_points(case.oracle, seeds, scales, group)]
    assert got.shape == (3,)
    np.testing.assert_allclose(got.double().cpu().numpy(), want, rtol=0, atol=case.atol)
    assert abs(float(got[1]) - float(got[0])) > 2 * case.atol  # the perturbation changed the loss


def test_coordinate_queries(case):
    if not case.coords:
        pytest.skip("this oracle answers seed queries only (a device generates its own directions)")
    theta = case.oracle.get_flat().detach().cpu().double()
    coords = (0, theta.numel() // 2, theta.numel() - 1)
    deltas = (MU, -MU, MU)
    got = case.oracle.evaluate(CoordQueries(coords, deltas), case.batch)
    want = []
    for j, d in zip(coords, deltas):
        p = theta.clone()
        p[j] += d
        want.append(case.reference(p))
    np.testing.assert_allclose(got.double().cpu().numpy(), want, rtol=0, atol=case.atol)


def test_seed_update(case):
    group = case.oracle.layout.group_names[0]
    theta = case.oracle.get_flat().detach().cpu().double()
    update = SeedUpdate((1, 2, 3), (0.5, -1.0, 2.0), group, "rademacher")
    case.oracle.apply_seed_update(update, 0.01)
    g = case.oracle.layout.group(group)
    z = directions([1, 2, 3], g.offset, g.numel, "rademacher", dtype=torch.float64)
    want = theta.clone()
    want[g.offset:g.stop] -= 0.01 * (torch.tensor(update.coeffs, dtype=torch.float64) @ z)
    got = case.oracle.get_flat().detach().cpu().double()
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    assert not torch.equal(got, theta)
