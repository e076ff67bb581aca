"""Memory-lean evaluation: each layer's perturbed weight made just before the layer runs.

The stacked and loop paths of :class:`~edgezo.oracles.torch_oracle.TorchOracle`
copy θ and build whole perturbed parameter blocks, so a step needs
``(1 + chunk + q) · d`` extra values — impossible for a model of hundreds of
millions of parameters at inference memory. This path (docs/memory.md) keeps
θ where it is and, for one point ``θ + s · z(seed)`` at a time, swaps in each
module's perturbed parameters from a forward pre-hook and swaps the original
``Parameter`` back from a forward hook:

    θ'_l = θ_l + s · z(seed)[offset_l : offset_l + n_l]

with ``z`` regenerated from the seed (the restriction property of the portable
directions, docs/directions.md). Only one perturbed layer exists at a time, so
the peak is inference plus one layer; θ is never written during evaluation
(no MeZO ``+μ, −2μ, +μ`` drift), and ``θ_l + s z_l`` is the same float
operation as the stacked path's ``θ + s z``, so the perturbed weights are
bit-identical to the stacked path's rows.

Directions are generated a slice of a layer at a time (``SLICE_CPU`` values on
the CPU, so that they are scaled and added while in the cache), and the
buffers of layers that ran are reused for the next layers (no fresh pages per
forward). The update ``θ ← θ − lr Σ_i c_i z(seed_i)`` is applied slice by
slice, regenerating ``z``.

Requirement: every trainable parameter is read inside the ``forward`` of a
module that owns it (true of ``torch.nn`` layers and of ``transformers``
models, including tied embeddings, which every owning module swaps). A
parameter of the perturbed group whose owner never ran raises
:class:`~edgezo.oracle.OracleError`.
"""

from __future__ import annotations

import os
import re

import torch

from ..direction_backends import _TorchOps
from ..directions import directions
from ..oracle import CoordQueries, OracleError, Queries, SeedQueries, SeedUpdate
from ..params import ParamEntry, ParamSpace

# values of one layer generated at a time: on the CPU a slice's directions stay in the cache while they
# are scaled and added; on a GPU the slice bounds the generator's temporaries
SLICE_CPU = 1 << 18
SLICE_GPU = 1 << 22

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(value) -> int | str | None:
    """``None``, ``"auto"``, a byte count, or a string like ``"12GB"`` / ``"512MiB"`` → bytes, "auto" or None."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool):
        raise ValueError(f"max_memory must be 'auto', a byte count or a size like '8GB', got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"max_memory must be > 0 bytes, got {value}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"max_memory must be 'auto', a byte count or a size like '8GB' or '512MiB', got {value!r}")
    return parse_memory(float(m.group(1)) * _UNITS[m.group(2).lower()])


def available_memory(device: torch.device) -> int:
    """Bytes the evaluation may use now: free CUDA memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def stacked_extra_bytes(dim: int, q: int, chunk: int, itemsize: int) -> int:
    """Extra memory of the stacked/loop paths for q queries: θ copy, one chunk block, the q directions."""
    return itemsize * dim * (1 + min(q, chunk) + q)


