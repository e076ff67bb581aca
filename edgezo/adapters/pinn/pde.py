"""PDEs for physics-informed training, declared as a residual of (x, u, ∇u, ∂²u).

A :class:`PDE` says

* its inputs: ``dim`` coordinates, sampled uniformly from a box (``lower``,
  ``upper``) for collocation and test points;
* its residual ``R(x, u, ∇u, diag ∇²u)`` — zero where u solves the equation —
  written once for any leading axes (a Stein estimate for q parameter sets
  has shape (q, B), the autograd baseline (B,));
* which diagonal second derivatives the residual reads (``second_dims``; the
  autograd baseline computes only those);
* a hard constraint ``u = g(x) + a(x) · N(x)`` that wraps the network output N
  (Lagaris et al. 1998), so the constrained condition holds exactly;
* the closed-form solution, for the test metric.

Registered PDEs (:data:`PDES`, built by :func:`build_pde` from a recipe's
``[pde]`` table; docs/pinn.md):

``hjb``  Hamilton–Jacobi–Bellman (docs/methods/stein-pinn.md; Zhao et al. 2023, arXiv:2308.09858)::

    ∂_t u + Δ_x u − 0.05 ‖∇_x u‖² = −2,   x ∈ [0,1]^d, t ∈ [0,1]   (d = 20: 21 inputs)
    u(x, 1) = Σ_i x_i   — hard:  u = Σ_i x_i + (1 − t) · N(x, t)
    exact:  u = Σ_i x_i + (2 − 0.05 d)(1 − t)      (= Σ_i x_i + 1 − t for d = 20)

  With the constraint the exact network output is N ≡ 1 (d = 20), and N ≡ 0
  (the constraint alone) scores a relative L2 error of about 5.5e-2 on [0,1]^21.
  Only terminal data is given, so functions driven from the boundary of the
  cube nearly solve the equation too, and the PINN loss is flat along them:
  a first-order PINN (default init) reached a training loss of 1e-5 with a
  test error still at 3e-3 — N ≈ 0.89 at t = 0, its Laplacian (ΔN ≈ −0.19)
  cancelling the residual. The network's initial scale decides how far such
  modes go (models/recipes/hjb20.toml).

``heat``  heat equation with zero Dirichlet data on the cube::

    ∂_t u = κ Δ_x u,   κ = 1/(π√d),   x ∈ [0,1]^d, t ∈ [0,1]
    u = 0 on ∂[0,1]^d,   u(x, 0) = Π_i sin(π x_i)
    hard:   u = Π_i sin(π x_i) + t · Π_i 4 x_i (1 − x_i) · N(x, t)
    exact:  u = e^{−π√d t} Π_i sin(π x_i)

  The constraint holds the initial and the boundary data exactly, so the
  problem is well posed (with terminal or initial data only, a problem on a
  box has many solutions driven from its boundary). κ is chosen so that the
  decay rate λ = κ d π² equals π√d: then ∂_t²u + Δ_x u = (λ² − d π²) u = 0, the
  solution is harmonic in (x, t) (on all of R^{d+1}), and a harmonic function
  equals its own average over any isotropic Gaussian (mean-value property).
  The Stein-smoothed exact solution is therefore the exact solution, as for
  HJB (where u is linear): the smoothing adds no bias at the optimum. (The
  level-3 rule is not exact for sines; its quadrature error remains.)

  ``rate = λ`` sets another decay rate (κ = λ/(d π²)); the exact solution is
  then not harmonic, but its Gaussian average is c·u* for a constant c (each
  factor sin(π x_i) is scaled by e^{−σ²π²/2}, e^{−λt} by e^{σ²λ²/2}), which
  solves the linear homogeneous equation too, so the smoothing still adds no
  bias at the optimum. Recipe ``heat10``: d = 10, λ = 1 (docs/pinn.md).

``hjb-sines``  HJB with a forcing and a nonlinear (sine) terminal condition::

    ∂_t u + Δ_x u − c ‖∇_x u‖² = f,   x ∈ [0,1]^d, t ∈ [0,1],  c = 0.05
    u*(x, t) = e^{K(t−1)} [sin(k₁·x) + cos(k₂·x)],  k₁ = K(1,…,1)/√d, k₂ = K(1,−1,1,…)/√d
    f = (K − K²) u* − c ‖∇_x u*‖²   (∂_t u* = K u*, Δ_x u* = −K² u*)
    hard:  u = u*(x, 1) + (1 − t) · N(x, t)

  u* is harmonic in (x, t) (|k₁| = |k₂| = K), so its Gaussian average is
  itself. With terminal data only, the problem on the box is not well posed:
  first-order training on d = 10 drove the loss to 2e-3 with the test error
  still at 0.45 (docs/pinn.md), so it is not a benchmark PDE.

``poisson-ball``  Poisson's equation in the unit ball with zero Dirichlet data::

    Δu = f,   |x| < 1 in R^d,   u = 0 on |x| = 1
    u*(x) = (1 − |x|²) s(x),   s = sin(k₁·x) + cos(k₂·x),   |k₁| = |k₂| = K  (k as for hjb-sines)
    f = Δu* = −K² (1 − |x|²) s − 4 (p₁ cos p₁ − p₂ sin p₂) − 2d s,   p_j = k_j·x
    hard:  u = (1 − |x|²) · N(x)

  Elliptic and well posed (the Dirichlet data on the whole boundary are held
  by the constraint). The exact network output N* = s is two plane waves at
  wave number K (``freq``, default 4) along directions no coordinate axis
  shares: two units of a trained sine layer represent it, while a least-squares
  fit of a fixed random sine dictionary does not (docs/pinn.md). Points are
  uniform in the ball. The Gaussian smoothing of the Stein estimators is not
  exact here (u* is not harmonic): its bias at the optimum is O(σ²(K² + d)).
  Recipe ``poisson10``: d = 10, K = 4 — the benchmark's second PDE.

Coordinates: the time is the last input (index ``dim − 1``) for the
time-dependent PDEs; ``poisson-ball`` has none.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["PDE", "HJB", "Heat", "HJBSines", "PoissonBall", "PDES", "build_pde", "relative_l2"]


def relative_l2(pred: torch.Tensor, exact: torch.Tensor) -> float:
    """‖pred − exact‖₂ / ‖exact‖₂ over all points."""
    pred, exact = pred.reshape(-1).double(), exact.reshape(-1).double()
    return float(torch.linalg.norm(pred - exact) / torch.linalg.norm(exact))


class PDE(abc.ABC):
    """A PDE on a box with a hard constraint and a closed-form solution (see the module docstring)."""

    name: str = "pde"
    dim: int
    lower: float = 0.0
    upper: float = 1.0

    @property
    def second_dims(self) -> tuple[int, ...]:
        """Input dimensions whose second derivative the residual reads."""
        return tuple(range(self.dim))

    @abc.abstractmethod
    def residual(self, x: torch.Tensor, u: torch.Tensor, grad: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """R at points x (B, dim): u (..., B), grad and second (..., B, dim) → (..., B)."""

    def hard_constraint(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(g, a)`` at points x (*rows, dim), each (*rows), for ``u = g + a·N``; None: u = N."""
        return None

    def constrain(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """u from the network output N (``out``, shape (..., *rows)) at points x (*rows, dim)."""
        ga = self.hard_constraint(x)
        return out if ga is None else ga[0] + ga[1] * out

    @abc.abstractmethod
    def exact(self, x: torch.Tensor) -> torch.Tensor:
        """The closed-form solution at x (N, dim) → (N,)."""

    def sample(self, n: int, generator: torch.Generator, *, dtype=torch.float64, device=None) -> torch.Tensor:
        """n points uniform in the box, (n, dim)."""
        u = torch.rand(n, self.dim, generator=generator, dtype=dtype)
        return (self.lower + (self.upper - self.lower) * u).to(device)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.describe().items() if k != 'name')})"


