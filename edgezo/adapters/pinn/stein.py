"""Stein derivative estimators: derivatives of a Gaussian-smoothed function from forward passes.

For a scalar function ``f: R^D → R`` (a network) and a smoothing scale σ, the
smoothed function ``u_σ(x) = E_{δ~N(0,σ²I)} f(x+δ)`` has, by Stein's identity
(docs/methods/stein-pinn.md; the sparse-grid variant is from the BP-free PINN work of
Zhao, Yu, Chen, Liu, Liu, Zhang 2023, arXiv:2308.09858 and its follow-up), with
``δ = σ z`` and a quadrature rule ``(z_j, w_j)`` for N(0, I)::

    u            = Σ_j w_j f(x + σ z_j)
    ∂u/∂x_i      = Σ_j w_j z_j,i (f(x + σ z_j) − f(x − σ z_j)) / (2σ)
    ∂²u/∂x_i²    = Σ_j w_j (z_j,i² − 1)(f(x + σ z_j) + f(x − σ z_j) − 2 f(x)) / (2σ²)
    Δu           = Σ_i ∂²u/∂x_i²      (over any subset of the dimensions)

Only forward evaluations of ``f`` are used — no autograd.

Evaluation scheme
-----------------
The rule is made exactly symmetric first: a rule that already is (the sparse
grid, antithetic Monte Carlo) is used as it is; otherwise the rule is
symmetrised, ``{(z_j, w_j/2), (−z_j, w_j/2)}``, which leaves the gradient and
second-derivative formulas above unchanged (and turns the value estimate into
its antithetic form). With a symmetric rule the formulas are

    g_j   = f(x + σ z_j) − f(x)                (f(x) subtracted first)
    u     = f(x) + Σ_j w_j g_j
    ∇u    = Σ_j w_j z_j g_j / σ
    ∂²u_i = Σ_j w_j (z_j,i² − 1) g_j / σ²

so ``f`` is evaluated **once per node** (not twice per pair). ``f(x)`` is the
centre node's value when the rule contains z = 0 (every Smolyak level does);
otherwise a zero-weight centre node is added. The number of rows through ``f``
per call is therefore exactly ``B × evaluations_per_point`` with

    sparse grid (dim D, level L):  n_nodes(D, L)           (925 for D=21, L=3; 43 for L=2)
    Monte Carlo, antithetic:       2·samples + 1           (2049 for samples=1024)
    Monte Carlo, not antithetic:   2·samples + 1           (symmetrised)

and that count is returned in ``SteinResult.evaluations``.

All ``B × n`` rows go through ``f`` as one batched call, split into chunks of at
most ``max_batch`` rows (each chunk gathered on the fly: row r is point
``r // n`` with node ``r % n``). Memory bound per chunk: the input
``max_batch × D × 8`` bytes plus ``f``'s activations for ``max_batch`` rows
(about ``max_batch × Σ widths × 8`` bytes for an MLP, when run without autograd),
plus the ``B × n`` float64 output matrix. The default ``max_batch = 2**17``
with D = 21 is 22 MB of input and 0.5 GB per 512-wide activation; lower it
for wide networks.

Dtype requirement: float64
--------------------------
The level-3 weights reach 204 and −10 and the second derivative divides by
σ² = 1e-2 (docs/methods/stein-pinn.md), so a rounding error ε·|f| in each node value
becomes ≈ ε·|f|·Σ|w(z_i²−1)|/σ² in the Laplacian. The inputs ``x + σ z`` are
therefore built in float64 and, by default (``dtype=torch.float64``), ``f``
must take and return float64 (call ``net.double()``); a non-float64 output
raises ``TypeError``. ``f(x)`` is subtracted from every node value before the
weighted sums (the weights of z and of z² − 1 sum to zero), and the sums are
float64 matrix products. Passing ``dtype=torch.float32`` feeds float32 rows to
``f`` (sums stay float64) — only to measure the damage. Measured (tests):

    HJB-20 residual ∂_t u + Δ_x u − 0.05‖∇_x u‖² + 2, level 3, σ = 0.1
    at the exact solution (true residual 0):      float64 1.2e-9, float32 0.37
    random 21-32-32-1 sine net (residual ≈ 1.2),
    against the same quadrature in 80-bit long double:  float64 1.1e-9, float32 0.23

The float64 error (~1e-9, about ε₆₄·|u|·Σ|w(z²−1)|/σ² with |u| ≈ 10) is the
floor of this scheme; it is far below any training signal.

Measured accuracy
-----------------
21-32-32-1 sine network, float64, default ``nn.Linear`` init (seed 0), 100
uniform points in [0, 1]^21, σ = 0.1. Relative error ‖est − ref‖/‖ref‖ over
all points of the gradient (21 components) and of the Laplacian over the first
20 dimensions, against (a) autograd derivatives of the *unsmoothed* network and
(b) the derivatives of u_σ itself (a level-5 sparse grid, 145,293 nodes, as
reference). Evaluations are rows of ``f`` per point; Monte Carlo rows are the
median over seeds 0–4::

                                           vs autograd of f     vs u_σ (level 5)
    rule                      evals/point  grad      Laplacian  grad      Laplacian
    sparse grid, level 2             43    8.4e-05   1.1e+01    2.1e-03   1.1e+01
    sparse grid, level 3            925    2.2e-03   1.7e-02    3.8e-06   2.1e-02
    sparse grid, level 4          13329    2.2e-03   3.9e-03    9.6e-09   6.3e-05
    Monte Carlo,    64 pairs        129    5.4e-01   8.2e-01    5.4e-01   8.2e-01
    Monte Carlo,   256 pairs        513    2.8e-01   5.1e-01    2.8e-01   5.1e-01
    Monte Carlo,  1024 pairs       2049    1.4e-01   2.5e-01    1.4e-01   2.5e-01
    Monte Carlo,  4096 pairs       8193    6.9e-02   1.8e-01    6.9e-02   1.8e-01
    Monte Carlo, 16384 pairs      32769    3.3e-02   8.1e-02    3.3e-02   7.9e-02

Reading: the level-3 gradient is the gradient of u_σ to 4e-6; its 2.2e-3
distance from ∇f is the O(σ²) smoothing bias (≈ σ²/2 ∇Δf), which levels 3 and
4 share. The level-3 Laplacian carries a 2% quadrature error (degree-6 terms,
O(σ²) as well). Level 2 is only exact to degree 3: its ``z_i² − 1`` weights
vanish on the axis-i nodes, so its second derivatives are meaningless (its
gradient is the plain central difference, which is why it sits closer to ∇f).
Monte Carlo with 35× level 3's evaluations (32,769 per point) still has a 5×
larger Laplacian error and a 15× larger gradient error against autograd (10⁴×
against u_σ): sampling noise, where the sparse grid has none. Reproduce with
``python -m edgezo.adapters.pinn.stein`` (about a minute on 2 cores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .sparse_grid import monte_carlo_normal, smolyak_gauss_hermite

__all__ = ["SteinDerivatives", "SteinResult", "symmetrize_rule"]

_RULES = ("sparse_grid", "monte_carlo")


@dataclass(frozen=True)
class SteinResult:
    """Estimates at ``B`` points; all tensors float64.

    value: (B,) smoothed value u_σ(x).
    grad: (B, D) gradient of u_σ.
    second: (B, D) diagonal second derivatives ∂²u_σ/∂x_i².

    (From :meth:`SteinDerivatives.combine` every field may carry leading axes,
    e.g. (q, B) and (q, B, D) for q parameter sets.)
    evaluations: number of rows that went through ``f`` in this call.
    """

    value: torch.Tensor
    grad: torch.Tensor
    second: torch.Tensor
    evaluations: int

    def laplacian(self, dims: Sequence[int] | slice | None = None) -> torch.Tensor:
        """Σ_i ∂²u/∂x_i² over ``dims`` (all dimensions when None), shape (B,)."""
        if dims is None:
            return self.second.sum(dim=-1)
        if isinstance(dims, slice):
            return self.second[..., dims].sum(dim=-1)
        idx = torch.as_tensor(list(dims), dtype=torch.long, device=self.second.device)
        return self.second.index_select(-1, idx).sum(dim=-1)


def symmetrize_rule(nodes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Return an exactly symmetric rule containing the centre, and the centre's index.

    If every node's negation is a node with the same weight (to 1e-12 keys and
    relative weights), the rule is kept; otherwise it becomes
    ``{(z, w/2), (−z, w/2)}``. A zero-weight centre node is appended when the
    rule has no node at z = 0.
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if nodes.ndim != 2 or weights.shape != (nodes.shape[0],):
        raise ValueError(f"nodes must be (n, D) and weights (n,), got {nodes.shape} and {weights.shape}")
    keys = np.round(nodes / 1e-12).astype(np.int64)
    _, inv = np.unique(np.concatenate([keys, -keys]), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    n = len(nodes)
    pos_of = np.full(inv.max() + 1, -1, dtype=np.int64)
    pos_of[inv[:n]] = np.arange(n)
    mirror = pos_of[inv[n:]]
    symmetric = bool(np.all(mirror >= 0)) and np.allclose(
        weights[np.maximum(mirror, 0)], weights, rtol=1e-12, atol=1e-15 * np.abs(weights).max()
    )
    if not symmetric:
        nodes = np.concatenate([nodes, -nodes])
        weights = np.concatenate([weights, weights]) / 2
    centre = np.flatnonzero(np.all(nodes == 0.0, axis=1))
    if len(centre) == 0:
        nodes = np.concatenate([nodes, np.zeros((1, nodes.shape[1]))])
        weights = np.append(weights, 0.0)
        return nodes, weights, len(nodes) - 1
    return nodes, weights, int(centre[0])


class SteinDerivatives:
    """Forward-only value, gradient and diagonal second derivatives of u_σ = E f(x + σz).

    Args:
        rule: ``"sparse_grid"`` (Smolyak Gauss–Hermite, deterministic) or
            ``"monte_carlo"`` (antithetic Gaussian samples).
        dim: input dimension D of ``f``.
        sigma: smoothing scale σ (docs/methods/stein-pinn.md uses 0.1).
        level: Smolyak level for ``"sparse_grid"`` (3: exact to degree 5; use ≥ 3
            for second derivatives).
        samples: number of antithetic pairs for ``"monte_carlo"``
            (``2·samples + 1`` evaluations per point).
        seed: Monte Carlo seed.
        resample: Monte Carlo only — draw fresh samples on every call (from a
            generator seeded with ``seed``) instead of reusing the first draw.
        antithetic: Monte Carlo only — pairs ``±z`` (default) or plain samples
            (which are symmetrised, so the cost is the same).
        max_batch: at most this many rows go through ``f`` in one call.
        dtype: dtype of the rows fed to ``f``; must be float64 unless you are
            measuring the low-precision error (see module docstring).
        track_grad: run ``f`` with autograd enabled (default: under
            ``torch.no_grad()``, which is what forward-only training needs).

    Call ``est(f, x)`` with ``x`` of shape (B, D) and ``f`` mapping (N, D) to (N,)
    or (N, 1); returns a :class:`SteinResult`.
    """

    def __init__(
        self,
        rule: str = "sparse_grid",
        *,
        dim: int,
        sigma: float = 0.1,
        level: int = 3,
        samples: int = 1024,
        seed: int = 0,
        resample: bool = False,
        antithetic: bool = True,
        max_batch: int = 2**17,
        dtype: torch.dtype = torch.float64,
        track_grad: bool = False,
    ) -> None:
        if rule not in _RULES:
            raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.rule = rule
        self.dim = int(dim)
        self.sigma = float(sigma)
        self.level = int(level)
        self.samples = int(samples)
        self.seed = int(seed)
        self.resample = bool(resample)
        self.antithetic = bool(antithetic)
        self.max_batch = int(max_batch)
        self.dtype = dtype
        self.track_grad = bool(track_grad)
        self._rng = np.random.default_rng(self.seed)
        self._device_cache: dict = {}
        self._calls = 0
        if rule == "sparse_grid":
            self._set_rule(*smolyak_gauss_hermite(self.dim, self.level))
        else:
            self._set_rule(*self._draw_mc())

    def __repr__(self) -> str:
        if self.rule == "sparse_grid":
            extra = f"level={self.level}"
        else:
            extra = f"samples={self.samples}, seed={self.seed}, resample={self.resample}"
        return (
            f"SteinDerivatives({self.rule!r}, dim={self.dim}, sigma={self.sigma}, {extra}, "
            f"evaluations_per_point={self.evaluations_per_point})"
        )

    def _draw_mc(self) -> tuple[np.ndarray, np.ndarray]:
        seed = int(self._rng.integers(2**63)) if self.resample else self.seed
        return monte_carlo_normal(self.dim, self.samples, seed=seed, antithetic=self.antithetic)

    def _set_rule(self, nodes: np.ndarray, weights: np.ndarray) -> None:
        z, w, centre = symmetrize_rule(nodes, weights)
        self.nodes = z  # (n, D) float64, the evaluation nodes
        self.weights = w  # (n,) float64
        self.centre = centre
        # Weighted moment matrices (n, D): w z and w (z² − 1).
        self._wz = w[:, None] * z
        self._wq = w[:, None] * (z * z - 1.0)
        self._device_cache = {}

    @property
    def evaluations_per_point(self) -> int:
        """Rows of ``f`` per input point in one call."""
        return len(self.weights)

    def _tensors(self, device: torch.device):
        t = self._device_cache.get(device)
        if t is None:
            t = tuple(
                torch.tensor(np.array(a), dtype=torch.float64, device=device)
                for a in (self.nodes, self.weights, self._wz, self._wq)
            )
            self._device_cache[device] = t
        return t

    def node_shifts(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The offsets ``σ z_j`` (n, D), float64: row j of a point x is ``x + σ z_j``."""
        return self.sigma * self._tensors(torch.device(device))[0]

    def reseed(self, seed: int) -> None:
        """Monte Carlo only: use the samples drawn from ``seed`` from now on (deterministic in ``seed``).

        Lets a caller tie the samples to something other than the call count,
        e.g. draw fresh samples per training step but reuse them for every
        perturbed parameter set of that step (finite differences need the
        same nodes on both sides).
        """
        if self.rule != "monte_carlo":
            raise ValueError("reseed() applies to the Monte Carlo rule only; the sparse grid is deterministic")
        self._set_rule(*monte_carlo_normal(self.dim, self.samples, seed=int(seed), antithetic=self.antithetic))

    def combine(self, F: torch.Tensor) -> SteinResult:
        """The estimates from node values ``F[..., b, j] = f(x_b + σ z_j)`` (float64, any leading axes).

        ``f(x)`` (the centre column) is subtracted first; the sums are float64
        matrix products (see the module docstring).
        """
        if F.shape[-1] != self.evaluations_per_point:
            raise ValueError(f"F must have {self.evaluations_per_point} node values in its last axis, "
                             f"got shape {tuple(F.shape)}")
        if F.dtype != torch.float64:
            raise TypeError(f"F is {F.dtype}; Stein sums need float64 node values")
        _, w, wz, wq = self._tensors(F.device)
        f0 = F[..., self.centre]
        G = F - f0.unsqueeze(-1)
        return SteinResult(value=f0 + G @ w, grad=(G @ wz) / self.sigma,
                           second=(G @ wq) / (self.sigma * self.sigma), evaluations=int(F.numel()))

    def evaluate_nodes(self, f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``F[b, j] = f(x_b + σ z_j)`` as a (B, n) float64 matrix, chunked by ``max_batch`` rows."""
        B, D = x.shape
        z = self._tensors(x.device)[0]
        n = z.shape[0]
        total = B * n
        chunks = []
        sz = self.sigma * z
        with torch.set_grad_enabled(self.track_grad and torch.is_grad_enabled()):
            for r0 in range(0, total, self.max_batch):
                r1 = min(total, r0 + self.max_batch)
                if r0 == 0 and r1 == total:
                    rows = (x[:, None, :] + sz[None, :, :]).reshape(total, D)
                else:
                    r = torch.arange(r0, r1, device=x.device)
                    rows = x.index_select(0, r // n) + sz.index_select(0, r % n)
                y = f(rows.to(self.dtype))
                if not isinstance(y, torch.Tensor):
                    y = torch.as_tensor(np.asarray(y), device=x.device)
                if self.dtype == torch.float64 and y.dtype != torch.float64:
                    raise TypeError(
                        f"f returned {y.dtype}; Stein derivatives need float64 evaluations "
                        "(call net.double(); see edgezo.adapters.pinn.stein docstring)"
                    )
                if y.numel() != r1 - r0:
                    raise ValueError(f"f must map (N, D) to (N,) or (N, 1); got {tuple(y.shape)} for N={r1 - r0}")
                chunks.append(y.reshape(-1).to(torch.float64))
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return out.reshape(B, n)

    def __call__(self, f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor | np.ndarray) -> SteinResult:
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        x = x.to(torch.float64)
        if self.rule == "monte_carlo" and self.resample and self._calls > 0:
            self._set_rule(*self._draw_mc())
        self._calls += 1
        return self.combine(self.evaluate_nodes(f, x))


def _measure(n_points: int = 100, seed: int = 0, mc_seeds: int = 5) -> list[tuple]:
    """The error-vs-evaluations table in the module docstring.

    Returns rows ``(name, evals_per_point, grad_err, lap_err, grad_err_s, lap_err_s)``:
    relative errors against autograd derivatives of the unsmoothed network, and
    against the derivatives of u_σ itself (level-5 sparse grid as reference).
    """
    torch.manual_seed(seed)
    D = 21
    net = torch.nn.Sequential(
        torch.nn.Linear(D, 32), _Sin(), torch.nn.Linear(32, 32), _Sin(), torch.nn.Linear(32, 1)
    ).double()
    f = lambda v: net(v).squeeze(-1)  # noqa: E731
    x = torch.rand(n_points, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    g_ref, lap_ref = _autograd_derivatives(f, x, range(20))
    smooth = SteinDerivatives("sparse_grid", dim=D, level=5)(f, x)
    g_s, lap_s = smooth.grad, smooth.laplacian(range(20))

    def rel(a, b):
        return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))

    def errs(r):
        lap = r.laplacian(range(20))
        return rel(r.grad, g_ref), rel(lap, lap_ref), rel(r.grad, g_s), rel(lap, lap_s)

    rows = []
    for level in (2, 3, 4):
        est = SteinDerivatives("sparse_grid", dim=D, level=level)
        rows.append((f"sparse grid, level {level}", est.evaluations_per_point, *errs(est(f, x))))
    for samples in (64, 256, 1024, 4096, 16384):
        e = []
        for s in range(mc_seeds):
            est = SteinDerivatives("monte_carlo", dim=D, samples=samples, seed=s)
            e.append(errs(est(f, x)))
        e = np.median(np.array(e), axis=0)
        rows.append((f"Monte Carlo, {samples} pairs", est.evaluations_per_point, *map(float, e)))
    return rows


class _Sin(torch.nn.Module):
    def forward(self, x):
        return torch.sin(x)


def _autograd_derivatives(f, x, lap_dims):
    """Reference gradient and Laplacian (over ``lap_dims``) of ``f`` by autograd."""
    x = x.clone().requires_grad_(True)
    y = f(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    lap = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in lap_dims:
        (h,) = torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)
        lap = lap + h[:, i]
    return g.detach(), lap.detach()


if __name__ == "__main__":  # pragma: no cover
    print(f"{'rule':<26}{'evals/pt':>9}   vs autograd: {'grad':>8}{'Lap':>9}   vs u_σ (L5): {'grad':>8}{'Lap':>9}")
    for name, ev, eg, el, egs, els in _measure():
        print(f"{name:<26}{ev:>9}   {'':>12} {eg:>8.1e}{el:>9.1e}   {'':>12} {egs:>8.1e}{els:>9.1e}")
