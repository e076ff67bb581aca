"""Initial conditions and the fine reference data of the Burgers problem.

Random band-limited Fourier initial conditions (exact cell averages), the
restriction / lift between a coarse and a fine grid, and the reference
trajectory: the fine-grid solution restricted to the coarse grid, which the
learned correction is trained to reach (docs/methods/solver-in-the-loop.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .scheme import (
    DEFAULT_AMPLITUDE,
    DEFAULT_REFERENCE_CFL,
    DEFAULT_REFERENCE_RECONSTRUCTION,
    DEFAULT_REFINE,
    DOMAIN_LENGTH,
    BurgersScheme,
    cell_centers,
)
from .solvers import BurgersSolver


@dataclass(frozen=True)
class FourierInitialCondition:
    r"""``u0(x) = mean + Σ_{k=1..K} (a_k cos kx + b_k sin kx)``.

    The same analytic function is sampled at any resolution:
    :meth:`cell_averages` integrates each mode exactly over a cell
    (cell average of :math:`e^{ikx}` = :math:`e^{ikx_j}\,\mathrm{sinc}(k\Delta x/2)`),
    so the average of 8 fine cells equals the coarse cell average to rounding.
    """

    mean: float
    cos: tuple[float, ...]
    sin: tuple[float, ...]

    @property
    def modes(self) -> int:
        return len(self.cos)

    @property
    def bound(self) -> float:
        """An upper bound on ``max_x |u0(x)|``."""
        return abs(self.mean) + float(np.sum(np.hypot(self.cos, self.sin)))

    def _series(self, x: np.ndarray, factor: np.ndarray) -> np.ndarray:
        k = np.arange(1, self.modes + 1, dtype=np.float64)
        kx = np.multiply.outer(np.asarray(x, dtype=np.float64), k)
        waves = np.cos(kx) * (factor * np.asarray(self.cos)) + np.sin(kx) * (factor * np.asarray(self.sin))
        return self.mean + waves.sum(-1)

    def __call__(self, x) -> np.ndarray:
        """Point values at ``x``."""
        return self._series(np.asarray(x, dtype=np.float64), np.ones(self.modes))

    def cell_averages(self, n: int) -> np.ndarray:
        """Exact cell averages on the n-cell grid, shape (n,)."""
        k = np.arange(1, self.modes + 1, dtype=np.float64)
        half = 0.5 * k * DOMAIN_LENGTH / n
        return self._series(cell_centers(n), np.sin(half) / half)



def initial_condition_fn(
    seed,
    *,
    modes: int = 4,
    decay: float = 1.0,
    amplitude: float = DEFAULT_AMPLITUDE,
    mean_range: float = 0.0,
) -> FourierInitialCondition:
    r"""A smooth random periodic initial condition, deterministic given ``seed``.

    Modes k = 1..``modes`` get Gaussian coefficients scaled by :math:`k^{-\mathrm{decay}}`,
    then the whole series is scaled so that :math:`\sum_k \sqrt{a_k^2 + b_k^2}`
    = ``amplitude`` (hence :math:`\max|u_0 - \mathrm{mean}| \le` ``amplitude``).
    The mean is drawn uniformly from ``[-mean_range, mean_range]`` (always drawn,
    so ``mean_range`` does not change the modes). ``seed`` is anything
    :func:`numpy.random.default_rng` accepts (an int or a sequence of ints).
    """
    if modes < 1:
        raise ValueError(f"modes must be >= 1, got {modes}")
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((2, modes))
    k = np.arange(1, modes + 1, dtype=np.float64)
    g = g / k**decay
    scale = amplitude / float(np.sum(np.hypot(g[0], g[1])))
    mean = float(rng.uniform(-1.0, 1.0)) * mean_range
    return FourierInitialCondition(
        mean=mean,
        cos=tuple(float(v) for v in g[0] * scale),
        sin=tuple(float(v) for v in g[1] * scale),
    )



def initial_condition_fns(batch: int, seed: int, **kwargs) -> list[FourierInitialCondition]:
    """``batch`` initial conditions; element i is ``initial_condition_fn((seed, i), **kwargs)``."""
    return [initial_condition_fn((int(seed), i), **kwargs) for i in range(batch)]



def random_initial_conditions(batch: int, n: int, seed: int, **kwargs) -> np.ndarray:
    """Cell averages ``(batch, n)`` of :func:`initial_condition_fns` ``(batch, seed)`` on the n-cell grid."""
    return np.stack([ic.cell_averages(n) for ic in initial_condition_fns(batch, seed, **kwargs)])



def restrict_cell_averages(u_fine: np.ndarray, n: int) -> np.ndarray:
    """Average blocks of ``n_fine // n`` fine cells onto the n-cell grid (exactly conservative)."""
    n_fine = u_fine.shape[-1]
    if n_fine % n:
        raise ValueError(f"fine grid size {n_fine} is not a multiple of {n}")
    return u_fine.reshape(u_fine.shape[:-1] + (n, n_fine // n)).mean(axis=-1)



def lift_cell_averages(u: np.ndarray, n_fine: int) -> np.ndarray:
    """Spectral interpolation of n-cell averages to ``n_fine``-cell averages.

    Reads the coarse cell averages as the trigonometric polynomial of degree
    ≤ n/2 (Nyquist mode split in half) that has them as exact cell averages,
    then takes that function's exact fine cell averages. For an initial
    condition with fewer than n/2 modes this reproduces
    :meth:`FourierInitialCondition.cell_averages` ``(n_fine)`` to rounding,
    and :func:`restrict_cell_averages` undoes it.
    """
    n = u.shape[-1]
    if n_fine < n or n_fine % n:
        raise ValueError(f"n_fine={n_fine} must be a multiple of n={n}")
    dx, dxf = DOMAIN_LENGTH / n, DOMAIN_LENGTH / n_fine
    uh = np.fft.rfft(u, axis=-1)  # n//2 + 1 bins
    k = np.arange(uh.shape[-1], dtype=np.float64)
    sinc_c = np.ones_like(k)
    sinc_f = np.ones_like(k)
    sinc_c[1:] = np.sin(0.5 * k[1:] * dx) / (0.5 * k[1:] * dx)
    sinc_f[1:] = np.sin(0.5 * k[1:] * dxf) / (0.5 * k[1:] * dxf)
    # coarse rfft bin k -> coefficient of e^{ikx} (grid starts at dx/2), point value, fine cell average, fine bin
    coef = uh * (sinc_f / sinc_c) * np.exp(-0.5j * k * (dx - dxf)) * (n_fine / n)
    if n % 2 == 0:
        coef[..., -1] *= 0.5
    fine = np.zeros(u.shape[:-1] + (n_fine // 2 + 1,), dtype=np.complex128)
    fine[..., : coef.shape[-1]] = coef
    return np.fft.irfft(fine, n=n_fine, axis=-1)



def reference_trajectory(
    u0_coarse: np.ndarray,
    steps: int,
    *,
    refine: int = DEFAULT_REFINE,
    solver: BurgersSolver | None = None,
    nu: float | None = None,
    dt: float | None = None,
    initial: Sequence[FourierInitialCondition] | FourierInitialCondition | None = None,
    reconstruction: str | None = DEFAULT_REFERENCE_RECONSTRUCTION,
    cfl: float = DEFAULT_REFERENCE_CFL,
    return_fine: bool = False,
):
    """The fine-resolution solution at the coarse times, averaged onto the coarse grid.

    Runs :class:`BurgersSolver` on ``refine * n`` cells with the ν, ``dt``
    and integrator of ``solver`` (default: a default :class:`BurgersSolver`
    with ``n = u0_coarse.shape[-1]``; ``nu``/``dt`` override) and the
    second-order ``reconstruction="vanleer"`` (``None``: the solver's own), one
    fine step per coarse step of length ``dt``, each made of adaptive
    substeps (rule in the module docstring, ``cfl = 0.5``; about 20 fine
    substeps per coarse step for the default problem).

    The fine initial condition is the same function as the coarse one:
    ``initial`` (the :class:`FourierInitialCondition` objects, one per row)
    sampled at the fine resolution, checked against ``u0_coarse``; without
    ``initial`` the coarse cell averages are lifted spectrally
    (:func:`lift_cell_averages`, exact for band-limited initial conditions).

    Returns ``(steps + 1, *u0_coarse.shape)`` (and the fine trajectory
    ``(steps + 1, ..., refine * n)`` too when ``return_fine``).
    """
    if not isinstance(u0_coarse, np.ndarray) or u0_coarse.dtype != np.float64:
        raise TypeError("reference_trajectory needs u0_coarse as a numpy float64 array")
    if u0_coarse.ndim not in (1, 2):
        raise ValueError(f"u0_coarse must have shape (n,) or (B, n), got {u0_coarse.shape}")
    if not isinstance(refine, (int, np.integer)) or refine < 1:
        raise ValueError(f"refine must be a positive integer, got {refine!r}")
    n = u0_coarse.shape[-1]
    base = solver.scheme if solver is not None else BurgersScheme(n=n, u_max=None)
    if base.n != n:
        raise ValueError(f"solver has n={base.n} but u0_coarse has {n} cells")
    n_fine = n * int(refine)
    fine_solver = BurgersSolver(
        n_fine,
        base.nu if nu is None else nu,
        base.dt if dt is None else dt,
        substeps=None,
        cfl=cfl,
        reconstruction=base.reconstruction if reconstruction is None else reconstruction,
        integrator=base.integrator,
        u_max=None,
    )
    if initial is not None:
        ics = [initial] if isinstance(initial, FourierInitialCondition) else list(initial)
        rows = u0_coarse.reshape(-1, n)
        if len(ics) != rows.shape[0]:
            raise ValueError(f"{len(ics)} initial conditions for {rows.shape[0]} rows of u0_coarse")
        coarse = np.stack([ic.cell_averages(n) for ic in ics])
        if not np.allclose(coarse, rows, rtol=0.0, atol=1e-10):
            raise ValueError("initial does not match u0_coarse (its coarse cell averages differ)")
        u0_fine = np.stack([ic.cell_averages(n_fine) for ic in ics]).reshape(u0_coarse.shape[:-1] + (n_fine,))
    else:
        u0_fine = lift_cell_averages(u0_coarse, n_fine)
    fine = fine_solver.rollout(u0_fine, steps)
    coarse_traj = restrict_cell_averages(fine, n)
    return (coarse_traj, fine) if return_fine else coarse_traj
