"""Tests for the 1-D viscous Burgers solver of the solver-in-the-loop example.

All tests are deterministic (fixed seeds) and run in well under a second each.
"""

import numpy as np
import pytest
import torch

from edgezo.adapters.solver.burgers import (
    DEFAULT_N,
    DEFAULT_STEPS,
    BurgersSolver,
    FourierInitialCondition,
    TorchBurgers,
    initial_condition_fn,
    initial_condition_fns,
    lift_cell_averages,
    random_initial_conditions,
    reference_trajectory,
    restrict_cell_averages,
)

RECONSTRUCTIONS = ["constant", "minmod", "vanleer"]


def _stable_solver(n=32, nu=0.01, T_step=0.05, reconstruction="constant", integrator="ssprk3"):
    return BurgersSolver(n, nu, T_step, reconstruction=reconstruction, integrator=integrator, u_max=1.5)


# --------------------------------------------------------------------------
# conservation, boundedness, shapes
# --------------------------------------------------------------------------
@pytest.mark.parametrize("reconstruction", RECONSTRUCTIONS)
@pytest.mark.parametrize("substeps", [1, None])
def test_mean_is_conserved(reconstruction, substeps):
    u0 = random_initial_conditions(8, 32, seed=3, amplitude=1.0, mean_range=0.5)
    assert np.abs(u0.mean(axis=-1)).max() > 0.05  # a non-trivial mean
    solver = BurgersSolver(32, 0.02, 0.05, substeps=substeps, reconstruction=reconstruction, u_max=1.5)
    traj = solver.rollout(u0, 40)
    drift = np.abs(traj.mean(axis=-1) - u0.mean(axis=-1)).max()
    assert drift <= 1e-12


@pytest.mark.parametrize("reconstruction", RECONSTRUCTIONS)
def test_maximum_principle(reconstruction):
    u0 = random_initial_conditions(8, 32, seed=5)
    traj = _stable_solver(reconstruction=reconstruction).rollout(u0, 40)
    amax = np.abs(traj).max(axis=(1, 2))
    assert np.all(np.diff(amax) <= 1e-13)


def test_rollout_shapes_and_correction_hook():
    solver = BurgersSolver()
    u0 = random_initial_conditions(3, DEFAULT_N, seed=0)
    assert solver.rollout(u0[0], 5).shape == (6, DEFAULT_N)
    traj = solver.rollout(u0, 5)
    assert traj.shape == (6, 3, DEFAULT_N)
    assert np.array_equal(traj[0], u0)
    assert np.array_equal(traj[1], solver.step(u0))
    corrected = solver.rollout(u0, 5, correction=lambda u: 0.5 * u)
    assert np.array_equal(corrected[1], 0.5 * solver.step(u0))
    assert np.array_equal(corrected[2], 0.5 * solver.step(corrected[1]))
    with pytest.raises(ValueError, match="shape"):
        solver.step(np.zeros(DEFAULT_N + 1))


@pytest.mark.parametrize("substeps", [1, None])
def test_batched_step_equals_rowwise(substeps):
    """A row's result does not depend on the rest of its batch (also with adaptive substeps)."""
    u0 = random_initial_conditions(5, 32, seed=7) * np.array([[0.2], [1.0], [0.5], [0.9], [0.05]])
    dt = 0.05 if substeps else 0.1
    solver = BurgersSolver(32, 0.01, dt, substeps=substeps, reconstruction="vanleer", u_max=None)
    if substeps is None:
        assert len(set(solver.substeps_for(u0).tolist())) > 1  # rows really take different substeps
    batched = solver.step(u0)
    rows = np.stack([solver.step(row) for row in u0])
    assert np.array_equal(batched, rows)


