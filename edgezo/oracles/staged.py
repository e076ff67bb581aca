"""StagedOracle: coordinate queries with feature reuse and a perturbation axis.

For a network made of stages, ``f = s_{L-1} ∘ ··· ∘ s_0``, a coordinate of
stage ``l`` leaves the stage input ``h_l`` unchanged. DeepZero's feature reuse
(Chen et al., ICLR 2024, arXiv:2310.02025, §4) computes ``h_0 … h_{L-1}`` once
per batch and evaluates ``ℓ(θ + δ e_j)`` by running ``s_l, …, s_{L-1}`` only.

This oracle adds a perturbation axis on top: the coordinates of one parameter
tensor are evaluated in chunks of q perturbed copies of that tensor, in one
call of the model's copy-aware stage forward (see :mod:`edgezo.models.cnn`: a
conv with q·O output channels for the perturbed layer, one conv over B·q
images downstream, per-copy batch norm). Four coordinate paths:

* ``"loop"`` — one coordinate at a time from the cached stage input (reuse only);
* ``"stacked"`` — q stacked copies of the tensor in one copy-aware forward
  (reuse + batching);
* ``"delta"`` — the same, with the perturbed layer computed once and the q
  rank-one coordinate changes added to its output
  (:class:`~edgezo.models.deltas.CoordDelta`), so only the layers after it run
  q-fold;
* ``"vmap"`` — ``torch.func.vmap`` over the single-coordinate suffix forward.

``path="auto"`` times the paths on the first chunk of each (tensor, q
bucket, batch size) and keeps the fastest (recorded in :meth:`state_dict`).
Seed queries (whole-network perturbations, e.g. RGE or ZO-GraSP) go through
the :class:`~edgezo.oracles.torch_oracle.TorchOracle` paths, with the model's
``forward_stacked``.

Cache: the stage inputs are keyed by the batch tensor (held by reference, so
its identity cannot be reused) and the version counters of the parameters, so
any in-place update of θ (optimizer step, ``set_flat``, seed update) or of the
batch invalidates them. The losses equal those of a plain ``TorchOracle`` at
the same points (same perturbed values ``fl(θ_j + δ)``; float rounding of the
reordered reductions aside).

The model must provide ``stages``, ``stage_of(name)``, ``stage_inputs(x)``,
``forward_from(l, h, params)`` and ``forward_copies(l, h, params)``
(:class:`edgezo.models.cnn.StagedNet`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..models.deltas import CoordDelta
from ..oracle import Batch, CoordQueries, Queries, batch_size_of
from ..params import GroupSpec
from .torch_oracle import PATHS as TORCH_PATHS
from .torch_oracle import TorchOracle, best_time_us

COORD_PATHS = ("loop", "stacked", "delta", "vmap")
LOOP_TRIAL = 16
STAGED_API = ("stages", "stage_of", "stage_inputs", "forward_from", "forward_copies")


def is_staged(model: torch.nn.Module) -> bool:
    """Whether ``model`` exposes the staged-network API."""
    return all(hasattr(model, a) for a in STAGED_API)


class StagedOracle(TorchOracle):
    """TorchOracle with feature reuse and batched coordinate evaluation.

    Args:
        model: a staged network (see the module docstring).
        loss_fn, groups: as for :class:`TorchOracle`.
        path: ``"auto"`` or one of ``"loop"``, ``"stacked"``, ``"delta"``,
            ``"vmap"`` for coordinate queries; seed queries use the
            TorchOracle's ``"auto"`` choice unless the name is one of its paths.
        max_activation_elems: bound on ``q × B × 4 × (largest stage input or
            output per sample)`` of one chunk (the 4 covers activations before
            pooling); sets the number of copies per call.
        max_copies: optional hard cap on copies per call.
        reuse: False sends coordinate queries to the plain TorchOracle (no
            feature reuse), for comparisons.
    """

    backend = "torch-staged"

    def __init__(self, model: torch.nn.Module, loss_fn, *, groups: GroupSpec = None, path: str = "auto",
                 max_activation_elems: int = 2**24, max_copies: int | None = None, reuse: bool = True,
                 max_stack_elems: int = 2**24):
        if not is_staged(model):
            missing = [a for a in STAGED_API if not hasattr(model, a)]
            raise ValueError(f"{type(model).__name__} is not a staged network (missing {', '.join(missing)}); "
                             "use a model from edgezo.models.cnn / resnet or the plain TorchOracle")
        if path != "auto" and path not in COORD_PATHS:
            raise ValueError(f"unknown evaluation path {path!r}; use 'auto' or one of {COORD_PATHS}")
        super().__init__(model, loss_fn, groups=groups, path=path if path in TORCH_PATHS else "auto",
                         max_stack_elems=max_stack_elems)
        self.coord_path = path
        if max_copies is not None and max_copies < 1:
            raise ValueError(f"max_copies must be >= 1, got {max_copies}")
        self.max_activation_elems = int(max_activation_elems)
        self.max_copies = max_copies
        self.reuse = bool(reuse)
        entries = self.layout.entries
        self._offsets = torch.tensor([e.offset for e in entries], dtype=torch.long)
        self._stage = [model.stage_of(e.name) for e in entries]
        self._cache: dict[str, Any] | None = None
        self.cache_hits = 0
        self.cache_misses = 0

    # --- stage-input cache ------------------------------------------------------
    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.space.parameters())

    def stage_cache(self, batch: Batch) -> dict[str, Any]:
        """``{"inputs": [h_0 … h_{L-1}, f(x)], "x", "y", "loss"}`` for ``batch`` at the current θ."""
        x0 = batch[0]
        key = (x0._version, self._versions())
        c = self._cache
        if c is not None and c["batch"] is x0 and c["key"] == key:
            self.cache_hits += 1
            return c
        self.cache_misses += 1
        x, y = self._batch_to_device(batch)[:2]
        with torch.no_grad():
            hs = self.model.stage_inputs(x)
            loss = self.loss_fn(hs[-1], y)
        # Inside a stage, activations before a 2×2 pool or a stride-2 conv are up to 4× its output.
        per_sample = 4 * max(h[0].numel() for h in hs)
        self._cache = {"batch": x0, "key": key, "inputs": hs, "x": x, "y": y, "loss": loss,
                       "per_sample": per_sample}
        return self._cache

    def clear_cache(self) -> None:
        self._cache = None

    def copies_per_call(self, batch: Batch) -> int:
        """How many perturbed copies one call evaluates on this batch."""
        c = self.stage_cache(batch)
        q = max(1, self.max_activation_elems // max(1, batch_size_of(batch) * c["per_sample"]))
        return min(q, self.max_copies) if self.max_copies else q

    # --- coordinate paths -----------------------------------------------------------
    def _perturbation(self, name: str, local: torch.Tensor, deltas: torch.Tensor) -> CoordDelta:
        base = self.space.state()[name]
        return CoordDelta(base, local, base.reshape(-1)[local] + deltas.to(base.dtype))

    def _run_coords(self, path: str, stage: int, name: str, pert: CoordDelta, h: torch.Tensor, y) -> torch.Tensor:
        model, loss_fn = self.model, self.loss_fn
        if path == "delta":
            return loss_fn(model.forward_copies(stage, h, {name: pert}), y)
        block = pert.dense()
        if path == "stacked":
            return loss_fn(model.forward_copies(stage, h, {name: block}), y)
        if path == "vmap":
            def one(p):
                return loss_fn(model.forward_from(stage, h, {name: p}), y)
            return torch.func.vmap(one)(block)
        return torch.stack([loss_fn(model.forward_from(stage, h, {name: block[i]}), y)
                            for i in range(block.shape[0])])

    def _choose_coord(self, key: str, stage: int, name: str, block, h, y) -> str:
        if self.coord_path != "auto":
            return self.coord_path
        if key in self.choices:
            return self.choices[key]
        timings = {}
        for path in COORD_PATHS:
            # The loop is linear in q: time a prefix and scale, so choosing stays cheap.
            trial = block if path != "loop" or block.q <= LOOP_TRIAL else block.take(LOOP_TRIAL)
            try:
                self._run_coords(path, stage, name, trial, h, y)  # warm-up
            except Exception:  # a path this model cannot take (e.g. vmap over data-dependent code)
                continue
            timings[path] = best_time_us(lambda: self._run_coords(path, stage, name, trial, h, y), reps=2,
                                         cuda=h.is_cuda) * block.q / trial.q
        choice = min(timings, key=timings.get)
        self.choices[key], self.timings[key] = choice, timings
        return choice

    def _evaluate_coords(self, queries: CoordQueries, batch: Batch) -> torch.Tensor:
        q = len(queries)
        out = torch.empty(q, dtype=torch.float64)
        if q == 0:
            return out
        coords = torch.tensor(queries.coords, dtype=torch.long)
        if int(coords.min()) < 0 or int(coords.max()) >= self.dim:
            raise IndexError(f"coordinate out of range [0, {self.dim})")
        c = self.stage_cache(batch)
        hs, y = c["inputs"], c["y"]
        dtype, device = self.space.dtype, self.device
        deltas = torch.tensor(queries.deltas, dtype=dtype)
        entry_of = torch.searchsorted(self._offsets, coords, right=True) - 1
        chunk = self.copies_per_call(batch)
        bsz = batch_size_of(batch)
        with torch.no_grad():
            for k in torch.unique(entry_of).tolist():
                e = self.layout.entries[k]
                pos = torch.nonzero(entry_of == k).flatten()
                stage = self._stage[k]
                for lo in range(0, pos.numel(), chunk):
                    sel = pos[lo : lo + chunk]
                    local = (coords[sel] - e.offset).to(device)
                    block = self._perturbation(e.name, local, deltas[sel].to(device))
                    bucket = 2 ** int(math.log2(sel.numel()))
                    path = self._choose_coord(f"coord:{e.name}:q={bucket}:b={bsz}", stage, e.name, block,
                                              hs[stage], y)
                    out[sel] = self._run_coords(path, stage, e.name, block, hs[stage], y).reshape(-1).double().cpu()
        return out

    # --- the Oracle contract ----------------------------------------------------------
    def evaluate(self, queries: Queries, batch: Batch) -> torch.Tensor:
        if isinstance(queries, CoordQueries) and self.reuse:
            losses = self._evaluate_coords(queries, batch)
            self.counters.add(len(queries), batch_size_of(batch))
            return losses
        return self._evaluate_seeds(queries, batch)

    def _evaluate_seeds(self, queries: Queries, batch: Batch) -> torch.Tensor:
        """Whole-network perturbations through the TorchOracle paths, chunked by activation size."""
        budget = self.copies_per_call(batch)
        saved = self.max_stack_elems
        self.max_stack_elems = min(saved, budget * self.dim)
        try:
            return super().evaluate(queries, batch)
        finally:
            self.max_stack_elems = saved

    def loss(self, batch: Batch) -> float:
        """Loss at θ; also fills the stage-input cache that the coordinate queries reuse."""
        value = float(self.stage_cache(batch)["loss"])
        self.counters.add(1, batch_size_of(batch))
        return value

    def state_dict(self) -> dict[str, Any]:
        return {"choices": dict(self.choices)}


def staged_oracle_factory(model, loss_fn, *, groups=None, example_batch=None, **options) -> TorchOracle:
    """Oracle factory for recipes: a :class:`StagedOracle` for staged models, else a TorchOracle."""
    if is_staged(model):
        return StagedOracle(model, loss_fn, groups=groups, **options)
    return TorchOracle(model, loss_fn, groups=groups, **options)


__all__ = ["StagedOracle", "staged_oracle_factory", "is_staged", "COORD_PATHS"]
