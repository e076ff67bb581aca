"""Tests for the solver-in-the-loop adapter and its oracle.

The black-box solver is the numpy Burgers solver wrapped in a spy that records
every argument it receives. Deterministic (fixed seeds), float64; a few
seconds in all.
"""

import numpy as np
import pytest
import torch
from edgezo.models.corrector import PeriodicCorrector

from edgezo.adapters.solver.burgers import BurgersSolver, TorchBurgers, random_initial_conditions
from edgezo.adapters.solver.loop import SolverError, SolverInTheLoop, rollout_error
from edgezo.adapters.solver.oracle import SolverOracle
from edgezo.estimators import CGE, RGE
from edgezo.oracle import CoordQueries, OracleError, SeedQueries

STEPS = 6


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (much slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SpySolver:
    """A numpy solver step that records the type, dtype, shape and grad mode of each call."""

    def __init__(self, solver: BurgersSolver):
        self.solver = solver
        self.calls = []

    def __call__(self, u):
        self.calls.append((type(u), getattr(u, "dtype", None), getattr(u, "shape", None), torch.is_grad_enabled()))
        return self.solver.step(u)


def _corrector(seed=0, scale=0.05):
    model = PeriodicCorrector((4,), 3).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _batch(b=3, seed=1, solver=None):
    """Initial states and a stand-in 'reference': the solver's own rollout of smoother states."""
    solver = solver or BurgersSolver()
    u0 = random_initial_conditions(b, 32, seed=seed)
    ref = np.swapaxes(BurgersSolver(32, 0.02, 0.1).rollout(u0, STEPS), 0, 1)
    return torch.from_numpy(u0), torch.from_numpy(np.ascontiguousarray(ref))


def _oracle(model=None, *, path=None, spy=None, **kw):
    solver = BurgersSolver()
    spy = spy or SpySolver(solver)
    loop = SolverInTheLoop(spy, model or _corrector(), steps=STEPS, torch_solver=TorchBurgers.from_solver(solver),
                           **kw)
    return SolverOracle(loop, path=path), spy


def _numpy_hook_loss(model, params, u0, ref, loss="mae"):
    """The same loss computed independently through BurgersSolver.rollout(correction=...)."""

    def correction(u):
        with torch.no_grad():
            return torch.func.functional_call(model, params, (torch.from_numpy(u),)).numpy()

    traj = np.swapaxes(BurgersSolver().rollout(u0.numpy(), STEPS, correction=correction), 0, 1)
    return float(rollout_error(torch.from_numpy(np.ascontiguousarray(traj)), ref, loss))


# --------------------------------------------------------------------------
# the black box only ever sees numpy
# --------------------------------------------------------------------------
def test_solver_receives_numpy_float64_only_and_no_gradients_are_asked():
    oracle, spy = _oracle()
    batch = _batch()
    oracle.evaluate(SeedQueries((1, 2, 3), (1e-3, -1e-3, 0.0)), batch)
    oracle.evaluate(CoordQueries((0, 5), (1e-4, -1e-4)), batch)
    oracle.loss(batch)
    oracle.predict(batch[0])
    RGE(q=2).estimate(oracle, batch, step=0, seed=0)
    CGE(coords=[0, 1]).estimate(oracle, batch, step=0, seed=0)
    assert len(spy.calls) > 0
    for kind, dtype, shape, grad_enabled in spy.calls:
        assert kind is np.ndarray and dtype == np.float64 and len(shape) == 2 and shape[1] == 32
        assert not grad_enabled
    # a stacked evaluation of q points makes one solver call per time step on (q * B, n) states
    spy.calls.clear()
    oracle.evaluate(SeedQueries((1, 2, 3, 4), (1e-3,) * 4), batch)
    assert [c[2] for c in spy.calls] == [(4 * 3, 32)] * STEPS


def test_numpy_solver_would_reject_tensors():
    """The Burgers black box refuses torch tensors, so the spy test above is meaningful."""
    with pytest.raises(TypeError, match="numpy float64"):
        BurgersSolver().step(torch.zeros(2, 32, dtype=torch.float64))


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["mae", "mse"])
def test_stacked_and_loop_paths_equal_the_numpy_correction_hook(loss):
    model = _corrector()
    stacked, _ = _oracle(model, path="stacked", loss=loss)
    looped, _ = _oracle(model, path="loop", loss=loss)
    u0, ref = _batch()
    queries = SeedQueries((11, 12, 13), (0.02, -0.02, 0.0), kind="gaussian")
    a = stacked.evaluate(queries, (u0, ref))
    b = looped.evaluate(queries, (u0, ref))
    assert a.dtype == torch.float64 and a.shape == (3,)
    assert (a - b).abs().max() < 1e-13
    theta = stacked.get_flat()
    block = stacked._perturbed(theta, queries, 0, 3)
    for i in range(3):
        expected = _numpy_hook_loss(model, stacked.layout.split(block[i]), u0, ref, loss)
        assert abs(float(a[i]) - expected) < 1e-13
    assert abs(float(a[2]) - stacked.loss((u0, ref))) < 1e-14  # scale 0 is θ itself
    assert torch.equal(stacked.get_flat(), theta)  # evaluation never moves θ