# --------------------------------------------------------------------------
# convergence towards the fine solution
# --------------------------------------------------------------------------
@pytest.mark.parametrize("reconstruction", ["constant", "vanleer"])
def test_smooth_solution_converges_with_resolution(reconstruction):
    """Before shocks form (small amplitude, t = 0.4, nu = 0.005) the error against a
    1024-cell reference falls with every doubling of n."""
    n_ref, T, steps = 1024, 0.4, 4
    ics = initial_condition_fns(2, seed=11, amplitude=0.5)
    errors = []
    for n in (16, 32, 64, 128):
        u0 = np.stack([ic.cell_averages(n) for ic in ics])
        solver = BurgersSolver(n, 0.005, T / steps, substeps=None, reconstruction=reconstruction, u_max=None)
        ref = reference_trajectory(u0, steps, solver=solver, refine=n_ref // n, initial=ics)
        errors.append(np.abs(solver.rollout(u0, steps) - ref)[-1].mean())
    errors = np.array(errors)
    assert np.all(np.diff(errors) < 0), errors
    rates = np.log2(errors[:-1] / errors[1:])
    if reconstruction == "constant":
        assert rates.mean() > 0.8, (errors, rates)  # first order
    else:
        assert rates.mean() > 1.5, (errors, rates)  # second order away from limiter clipping


def test_default_problem_has_clear_coarse_error():
    """The default coarse solver (n=32, first-order Rusanov) is visibly off the
    8x finer second-order reference on held-out initial conditions."""
    ics = initial_condition_fns(16, seed=2024)
    u0 = np.stack([ic.cell_averages(DEFAULT_N) for ic in ics])
    solver = BurgersSolver()
    coarse = solver.rollout(u0, DEFAULT_STEPS)
    ref = reference_trajectory(u0, DEFAULT_STEPS, solver=solver, initial=ics)
    mae = np.abs(coarse - ref)[-1].mean()
    assert 0.03 < mae < 0.09, mae  # measured 0.053 (mean |u| of the reference ~0.40)
    # the spectral lift of the coarse initial condition gives the same reference
    lifted = reference_trajectory(u0, DEFAULT_STEPS, solver=solver)
    assert np.abs(lifted - ref).max() < 1e-12
    # reference mean equals the coarse mean (both conservative, exact grid transfer)
    assert np.abs(ref.mean(axis=-1) - u0.mean(axis=-1)).max() < 1e-12


# --------------------------------------------------------------------------
# the torch twin
# --------------------------------------------------------------------------
@pytest.mark.parametrize("reconstruction", RECONSTRUCTIONS)
@pytest.mark.parametrize("integrator", ["ssprk2", "ssprk3"])
@pytest.mark.parametrize("substeps", [1, None])
def test_torch_twin_matches_numpy(reconstruction, integrator, substeps):
    u0 = random_initial_conditions(6, 32, seed=13, mean_range=0.0)
    solver = BurgersSolver(32, 0.02, 0.05, substeps=substeps, reconstruction=reconstruction, integrator=integrator)
    twin = TorchBurgers.from_solver(solver)
    ref = solver.rollout(u0, 30)
    out = twin.rollout(torch.from_numpy(u0.copy()), 30)
    assert out.dtype == torch.float64 and out.shape == ref.shape
    assert np.abs(out.numpy() - ref).max() <= 1e-12
    # unbatched input too
    assert np.abs(twin.step(torch.from_numpy(u0[0].copy())).numpy() - solver.step(u0[0])).max() <= 1e-12


def test_torch_twin_constructor_matches_from_solver():
    solver = BurgersSolver(32, 0.03, 0.05, reconstruction="vanleer")
    twin = TorchBurgers(32, 0.03, 0.05, reconstruction="vanleer")
    u0 = random_initial_conditions(2, 32, seed=1)
    assert np.abs(twin.rollout(torch.from_numpy(u0), 5).numpy() - solver.rollout(u0, 5)).max() <= 1e-12


@pytest.mark.parametrize("reconstruction", ["constant", "vanleer"])
def test_torch_twin_gradient_matches_numpy_finite_difference(reconstruction):
    """d/dε of a loss of the numpy rollout along a random direction equals the
    torch autograd directional derivative (central difference, ε = 1e-6)."""
    solver = BurgersSolver(32, 0.01, 0.1 if reconstruction == "constant" else 0.05, reconstruction=reconstruction)
    twin = TorchBurgers.from_solver(solver)
    u0 = random_initial_conditions(2, 32, seed=17)
    v = np.random.default_rng(0).standard_normal(u0.shape)
    target = random_initial_conditions(2, 32, seed=18)

    def loss_np(u):
        return float(((solver.rollout(u, 10)[-1] - target) ** 2).mean())

    x = torch.tensor(u0, requires_grad=True)
    loss = ((twin.rollout(x, 10)[-1] - torch.from_numpy(target)) ** 2).mean()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    eps = 1e-6
    fd = (loss_np(u0 + eps * v) - loss_np(u0 - eps * v)) / (2 * eps)
    ad = float((x.grad.numpy() * v).sum())
    assert abs(fd - ad) <= 1e-5 * max(1.0, abs(ad)), (fd, ad)


def test_torch_twin_rejects_numpy():
    with pytest.raises(TypeError):
        TorchBurgers().step(np.zeros(DEFAULT_N))


# --------------------------------------------------------------------------
# type and stability errors
# --------------------------------------------------------------------------
def test_numpy_solver_rejects_torch_tensors_and_other_types():
    solver = BurgersSolver()
    with pytest.raises(TypeError, match="numpy float64"):
        solver.step(torch.zeros(DEFAULT_N, dtype=torch.float64))
    with pytest.raises(TypeError, match="numpy float64"):
        solver.rollout(torch.zeros(2, DEFAULT_N, dtype=torch.float64), 3)
    with pytest.raises(TypeError, match="float64"):
        solver.step(np.zeros(DEFAULT_N, dtype=np.float32))
    with pytest.raises(TypeError):
        solver.step([0.0] * DEFAULT_N)
    with pytest.raises(TypeError, match="numpy float64"):  # a correction must hand numpy back too
        solver.rollout(np.zeros(DEFAULT_N), 2, correction=lambda u: torch.from_numpy(u))
    with pytest.raises(TypeError):
        reference_trajectory(torch.zeros(DEFAULT_N, dtype=torch.float64), 2)


def test_value_error_for_unstable_dt():
    # advective limit at the declared bound max|u| <= u_max
    with pytest.raises(ValueError, match="unstable time step"):
        BurgersSolver(32, 0.01, 0.5)
    # diffusive limit, whatever the state
    with pytest.raises(ValueError, match="diffusion"):
        BurgersSolver(32, 1.0, 0.1, u_max=None)
    # a state larger than the CFL allows
    solver = BurgersSolver(32, 0.01, 0.1, u_max=None)
    with pytest.raises(ValueError, match="unstable time step for this state"):
        solver.step(3.0 * np.sin(solver.x))
    # more substeps, or the adaptive rule, make the same dt stable
    assert BurgersSolver(32, 0.01, 0.5, substeps=5).rollout(random_initial_conditions(2, 32, 0), 4).shape == (5, 2, 32)
    adaptive = BurgersSolver(32, 0.01, 0.5, substeps=None)
    u = adaptive.rollout(3.0 * np.sin(adaptive.x), 4)
    assert np.abs(u).max() <= 3.0 + 1e-12
    with pytest.raises(ValueError, match="not finite"):
        adaptive.step(np.full(32, np.nan))


def test_default_dt_is_stable_for_default_initial_conditions():
    solver = BurgersSolver()
    u0 = random_initial_conditions(64, DEFAULT_N, seed=99)
    assert np.abs(u0).max() <= solver.scheme.u_max
    assert solver.scheme.stability_number(solver.dt, solver.scheme.u_max) <= solver.scheme.cfl
    solver.rollout(u0, DEFAULT_STEPS)  # does not raise


# --------------------------------------------------------------------------
# initial conditions and grid transfer
# --------------------------------------------------------------------------
def test_initial_conditions_are_deterministic():
    a = random_initial_conditions(4, 32, seed=42)
    b = random_initial_conditions(4, 32, seed=42)
    c = random_initial_conditions(4, 32, seed=43)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert initial_condition_fn(7) == initial_condition_fn(7)
    assert initial_condition_fn(7) != initial_condition_fn(8)
    assert np.array_equal(a[2], initial_condition_fns(4, 42)[2].cell_averages(32))
    # smooth, bounded, periodic
    ic = initial_condition_fn(5, amplitude=1.5, mean_range=0.3)
    x = np.linspace(0.0, 2 * np.pi, 1001)
    assert np.abs(ic(x)).max() <= ic.bound + 1e-12 <= 1.8 + 1e-12
    assert abs(ic(0.0) - ic(2 * np.pi)) < 1e-12


def test_cell_averages_are_consistent_across_resolutions():
    ic = initial_condition_fn(9, mean_range=0.5)
    fine = ic.cell_averages(256)
    assert np.abs(restrict_cell_averages(fine, 32) - ic.cell_averages(32)).max() < 1e-14
    assert np.abs(lift_cell_averages(ic.cell_averages(32), 256) - fine).max() < 1e-12
    # the cell average converges to the point value at the centre
    x = (np.arange(4096) + 0.5) * 2 * np.pi / 4096
    assert np.abs(ic.cell_averages(4096) - ic(x)).max() < 1e-5
    # an exact midpoint-rule check of one cell average
    n, j = 8, 3
    xs = np.linspace(j * 2 * np.pi / n, (j + 1) * 2 * np.pi / n, 20001)
    assert abs(np.trapezoid(ic(xs), xs) / (2 * np.pi / n) - ic.cell_averages(n)[j]) < 1e-8


def test_reference_rejects_mismatched_initial_conditions():
    ics = initial_condition_fns(2, seed=1)
    u0 = random_initial_conditions(2, 32, seed=2)
    with pytest.raises(ValueError, match="does not match"):
        reference_trajectory(u0, 2, initial=ics)
    assert isinstance(ics[0], FourierInitialCondition)


def test_repr_shows_non_defaults():
    assert repr(BurgersSolver()) == "BurgersSolver(n=32)"
    assert "reconstruction='vanleer'" in repr(BurgersSolver(reconstruction="vanleer", dt=0.05))