class HJB(PDE):
    """∂_t u + Δ_x u − c ‖∇_x u‖² = −2, u(x, 1) = Σ x_i, c = 0.05; exact Σ x_i + (2 − c d)(1 − t)"""

    name = "hjb"

    def __init__(self, space_dim: int = 20, coeff: float = 0.05):
        if int(space_dim) < 1:
            raise ValueError(f"space_dim must be >= 1, got {space_dim}")
        self.space_dim = int(space_dim)
        self.dim = self.space_dim + 1
        self.coeff = float(coeff)

    @property
    def second_dims(self) -> tuple[int, ...]:
        return tuple(range(self.space_dim))

    def residual(self, x, u, grad, second):
        d = self.space_dim
        gx = grad[..., :d]
        return grad[..., d] + second[..., :d].sum(-1) - self.coeff * (gx * gx).sum(-1) + 2.0

    def hard_constraint(self, x):
        d = self.space_dim
        return x[..., :d].sum(-1), 1.0 - x[..., d]

    def exact(self, x):
        d = self.space_dim
        return x[..., :d].sum(-1) + (2.0 - self.coeff * d) * (1.0 - x[..., d])

    def describe(self):
        return {"name": self.name, "space_dim": self.space_dim, "coeff": self.coeff}


class Heat(PDE):
    """∂_t u = κ Δ_x u, zero Dirichlet data, u(x, 0) = Π sin(m_i π x_i) (module docstring).

    ``modes`` m_i (positive integers, default all 1) set each coordinate's frequency; the exact
    solution decays at the single rate λ = κ π² Σ m_i², default π √(Σ m_i²) (harmonic in (x, t)).
    """

    name = "heat"

    def __init__(self, space_dim: int = 3, rate: float | None = None, modes: list[int] | None = None):
        if int(space_dim) < 1:
            raise ValueError(f"space_dim must be >= 1, got {space_dim}")
        if rate is not None and float(rate) <= 0:
            raise ValueError(f"rate (the decay rate λ of the exact solution) must be > 0, got {rate}")
        self.space_dim = int(space_dim)
        self.dim = self.space_dim + 1
        modes = [1] * self.space_dim if modes is None else list(modes)
        if len(modes) != self.space_dim or any(int(m) != m or m < 1 for m in modes):
            raise ValueError(f"modes must be {self.space_dim} positive integers (one frequency per space "
                             f"coordinate, so that u vanishes on the faces), got {modes}")
        self.modes = [int(m) for m in modes]
        self._frequencies = torch.tensor(self.modes, dtype=torch.float64) * math.pi
        wave_sq = sum(m * m for m in self.modes)
        self.rate = math.pi * math.sqrt(wave_sq) if rate is None else float(rate)
        self.kappa = self.rate / (wave_sq * math.pi**2)

    @property
    def second_dims(self) -> tuple[int, ...]:
        return tuple(range(self.space_dim))

    def _initial(self, x):
        freq = self._frequencies.to(dtype=x.dtype, device=x.device)
        return torch.sin(freq * x[..., : self.space_dim]).prod(-1)

    def residual(self, x, u, grad, second):
        return grad[..., self.space_dim] - self.kappa * second[..., : self.space_dim].sum(-1)

    def hard_constraint(self, x):
        xs = x[..., : self.space_dim]
        return self._initial(x), x[..., self.space_dim] * (4.0 * xs * (1.0 - xs)).prod(-1)

    def exact(self, x):
        return torch.exp(-self.rate * x[..., self.space_dim]) * self._initial(x)

    def describe(self):
        out = {"name": self.name, "space_dim": self.space_dim, "rate": self.rate}
        if any(m != 1 for m in self.modes):
            out["modes"] = self.modes
        return out