def test_zero_initialized_corrector_is_the_uncorrected_solver():
    oracle, _ = _oracle(PeriodicCorrector((4,), 3).double())
    u0, ref = _batch()
    uncorrected = oracle.loop.rollout_uncorrected(u0)
    assert torch.equal(oracle.predict(u0), uncorrected)
    assert torch.equal(uncorrected[:, 1], torch.from_numpy(BurgersSolver().step(u0.numpy())))
    assert oracle.loss((u0, ref)) == pytest.approx(float(rollout_error(uncorrected, ref)), abs=1e-15)


def test_chunked_and_unbatched_solver_give_the_same_losses():
    model = _corrector(seed=4)
    u0, ref = _batch(b=2)
    queries = SeedQueries(tuple(range(5)), (0.01,) * 5)
    whole, _ = _oracle(model)
    chunked, spy = _oracle(model)
    chunked.max_rows = 4  # two points (2 x 2 states) per solver call
    a = whole.evaluate(queries, (u0, ref))
    b = chunked.evaluate(queries, (u0, ref))
    assert (a - b).abs().max() < 1e-14
    assert max(c[2][0] for c in spy.calls) == 4
    rowwise = SolverInTheLoop(BurgersSolver().step, model, steps=STEPS, batched=False)
    c = SolverOracle(rowwise).evaluate(queries, (u0, ref))
    assert (a - c).abs().max() < 1e-14
    assert rowwise.solver_calls == 5 * 2 * STEPS and rowwise.solver_states == 5 * 2 * STEPS


def test_counters():
    oracle, _ = _oracle()
    batch = _batch(b=3)
    oracle.evaluate(SeedQueries((1, 2, 3, 4), (1e-3,) * 4), batch)
    oracle.loss(batch)
    assert oracle.counters.forward_passes == 5 and oracle.counters.samples_forwarded == 15
    assert oracle.loop.solver_calls == 2 * STEPS and oracle.loop.solver_states == 5 * 3 * STEPS


# --------------------------------------------------------------------------
# first-order baseline through the torch twin
# --------------------------------------------------------------------------
def test_autograd_through_the_twin_equals_central_differences_of_the_black_box():
    oracle, spy = _oracle(_corrector(seed=5, scale=0.2), loss="mse")
    batch = _batch(b=2)
    calls_before = len(spy.calls)
    loss, grad = oracle.autograd(batch)
    assert len(spy.calls) == calls_before  # FO never calls the black box
    assert loss == pytest.approx(oracle.loss(batch), abs=1e-13)
    mu, d = 1e-5, oracle.dim
    values = oracle.evaluate(CoordQueries(tuple(range(d)) * 2, (mu,) * d + (-mu,) * d), batch)
    fd = (values[:d] - values[d:]) / (2 * mu)
    assert grad.abs().max() > 1e-3
    assert (fd - grad).abs().max() <= 1e-6 * max(1.0, float(grad.abs().max()))


