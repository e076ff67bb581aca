"""An Oracle whose parameters are the latent codes of one mini-batch.

ZO-AE-DS (Zhang et al., ICLR 2022, arXiv:2203.14195) merges the frozen decoder
into the black box, ``f'(z) = f(Dec(z))``, and estimates the gradient of the
stability loss with respect to the codes ``z_b = Enc(D_θ(x_b + δ_b))``:

    L(z) = (1/B) Σ_b ℓ_b(z_b),   ℓ_b(z_b) = −log f'(z_b)[y_b],   y_b = argmax f(x_b).

:class:`LatentOracle` exposes ``z`` (B × d_z entries, one parameter group
``s<b>`` per sample) to the engine's estimators, which then estimate
``a = ∇_z L`` with RGE or CGE exactly as they estimate a weight gradient.
With the identity as decoder it is the pixel-space oracle of ZO-DS.

L is a sum of per-sample terms, so a query that moves only the codes of some
samples needs the black box only for those samples; the others keep the loss
cached at the current point. Per sample, RGE (forward difference, estimator
``groups`` = every sample group) therefore costs q + 1 black-box queries and
CGE d_z + 1 — the query counts of the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...direction_cache import cached_directions
from ...oracle import Batch, CoordQueries, Counters, Oracle, Queries, SeedQueries
from ...params import GroupInfo, ParamEntry, ParamLayout

EPS = 1e-12


def sample_layout(batch: int, dim: int) -> ParamLayout:
    """B contiguous blocks of ``dim`` entries, one group ``s<b>`` each."""
    entries = tuple(ParamEntry(f"z.{b}", (dim,), b * dim, dim, f"s{b}") for b in range(batch))
    groups = tuple(GroupInfo(f"s{b}", b * dim, dim, (f"z.{b}",)) for b in range(batch))
    return ParamLayout(entries, groups)


def nll(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample ``−log p[y]`` (float64), clamped at ``log 1e-12``."""
    p = probabilities.to(torch.float64).gather(1, targets.view(-1, 1).to(torch.long)).squeeze(1)
    return -torch.log(p.clamp_min(EPS))