class HJBSines(PDE):
    """HJB with a forcing and a sine terminal condition whose solution is harmonic in (x, t) (module docstring).

    ∂_t u + Δ_x u − c‖∇_x u‖² = f,  u* = e^{K(t−1)} [sin(k₁·x) + cos(k₂·x)],  |k₁| = |k₂| = K.
    """

    name = "hjb-sines"

    def __init__(self, space_dim: int = 10, coeff: float = 0.05, freq: float = 2.0):
        if int(space_dim) < 2:
            raise ValueError(f"space_dim must be >= 2, got {space_dim}")
        if float(freq) <= 0:
            raise ValueError(f"freq must be > 0, got {freq}")
        self.space_dim = int(space_dim)
        self.dim = self.space_dim + 1
        self.coeff = float(coeff)
        self.freq = float(freq)
        signs = torch.tensor([(-1.0) ** i for i in range(self.space_dim)], dtype=torch.float64)
        self.k1 = torch.full((self.space_dim,), self.freq / math.sqrt(self.space_dim), dtype=torch.float64)
        self.k2 = signs * self.freq / math.sqrt(self.space_dim)

    @property
    def second_dims(self) -> tuple[int, ...]:
        return tuple(range(self.space_dim))

    def _waves(self, x):
        xs = x[..., : self.space_dim]
        return xs @ self.k1.to(x), xs @ self.k2.to(x)

    def _terminal(self, x):
        p1, p2 = self._waves(x)
        return torch.sin(p1) + torch.cos(p2)

    def _forcing(self, x):
        """f = (K − K²) u* − c ‖∇_x u*‖² (∂_t u* = K u*, Δ_x u* = −K² u*)."""
        p1, p2 = self._waves(x)
        decay = torch.exp(self.freq * (x[..., self.space_dim] - 1.0))
        u = decay * (torch.sin(p1) + torch.cos(p2))
        g = decay.unsqueeze(-1) * (torch.cos(p1).unsqueeze(-1) * self.k1.to(x)
                                   - torch.sin(p2).unsqueeze(-1) * self.k2.to(x))
        return (self.freq - self.freq**2) * u - self.coeff * (g * g).sum(-1)

    def residual(self, x, u, grad, second):
        d = self.space_dim
        gx = grad[..., :d]
        return grad[..., d] + second[..., :d].sum(-1) - self.coeff * (gx * gx).sum(-1) - self._forcing(x)

    def hard_constraint(self, x):
        return self._terminal(x), 1.0 - x[..., self.space_dim]

    def exact(self, x):
        return torch.exp(self.freq * (x[..., self.space_dim] - 1.0)) * self._terminal(x)

    def describe(self):
        return {"name": self.name, "space_dim": self.space_dim, "coeff": self.coeff, "freq": self.freq}


