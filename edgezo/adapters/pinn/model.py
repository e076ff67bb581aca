"""The PDE residual of a hard-constrained network, from forward passes only.

:class:`SteinPINN` wraps an inner network N and a :class:`~edgezo.adapters.pinn.pde.PDE`.
Its ``forward(x)`` returns the residual at the collocation points x (B, D);
``forward_stacked(params, x)`` does the same for q parameter sets at once, so the
engine's :class:`~edgezo.oracles.torch_oracle.TorchOracle` (path ``"stacked"``)
evaluates every query of a zeroth-order step in one batched call, and
``loss_fn = mse`` against zero targets gives ``L(θ) = (1/B) Σ_b R_b(θ)²``.

Derivatives (``derivatives=``):

* ``"stein"`` — forward passes only (BP-free): for every point x_b the
  constrained network ``u = g + a·N`` is evaluated at the quadrature nodes
  ``x_b + σ z_j`` and :meth:`SteinDerivatives.combine` turns the values into
  ``u_σ``, ``∇u_σ`` and ``∂²u_σ`` (Stein's identity; Zhao et al. 2023,
  arXiv:2308.09858; He et al. 2023 for the Stein PINN loss). Float64 throughout.
* ``"autograd"`` — the first-order PINN baseline (Raissi et al. 2019): ∇u and
  the needed ∂²u/∂x_i² by ``torch.autograd.grad(create_graph=True)``, then the
  parameter gradient by backpropagation through them.

Batched evaluation and its memory bound
---------------------------------------
One call evaluates q parameter sets × B points × n nodes = q·B·n network rows.
They are cut into chunks of at most ``max_rows`` rows (q-chunk × point-chunk ×
node-chunk; a point's nodes are split only when n > ``max_rows``), so the
largest tensors are, for an MLP of widest layer h and D inputs,

    activations   max_rows × h × 8 bytes   (a few alive at once)
    node inputs   max_rows × D × 8 bytes
    node values   q × B × n × 8 bytes      (the output matrix F)

e.g. the default ``max_rows = 2**18``, h = 32, D = 21: 64 MB per activation,
44 MB of inputs; q = 66, B = 100, n = 925: F is 49 MB. Peak extra memory is
therefore about ``8·max_rows·(3h + D) + 8·q·B·n`` bytes (≈ 0.3 GB here);
lower ``max_rows`` (recipe ``[pinn] max_rows``) to trade speed for memory.

Inside a chunk, the inner network's own batching is used when it has it:

* ``forward_shifted(params, x, shifts)`` (:class:`edgezo.models.pinn.PINNMLP`)
  forms the first layer as ``W x_b + W σz_j`` (separable);
* ``forward_stacked(params, rows)`` otherwise (any ``MLP``/``TTMLP``);
* tensors that are identical in every query (the layers a layer-wise or
  coordinate-wise step does not perturb) are passed unstacked to networks
  with ``partial_stacked_params = True`` (``PINNMLP``, ``TTMLP``), which run the
  unperturbed prefix once for all q copies. If no tensor differs at all (a
  loss at θ), the network runs once.

``network_evaluations`` counts q·B·n nominal rows per call (what a device
without these shortcuts would run), not the reduced work; ``forward_seconds``
accumulates the time spent inside the network's forward (``edgezo bench pinn``
reports rows per second and the share of a step spent outside it). When only
the output layer is perturbed, a chunk holds ``1 + q·out/h`` activations per
row instead of q, so the chunks grow accordingly.

Monte Carlo nodes are redrawn per collocation batch (``mc_resample=True``): the
seed is a hash of the batch, so all perturbed parameter sets of a step see the
same nodes (the finite differences need that) and a resumed run redraws the
same ones.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping

import torch
from torch import nn

from ...models.protocols import ShiftedForward
from .pde import PDE
from .stein import SteinDerivatives, SteinResult

__all__ = ["SteinPINN", "DERIVATIVES"]

DERIVATIVES = ("stein", "autograd")


def _accepts_partial(net: nn.Module) -> bool:
    if getattr(net, "partial_stacked_params", False):
        return True
    try:
        from edgezo.models.ttm import TTMLP
    except Exception:  # pragma: no cover - TT models are optional
        return False
    return isinstance(net, TTMLP)


class SteinPINN(nn.Module):
    """Residual of ``pde`` for the hard-constrained network ``u = pde.constrain(x, net(x))``.

    Args:
        net: inner network mapping (N, D) → (N, 1), float64.
        pde: the equation, constraint and exact solution.
        stein: the quadrature rule (needed for ``derivatives="stein"`` and for
            :meth:`smoothed_solution`).
        derivatives: ``"stein"`` (forward only) or ``"autograd"`` (FO baseline).
        max_rows: at most this many network rows per call of the inner network.
        mc_resample: Monte Carlo rule only — new nodes for every collocation batch.
    """

    def __init__(self, net: nn.Module, pde: PDE, stein: SteinDerivatives | None = None, *,
                 derivatives: str = "stein", max_rows: int = 2**18, mc_resample: bool = True):
        super().__init__()
        if derivatives not in DERIVATIVES:
            raise ValueError(f"derivatives must be one of {DERIVATIVES}, got {derivatives!r}")
        if derivatives == "stein" and stein is None:
            raise ValueError("derivatives='stein' needs a SteinDerivatives rule")
        if stein is not None and stein.dim != pde.dim:
            raise ValueError(f"the Stein rule is {stein.dim}-dimensional but the PDE has {pde.dim} inputs")
        if int(max_rows) < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.net = net
        self.pde = pde
        self.stein = stein
        self.derivatives = derivatives
        self.max_rows = int(max_rows)
        self.mc_resample = bool(mc_resample)
        self.network_evaluations = 0
        self.forward_seconds = 0.0  # time spent inside the network's forward (throughput report)
        self._mc_key: int | None = None
        self._partial = _accepts_partial(net)
        self._shifted = isinstance(net, ShiftedForward)

    def extra_repr(self) -> str:
        return f"pde={self.pde!r}, derivatives={self.derivatives!r}, max_rows={self.max_rows}"

    # ------------------------------------------------------------------ the solution
    def solution(self, x: torch.Tensor, *, chunk: int = 2**15) -> torch.Tensor:
        """u(x) = g + a·N of the (unsmoothed) network at points x (N, D) → (N,)."""
        outs = []
        with torch.no_grad():
            for lo in range(0, x.shape[0], chunk):
                xc = x[lo : lo + chunk]
                outs.append(self.pde.constrain(xc, self.net(xc)[..., 0]))
        return torch.cat(outs)

    def smoothed_solution(self, x: torch.Tensor) -> torch.Tensor:
        """u_σ(x) = E u(x + σz) by the Stein rule's quadrature, (N,)."""
        if self.stein is None:
            raise ValueError("smoothed_solution needs a Stein rule")
        with torch.no_grad():
            return self.stein.combine(self.node_values({}, x, 1)[0]).value

    # ------------------------------------------------------------------ node values
    def _inner_params(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        own = dict(self.net.named_parameters())
        inner = {}
        for name, t in params.items():
            if not name.startswith("net."):
                raise ValueError(f"unknown parameter {name!r} (SteinPINN parameters start with 'net.')")
            key = name[4:]
            if key not in own:
                raise ValueError(f"unknown parameter {name!r}")
            if self._partial and torch.equal(t, own[key].unsqueeze(0).expand_as(t)):
                continue  # not perturbed by any query: shared by all copies
            inner[key] = t
        return inner

    def _net_nodes(self, params: dict[str, torch.Tensor], x: torch.Tensor, shifts: torch.Tensor, q: int,
                   stacked: bool) -> torch.Tensor:
        """N(x_b + s_j) for the q parameter sets: (q, B, n) (q = 1 and unstacked when nothing is perturbed)."""
        B, n = x.shape[0], shifts.shape[0]
        if self._shifted:
            return self.net.forward_shifted(params, x, shifts, q=q)[..., 0]
        rows = (x.unsqueeze(1) + shifts.unsqueeze(0)).reshape(B * n, -1)
        if not stacked:
            return self.net(rows)[..., 0].reshape(1, B, n)
        if not self._partial:
            own = dict(self.net.named_parameters())
            params = {k: params.get(k, p.unsqueeze(0).expand(q, *p.shape)) for k, p in own.items()}
        return self.net.forward_stacked(params, rows)[..., 0].reshape(q, B, n)

    def node_values(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, q: int) -> torch.Tensor:
        """``F[i, b, j] = u_i(x_b + σ z_j)`` (q, B, n) float64 for the inner-network ``params`` (q stacked)."""
        if self.stein is None:
            raise ValueError("node_values needs a Stein rule")
        if x.dtype != torch.float64:
            raise TypeError(f"collocation points must be float64 (Stein derivatives need it), got {x.dtype}")
        p0 = next(self.net.parameters(), None)
        if p0 is not None and p0.dtype != torch.float64:
            raise TypeError(f"the network is {p0.dtype}; Stein derivatives need a float64 network "
                            "(model dtype = \"float64\" or net.double())")
        shifts = self.stein.node_shifts(x.device)
        B, n = x.shape[0], shifts.shape[0]
        stacked = bool(params)
        q_eff = q if stacked else 1
        # chunk sizes: keep all q copies together when they fit (shared prefixes run once per chunk)
        width = self._stacked_width(params, q_eff)
        n_c = min(n, self.max_rows)
        b_c = max(1, min(B, int(self.max_rows // (width * n_c))))
        q_c = max(1, min(q_eff, int(self.max_rows * q_eff // (width * b_c * n_c))))
        out = torch.empty(q_eff, B, n, dtype=torch.float64, device=x.device)
        for b0 in range(0, B, b_c):
            xb = x[b0 : b0 + b_c]
            for j0 in range(0, n, n_c):
                sj = shifts[j0 : j0 + n_c]
                ga = self.pde.hard_constraint(xb.unsqueeze(1) + sj.unsqueeze(0))
                for q0 in range(0, q_eff, q_c):
                    q1 = min(q_eff, q0 + q_c)
                    started = time.perf_counter()
                    N = self._net_nodes({k: v[q0:q1] for k, v in params.items()}, xb, sj, q1 - q0, stacked)
                    self.forward_seconds += time.perf_counter() - started
                    if N.dtype != torch.float64:
                        raise TypeError(f"the network returned {N.dtype}; Stein derivatives need a float64 network "
                                        "(model dtype = \"float64\" or net.double())")
                    out[q0:q1, b0 : b0 + b_c, j0 : j0 + n_c] = N if ga is None else torch.addcmul(ga[0], ga[1], N)
        self.network_evaluations += q * B * n
        return out if stacked or q == 1 else out.expand(q, B, n)

    def _stacked_width(self, params: Mapping[str, torch.Tensor], q: int) -> float:
        """Activations per (point, node) row in units of one network copy: q, or 1 + q·out/h when only
        the output layer is perturbed (the hidden features are then shared by every copy)."""
        layers = getattr(self.net, "layers", None)
        if not params or not self._partial or layers is None or len(layers) < 2:
            return float(q)
        last = f"layers.{len(layers) - 1}."
        if all(k.startswith(last) for k in params):
            return 1.0 + q * layers[-1].out_features / layers[-1].in_features
        return float(q)

    def _maybe_reseed(self, x: torch.Tensor) -> None:
        if self.stein is None or self.stein.rule != "monte_carlo" or not self.mc_resample:
            return
        key = zlib.crc32(x.detach().cpu().contiguous().numpy().tobytes())
        if key != self._mc_key:
            self.stein.reseed((self.stein.seed * 1_000_003 + key) % 2**63)
            self._mc_key = key

    def stein_derivatives(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, q: int) -> SteinResult:
        """u_σ, ∇u_σ and ∂²u_σ at x for q inner-network parameter sets (leading axis q)."""
        self._maybe_reseed(x)
        return self.stein.combine(self.node_values(params, x, q))

    # ------------------------------------------------------------------ residuals
    def _autograd_residual(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            u = self.pde.constrain(x, self.net(x)[..., 0])
            (grad,) = torch.autograd.grad(u.sum(), x, create_graph=True)
            cols = [torch.zeros_like(u)] * x.shape[1]
            for i in self.pde.second_dims if grad.requires_grad else ():
                (h,) = torch.autograd.grad(grad[:, i].sum(), x, create_graph=True, allow_unused=True)
                if h is not None:
                    cols[i] = h[:, i]
            second = torch.stack(cols, dim=1)
        self.network_evaluations += x.shape[0]
        return self.pde.residual(x, u, grad, second)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual R(x_b) at the current parameters, (B,)."""
        if self.derivatives == "autograd":
            return self._autograd_residual(x)
        r = self.stein_derivatives({}, x, 1)
        return self.pde.residual(x, r.value[0], r.grad[0], r.second[0])

    def forward_stacked(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Residuals for q parameter sets: ``params["net.…"]`` (q, *shape) → (q, B)."""
        q = next(iter(params.values())).shape[0] if params else 1
        if self.derivatives == "autograd":
            from torch.func import functional_call

            return torch.stack([functional_call(self, {k: v[i] for k, v in params.items()}, (x,)).detach()
                                for i in range(q)])
        r = self.stein_derivatives(self._inner_params(params), x, q)
        return self.pde.residual(x, r.value, r.grad, r.second)