class LatentOracle(Oracle):
    """Loss of the black box at perturbed latent codes of the current mini-batch.

    Args:
        blackbox: ``x (n, ...) -> probabilities (n, C)`` (counts its own queries).
        decoder: ``z (n, d) -> x (n, ...)`` run by the defender (no gradient);
            None = identity (ZO-DS in pixel space).

    Call :meth:`set_point` with the codes and targets of a batch before
    estimating; ``batch`` arguments of :meth:`evaluate` are ignored except for
    their size (the estimators pass the training batch through).
    """

    backend = "latent-blackbox"

    def __init__(self, blackbox: Callable[[torch.Tensor], torch.Tensor],
                 decoder: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.blackbox = blackbox
        self.decoder = decoder
        self.counters = Counters()
        self.layout = sample_layout(0, 1)
        self._z: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._center: torch.Tensor | None = None
        self._dirs: dict[tuple, torch.Tensor] = {}

    # --- the point -------------------------------------------------------------
    def set_point(self, z: torch.Tensor, targets: torch.Tensor) -> None:
        """Codes ``(B, d)`` (detached, float32) and black-box labels ``(B,)`` of the batch."""
        if z.dim() != 2 or targets.shape != (z.shape[0],):
            raise ValueError(f"need codes (B, d) and targets (B,), got {tuple(z.shape)} and {tuple(targets.shape)}")
        self._z = z.detach().to(torch.float32).clone()
        self._targets = targets.detach().to(torch.long).clone()
        self._center = None
        self._dirs = {}
        b, d = self._z.shape
        if self.layout.dim != b * d or len(self.layout.groups) != b:
            self.layout = sample_layout(b, d)

    @property
    def batch(self) -> int:
        return 0 if self._z is None else int(self._z.shape[0])

    def _require_point(self) -> torch.Tensor:
        if self._z is None:
            raise RuntimeError("LatentOracle.set_point() must be called before evaluating")
        return self._z

    def get_flat(self) -> torch.Tensor:
        return self._require_point().reshape(-1).clone()

    def set_flat(self, values: torch.Tensor) -> None:
        z = self._require_point()
        if values.numel() != z.numel():
            raise ValueError(f"expected {z.numel()} values, got {values.numel()}")
        self._z = values.detach().to(torch.float32).reshape(z.shape).clone()
        self._center = None

    # --- losses ------------------------------------------------------------------
    def _sample_losses(self, codes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Per-sample losses of samples ``rows`` at ``codes`` (one black-box call)."""
        with torch.no_grad():
            x = self.decoder(codes) if self.decoder is not None else codes
            probs = self.blackbox(x)
        return nll(probs, self._targets[rows])

    def center_losses(self) -> torch.Tensor:
        """Per-sample losses at the current codes (B queries, computed once per point)."""
        if self._center is None:
            z = self._require_point()
            self._center = self._sample_losses(z, torch.arange(z.shape[0]))
        return self._center

    def evaluate(self, queries: Queries, batch: Batch) -> torch.Tensor:
        z = self._require_point()
        b, d = z.shape
        if isinstance(queries, SeedQueries):
            g = self.layout.group(queries.group)
            first, last = g.offset // d, (g.stop - 1) // d
            if g.offset % d or g.stop % d:
                raise ValueError("a latent query group must cover whole samples")
            rows = torch.arange(first, last + 1)
            dirs = self._directions(queries.seeds, g, queries.kind)
            scales = torch.tensor(queries.scales, dtype=z.dtype)
            moved = [i for i, s in enumerate(queries.scales) if s != 0.0]
            per_point = torch.zeros(len(queries), dtype=torch.float64)
            if moved:
                idx = torch.tensor(moved)
                codes = z[rows].unsqueeze(0) + (scales[idx].unsqueeze(1) * dirs[idx]).view(len(moved), len(rows), d)
                losses = self._sample_losses(codes.reshape(-1, d), rows.repeat(len(moved))).view(len(moved), -1)
                per_point[idx] = (losses - self.center_losses()[rows]).sum(1)
            values = self.center_losses().sum() + per_point
            self.counters.add(len(queries), b)
            return values / b
        if isinstance(queries, CoordQueries):
            coords = torch.tensor(queries.coords, dtype=torch.long)
            if coords.numel() and (int(coords.min()) < 0 or int(coords.max()) >= b * d):
                raise IndexError(f"coordinate out of range [0, {b * d})")
            rows = coords // d
            codes = z[rows].clone()
            codes[torch.arange(len(coords)), coords % d] += torch.tensor(queries.deltas, dtype=z.dtype)
            center = self.center_losses()
            losses = self._sample_losses(codes, rows) if len(coords) else torch.zeros(0, dtype=torch.float64)
            self.counters.add(len(queries), b)
            return (center.sum() + losses - center[rows]) / b
        raise TypeError(f"unknown query type {type(queries).__name__}")

    def loss(self, batch: Batch) -> float:
        self.counters.add(1, self.batch)
        return float(self.center_losses().mean())

    def _directions(self, seeds, group: GroupInfo, kind: str) -> torch.Tensor:
        """Directions of ``seeds`` on ``group``, kept for this point (the update uses them again)."""
        key = (tuple(seeds), group.offset, group.numel, kind)
        if key not in self._dirs:
            self._dirs[key] = cached_directions(seeds, group.offset, group.numel, kind, None, torch.float32)
        return self._dirs[key]

    def gradient_from(self, estimate) -> torch.Tensor:
        """The estimate as ``a`` of shape ``(B, d)`` (float32), ``Σ c_i z(seed_i)`` plus coordinate terms.

        Same result as ``estimate.to_dense(layout)``, reusing the directions generated for the queries.
        """
        z = self._require_point()
        if estimate.dense is not None:
            return estimate.dense.to(torch.float32).view_as(z)
        a = torch.zeros(z.numel(), dtype=torch.float32)
        for term in estimate.seed_terms:
            g = self.layout.group(term.group)
            dirs = self._directions(term.seeds, g, term.kind)
            a[g.offset : g.stop] += torch.tensor(term.coeffs, dtype=torch.float32) @ dirs
        for coords, values in estimate.coord_terms:
            a.index_add_(0, coords, values.to(torch.float32))
        return a.view_as(z)