class PoissonBall(PDE):
    """Δu = f in the unit ball of R^d, u = 0 on its sphere; u* = (1 − |x|²)·[sin(k₁·x) + cos(k₂·x)] (module docstring).

    The exact network output is N* = sin(k₁·x) + cos(k₂·x), two plane waves of frequency K = |k₁| = |k₂|:
    two units of a trained first sine layer represent it, a fixed random dictionary does not.
    """

    name = "poisson-ball"

    def __init__(self, space_dim: int = 10, freq: float = 4.0):
        if int(space_dim) < 2:
            raise ValueError(f"space_dim must be >= 2, got {space_dim}")
        if float(freq) <= 0:
            raise ValueError(f"freq (the wave number K of the exact solution) must be > 0, got {freq}")
        self.space_dim = self.dim = int(space_dim)
        self.freq = float(freq)
        signs = torch.tensor([(-1.0) ** i for i in range(self.dim)], dtype=torch.float64)
        self.k1 = torch.full((self.dim,), self.freq / math.sqrt(self.dim), dtype=torch.float64)
        self.k2 = signs * self.freq / math.sqrt(self.dim)

    def _waves(self, x):
        return x @ self.k1.to(x), x @ self.k2.to(x)

    def _forcing(self, x):
        """f = Δu* = −K²(1 − r²) s − 4 x·∇s − 2d s, with s = sin p₁ + cos p₂, x·∇s = p₁ cos p₁ − p₂ sin p₂."""
        p1, p2 = self._waves(x)
        s = torch.sin(p1) + torch.cos(p2)
        radial = p1 * torch.cos(p1) - p2 * torch.sin(p2)
        bump = 1.0 - (x * x).sum(-1)
        return -self.freq**2 * bump * s - 4.0 * radial - 2.0 * self.dim * s

    def residual(self, x, u, grad, second):
        return second.sum(-1) - self._forcing(x)

    def hard_constraint(self, x):
        return torch.zeros_like(x[..., 0]), 1.0 - (x * x).sum(-1)

    def exact(self, x):
        p1, p2 = self._waves(x)
        return (1.0 - (x * x).sum(-1)) * (torch.sin(p1) + torch.cos(p2))

    def sample(self, n, generator, *, dtype=torch.float64, device=None):
        """n points uniform in the unit ball: a uniform direction times a radius U^{1/d}."""
        direction = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        direction = direction / torch.linalg.norm(direction, dim=-1, keepdim=True)
        radius = torch.rand(n, 1, generator=generator, dtype=dtype) ** (1.0 / self.dim)
        return (radius * direction).to(device)

    def describe(self):
        return {"name": self.name, "space_dim": self.space_dim, "freq": self.freq}


PDES: dict[str, Callable[..., PDE]] = {"hjb": HJB, "heat": Heat, "hjb-sines": HJBSines, "poisson-ball": PoissonBall}


def build_pde(spec: dict[str, Any] | str) -> PDE:
    """``{"kind": "hjb", "space_dim": 20}`` → a :class:`PDE`."""
    spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.pop("kind", None)
    if kind not in PDES:
        raise ValueError(f"unknown PDE {kind!r}; available: {', '.join(PDES)}")
    try:
        return PDES[kind](**spec)
    except TypeError as err:
        raise ValueError(f"bad options for PDE {kind!r}: {err}") from None