class LeanEvaluator:
    """Loss at perturbed points with per-layer perturbations swapped in by forward hooks.

    Args:
        model: the module; its ``Parameter`` objects are put back after each layer.
        space: the oracle's :class:`~edgezo.params.ParamSpace` (flat offsets).
    """

    def __init__(self, model: torch.nn.Module, space: ParamSpace):
        self.model = model
        self.space = space
        by_id = {id(p): e for e, (_, p) in zip(space.layout.entries, space.named_parameters())}
        self.owners: dict[torch.nn.Module, list[tuple[str, ParamEntry, torch.nn.Parameter]]] = {}
        for module in model.modules():
            own = [(name, by_id[id(p)], p) for name, p in module._parameters.items()
                   if p is not None and id(p) in by_id]
            if own:
                self.owners[module] = own
        self._point = None
        self._norms: dict[int, torch.Tensor] = {}
        self._swapped: set[str] = set()
        self._free: list[torch.Tensor] = []  # flat buffers of layers that ran, reused for the next ones
        self.slice = SLICE_CPU if space.device.type == "cpu" else SLICE_GPU

    def _buffer(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """A flat buffer of ``n`` values from the pool (smallest that fits), else a new one."""
        same = [b for b in self._free if b.dtype == like.dtype and b.device == like.device]
        fits = [b for b in same if b.numel() >= n]
        if not fits:  # drop the smaller ones: the pool holds no more buffers than were alive at once
            self._free = [b for b in self._free if not any(b is c for c in same)]
            return torch.empty(n, dtype=like.dtype, device=like.device)
        best = min(fits, key=torch.Tensor.numel)
        self._free = [b for b in self._free if b is not best]
        return best[:n]

    # --- perturbed tensors --------------------------------------------------------
    def _z(self, seeds, kind: str, lo: int, n: int, dtype) -> torch.Tensor:
        """Directions ``z(seed)[lo:lo+n]`` (len(seeds), n) in ``dtype``; sphere divided by the group norm."""
        if kind != "sphere":
            return directions(list(seeds), lo, n, kind, device=self.space.device, dtype=dtype)
        g = directions(list(seeds), lo, n, "gaussian", device=self.space.device, dtype=torch.float32)
        g /= torch.stack([self._norms[int(s)] for s in seeds]).unsqueeze(1)
        return g if g.dtype == dtype else g.to(dtype)

    def _sphere_norms(self, seeds, group) -> None:
        """float32 ``||g(seed)||`` over the group (float64 sum of exact squares; docs/directions.md §6)."""
        need = sorted({int(s) for s in seeds} - set(self._norms))
        if not need:
            return
        total = torch.zeros(len(need), 1, dtype=torch.float64, device=self.space.device)
        for lo in range(group.offset, group.stop, self.slice):
            g = directions(need, lo, min(self.slice, group.stop - lo), "gaussian", device=self.space.device)
            total += _TorchOps.sumsq64(g)
        norms = _TorchOps.sqrt32(total.to(torch.float32))
        self._norms.update({s: norms[i, 0] for i, s in enumerate(need)})

    def _perturbed(self, entry: ParamEntry, p: torch.Tensor) -> torch.Tensor | None:
        """``θ_l + s · z_l`` for the current point, or None when the point leaves this tensor alone."""
        queries, i, group = self._point
        if isinstance(queries, CoordQueries):
            j = queries.coords[i] - entry.offset
            if not 0 <= j < entry.numel:
                return None
            out = p.detach().clone()
            out.view(-1)[j] += torch.tensor(queries.deltas[i], dtype=p.dtype, device=p.device)
            return out
        if not group.offset <= entry.offset < group.stop or queries.scales[i] == 0.0:
            return None
        scale = torch.tensor(queries.scales[i], dtype=p.dtype, device=p.device)
        flat, theta = self._buffer(entry.numel, p), p.detach().reshape(-1)
        for lo in range(0, entry.numel, self.slice):
            n = min(self.slice, entry.numel - lo)
            z = self._z((queries.seeds[i],), queries.kind, entry.offset + lo, n, p.dtype)[0]
            z *= scale
            torch.add(z, theta[lo:lo + n], out=flat[lo:lo + n])  # s·z + θ == θ + s·z (IEEE addition commutes)
        return flat.view(p.shape)

    # --- hooks --------------------------------------------------------------------
    def _swap_in(self, module, args):
        for name, entry, p in self.owners[module]:
            new = self._perturbed(entry, p)
            if new is not None:
                module._parameters[name] = new
                self._swapped.add(entry.name)

    def _swap_out(self, module, args, output):
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        kept = {t.untyped_storage().data_ptr() for t in outputs if isinstance(t, torch.Tensor)}
        for name, _, p in self.owners[module]:
            new = module._parameters[name]
            module._parameters[name] = p
            if new is not p and new.untyped_storage().data_ptr() not in kept:  # an output viewing it keeps it
                self._free.append(new._base if new._base is not None else new.view(-1))

    # --- evaluation ---------------------------------------------------------------
    def evaluate(self, queries: Queries, x, y, loss_fn) -> torch.Tensor:
        """Losses at the q points, one forward each, θ untouched (float64, shape (q,))."""
        group = self.space.layout.group(queries.group) if isinstance(queries, SeedQueries) else None
        if isinstance(queries, CoordQueries) and queries.coords and not (
                0 <= min(queries.coords) and max(queries.coords) < self.space.dim):
            raise IndexError(f"coordinate out of range [0, {self.space.dim})")
        self._norms = {}
        if isinstance(queries, SeedQueries) and queries.kind == "sphere":
            self._sphere_norms(queries.seeds, group)
        handles = []
        for module in self.owners:
            handles.append(module.register_forward_pre_hook(self._swap_in))
            handles.append(module.register_forward_hook(self._swap_out, always_call=True))
        losses = []
        try:
            with torch.no_grad():
                for i in range(len(queries)):
                    self._point, self._swapped = (queries, i, group), set()
                    losses.append(loss_fn(self.model(x), y).reshape(()))
                    self._check_used(queries, i, group)
        finally:
            for h in handles:
                h.remove()
            for module, own in self.owners.items():
                for name, _, p in own:
                    module._parameters[name] = p
            self._point = None
        return torch.stack(losses).to(torch.float64)

    def _check_used(self, queries: Queries, i: int, group) -> None:
        if isinstance(queries, CoordQueries) or queries.scales[i] == 0.0:
            return
        missing = [e.name for e in self.space.layout.entries
                   if group.offset <= e.offset < group.stop and e.name not in self._swapped]
        if missing:
            raise OracleError(f"the lean path perturbs a parameter inside its own module's forward, but "
                              f"{missing[0]!r} was never used there; use oracle.path='loop' for this model")

    # --- update -------------------------------------------------------------------
    def apply_seed_update(self, update: SeedUpdate, lr: float) -> None:
        """``θ_l ← θ_l − lr Σ_i c_i z_l(seed_i)`` slice by slice (Σ in seed order)."""
        group = self.space.layout.group(update.group)
        self._norms = {}
        if update.kind == "sphere":
            self._sphere_norms(update.seeds, group)
        with torch.no_grad():
            for entry, (_, p) in zip(self.space.layout.entries, self.space.named_parameters()):
                if not group.offset <= entry.offset < group.stop:
                    continue
                flat = p.view(-1)
                for lo in range(0, entry.numel, self.slice):
                    n = min(self.slice, entry.numel - lo)
                    step = None
                    for seed, c in zip(update.seeds, update.coeffs):
                        z = self._z((seed,), update.kind, entry.offset + lo, n, p.dtype)[0]
                        z *= torch.tensor(c, dtype=p.dtype, device=p.device)
                        step = z if step is None else step.add_(z)
                    flat[lo:lo + n] -= step * torch.tensor(lr, dtype=p.dtype, device=p.device)