def test_autograd_needs_a_differentiable_twin():
    loop = SolverInTheLoop(BurgersSolver().step, _corrector(), steps=STEPS)
    with pytest.raises(OracleError, match="black box"):
        SolverOracle(loop).autograd(_batch())


# --------------------------------------------------------------------------
# bounds and errors
# --------------------------------------------------------------------------
class Push(torch.nn.Module):
    """A bad corrector: adds 1 everywhere (would break the CFL limit of the solver)."""

    def __init__(self):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, u):
        return u + self.c


def test_initial_bounds_keep_the_rollout_inside_the_initial_range():
    u0, _ = _batch(b=2)
    with pytest.raises(ValueError, match="unstable time step"):
        SolverInTheLoop(BurgersSolver().step, Push(), steps=STEPS).rollout(u0)
    traj = SolverInTheLoop(BurgersSolver().step, Push(), steps=STEPS, bounds="initial").rollout(u0)
    assert torch.equal(traj[:, -1], u0.amax(-1, keepdim=True).expand(-1, 32))
    fixed = SolverInTheLoop(BurgersSolver().step, Push(), steps=STEPS, bounds=(-0.5, 0.5)).rollout(u0)
    assert float(fixed[:, 1:].abs().max()) == 0.5
    with pytest.raises(ValueError, match="bounds"):
        SolverInTheLoop(BurgersSolver().step, Push(), steps=STEPS, bounds=(1.0, -1.0))


def test_bad_solver_outputs_and_inputs():
    u0, ref = _batch(b=2)
    for bad in (lambda u: u[:, :-1], lambda u: torch.from_numpy(u), lambda u: u * np.nan):
        with pytest.raises(SolverError):
            SolverInTheLoop(bad, _corrector(), steps=2).rollout(u0)
    with pytest.raises(TypeError, match="callable"):
        SolverInTheLoop(np.zeros(3), _corrector(), steps=2)
    with pytest.raises(ValueError, match="steps"):
        SolverInTheLoop(BurgersSolver().step, _corrector(), steps=0)
    oracle, _ = _oracle()
    with pytest.raises(ValueError, match="reference must have shape"):
        oracle.loss((u0, ref[:, :3]))
    with pytest.raises(ValueError, match=r"\(B, n\)"):
        oracle.loop.rollout(u0[0])
    with pytest.raises(ValueError, match="path"):
        _oracle(path="vmap")


def test_solvers_that_work_in_place_or_reuse_a_buffer_are_safe():
    """Compiled solvers often overwrite their input or return one reused output buffer."""
    solver = BurgersSolver()

    def in_place(u):
        u[...] = solver.step(u)
        return u

    class Buffered:
        buf = None

        def __call__(self, u):
            if self.buf is None or self.buf.shape != u.shape:
                self.buf = np.empty_like(u)
            self.buf[...] = solver.step(u)
            return self.buf

    model = _corrector(seed=6)
    u0, ref = _batch(b=2)
    u0_before = u0.clone()
    queries = SeedQueries((3, 4), (0.01, -0.01))
    expected = SolverOracle(SolverInTheLoop(solver.step, model, steps=STEPS)).evaluate(queries, (u0, ref))
    for black_box in (in_place, Buffered()):
        for batched in (True, False):
            loop = SolverInTheLoop(black_box, model, steps=STEPS, batched=batched)
            assert torch.equal(SolverOracle(loop).evaluate(queries, (u0, ref)), expected)
            assert torch.equal(SolverOracle(loop, path="loop").evaluate(queries, (u0, ref)), expected)
    assert torch.equal(u0, u0_before)  # the training data were never overwritten
