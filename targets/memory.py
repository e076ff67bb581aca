"""The SRAM one zeroth-order training step needs on a target: the memory model.

``memory_breakdown(model, profile, ...)`` counts, in the profile's number
formats, the bytes of the weights, the largest live activations, the
estimator's buffers (losses, seed pairs or a coordinate vector) and the
optimizer state; ``check_fits`` raises :class:`BudgetError` with the table
and what to shrink when the total exceeds the profile's SRAM. Profiles
themselves are :mod:`edgezo.targets.profile`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

from edgezo.errors import ConfigError, EdgezoError

from .profile import ProfileLike, TargetProfile, load_profile

__all__ = ["MemoryBreakdown", "BudgetError", "memory_breakdown", "check_fits", "ESTIMATORS", "OPTIMIZERS"]

#: estimator name -> (description). "rge" is the forward difference
#: (q + 1 losses), "rge-central" the antithetic one (2q losses), "cge" the
#: coordinate-wise estimate (d-vector of differences).
ESTIMATORS = ("rge", "rge-forward", "rge-central", "cge")
#: optimizer name -> number of per-weight state copies (kept coordinate-wise:
#: with the counter-based direction generator the estimate sum_i c_i u_i is
#: regenerated coordinate by coordinate, never materialized).
OPTIMIZERS: dict[str, int] = {"seed-sgd": 0, "sgd": 0, "sign-sgd": 0, "sgd-momentum": 1, "adam": 2}

LOSS_BYTES = 4  # losses are kept as float32
SEED_PAIR_BYTES = 8  # (uint32 seed, float32 coefficient)
SCALE_BYTES = 4  # one float32 scale per integer weight tensor

#: parameter-free modules that a device runs in place on the previous buffer
_INPLACE_MODULE_NAMES = {
    "ReLU", "ReLU6", "LeakyReLU", "Tanh", "Sigmoid", "Hardtanh", "GELU", "SiLU",
    "Identity", "Flatten", "Unflatten", "Dropout", "Sin", "Sine",
}

_ITEM_ORDER = ("weights", "activations", "estimator", "optimizer", "io")


def _fmt_bytes(n: int | float) -> str:
    n = float(n)
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class MemoryBreakdown:
    """Estimated on-device bytes of one ZO training step, against ``budget``.

    ``items`` maps "weights", "activations", "estimator", "optimizer", "io"
    to bytes; ``details`` says how each was counted.
    """

    profile: TargetProfile
    items: dict[str, int]
    details: dict[str, str]
    params: int
    batch_size: int
    queries_per_step: int
    estimator: str
    optimizer: str

    @property
    def total(self) -> int:
        return sum(self.items.values())

    @property
    def budget(self) -> int:
        return self.profile.sram_bytes

    @property
    def fits(self) -> bool:
        return self.total <= self.budget

    @property
    def headroom(self) -> int:
        """Budget minus total (negative when over budget)."""
        return self.budget - self.total

    def __getitem__(self, item: str) -> int:
        return self.items[item]

    def share(self, item: str) -> float:
        """Bytes of ``item`` as a fraction of the budget."""
        return self.items[item] / self.budget

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "items": dict(self.items),
            "total": self.total,
            "budget": self.budget,
            "fits": self.fits,
            "params": self.params,
            "batch_size": self.batch_size,
            "queries_per_step": self.queries_per_step,
            "estimator": self.estimator,
            "optimizer": self.optimizer,
        }

    def format_table(self) -> str:
        p = self.profile
        rows = [("item", "bytes", "budget", "how counted")]
        for k, v in self.items.items():
            rows.append((k, f"{v:,}", f"{100 * v / self.budget:.1f}%", self.details.get(k, "")))
        rows.append(("total", f"{self.total:,}", f"{100 * self.total / self.budget:.1f}%", ""))
        rows.append(("budget", f"{self.budget:,}", "100.0%", f"SRAM of {p.name} ({_fmt_bytes(self.budget)})"))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [
            f"memory of one ZO step on {p.name}: {self.params:,} params, batch {self.batch_size}, "
            f"q={self.queries_per_step}, estimator {self.estimator}, optimizer {self.optimizer}, "
            f"weights {p.weight_format} / activations {p.activation_format}"
        ]
        for i, r in enumerate(rows):
            lines.append(f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]}".rstrip())
            if i == 0 or i == len(rows) - 3:
                lines.append("  " + "-" * (sum(w) + 4 + 2 + 11))
        if self.fits:
            lines.append(f"fits: yes ({_fmt_bytes(self.headroom)} headroom)")
        else:
            lines.append(f"fits: NO (over budget by {_fmt_bytes(-self.headroom)})")
        return "\n".join(lines)

    def suggestions(self) -> list[str]:
        """What to shrink, largest contributor first.

        Empty when the step fits; otherwise one line per item that takes at
        least 10% of the budget (always at least the largest item).
        """
        if self.fits:
            return []
        p = self.profile
        order = list(self.items)
        ranked = sorted(
            self.items.items(),
            key=lambda kv: (-round(100 * kv[1] / self.budget), order.index(kv[0])),
        )
        chosen = [kv for kv in ranked if kv[1] >= 0.10 * self.budget] or ranked[:1]
        out = []
        for name, nbytes in chosen:
            pct = f"{100 * nbytes / self.budget:.0f}%"
            verb = "are" if name in ("weights", "activations") else "is"
            head = f"{name} {verb} {pct} of the budget ({_fmt_bytes(nbytes)} of {_fmt_bytes(self.budget)})"
            if name == "weights":
                if p.is_integer:
                    tip = "use a TT layer (tensor-train cores) or fewer hidden units"
                else:
                    tip = "use a TT layer (tensor-train cores) or int8 weights (a profile such as fpga-int8)"
            elif name == "activations":
                tip = f"lower batch size (now {self.batch_size}) or narrow the widest layer"
            elif name == "estimator":
                if self.estimator == "cge":
                    tip = "use the randomized estimator (rge): cge keeps one value per coordinate"
                else:
                    tip = (
                        "the restore copy of the weights dominates: use integer weights (exact "
                        "in-place restore) or undo the perturbation from its seed in place"
                    )
            elif name == "optimizer":
                tip = "use seed-sgd (no per-weight state) instead of " + self.optimizer
            else:  # io
                tip = f"lower batch size (now {self.batch_size}) or max_frame_bytes"
            out.append(f"{head}: {tip}")
        return out


class BudgetError(EdgezoError, ValueError):
    """A training step does not fit the target's SRAM; carries the breakdown."""

    def __init__(self, message: str, breakdown: MemoryBreakdown):
        super().__init__(message)
        self.breakdown = breakdown


def _compute_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Modules that produce activations: leaves, or modules with dense_weight()."""
    units = []

    def walk(m):
        children = list(m.children())
        if callable(getattr(m, "dense_weight", None)) or not children:
            units.append(m)
            return
        for c in children:
            walk(c)

    walk(model)
    return units


def _record(model: torch.nn.Module, hook: Any, run: Any) -> None:
    import torch

    handles = [u.register_forward_hook(hook) for u in _compute_units(model)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()


def _activation_numels(model: torch.nn.Module, input_shape: Sequence[int], batch_size: int) -> list[int]:
    """Element counts of the activations a forward produces, in execution order.

    Outputs of parameter-free elementwise / view modules (ReLU, Tanh, Flatten
    ...) are not new buffers: a device runs them in place. The network input
    is not included (it is counted with the I/O buffers).
    """
    import torch

    numels: list[int] = []

    def numel_of(out) -> int:
        if isinstance(out, torch.Tensor):
            return out.numel()
        if isinstance(out, (tuple, list)):
            return sum(numel_of(o) for o in out)
        if isinstance(out, dict):
            return sum(numel_of(o) for o in out.values())
        return 0

    def hook(mod, args, out):
        if type(mod).__name__ in _INPLACE_MODULE_NAMES and not any(True for _ in mod.parameters()):
            return
        n = numel_of(out)
        if n:
            numels.append(n)

    shape = (batch_size, *tuple(input_shape))
    # A real forward of zeros on a copy (so that e.g. BatchNorm running stats of
    # the caller's model are untouched). Meta tensors would avoid the
    # arithmetic, but their first use costs seconds of imports inside torch;
    # the models that fit an edge target are small.
    work = copy.deepcopy(model)
    dev = next((t.device for t in work.parameters()), torch.device("cpu"))
    _record(work, hook, lambda: work(torch.zeros(shape, device=dev)))
    return numels


def _weight_bytes(named, wfmt, accfmt) -> tuple[int, str]:
    """Parameters in the weight format; for an integer format biases at accumulator width, one scale per tensor."""
    n_params = sum(p.numel() for _, p in named)
    if wfmt.is_integer:
        n_bias = sum(p.numel() for n, p in named if p.dim() == 1 and n.rsplit(".", 1)[-1] == "bias")
        n_w = n_params - n_bias
        return (n_w * wfmt.bytes + n_bias * accfmt.bytes + SCALE_BYTES * len(named),
                f"{n_w:,} x {wfmt.bytes} B ({wfmt.name}) + {n_bias:,} bias x {accfmt.bytes} B "
                f"({accfmt.name}) + {len(named)} scales x {SCALE_BYTES} B")
    return n_params * wfmt.bytes, f"{n_params:,} params x {wfmt.bytes} B ({wfmt.name})"


def _activation_bytes(numels: list[int], batch_size: int, afmt) -> tuple[int, str]:
    """The largest pair of consecutive activation buffers (ping-pong) in the activation format."""
    if len(numels) >= 2:
        i = max(range(len(numels) - 1), key=lambda j: numels[j] + numels[j + 1])
        pair = (numels[i], numels[i + 1])
    else:
        pair = (numels[0] if numels else 0, 0)
    return ((pair[0] + pair[1]) * afmt.bytes,
            f"largest consecutive pair ({pair[0]:,} + {pair[1]:,} values at batch {batch_size}) "
            f"x {afmt.bytes} B ({afmt.name})")


def _estimator_bytes(estimator: str, q: int, n_params: int, wfmt) -> tuple[int, str]:
    """Loss values, plus CGE's difference vector or RGE's restore copy of float weights."""
    if estimator == "cge":
        n_losses = 2
        return (n_losses * LOSS_BYTES + n_params * LOSS_BYTES + wfmt.bytes,
                f"{n_params:,} coordinate differences x {LOSS_BYTES} B + saved coordinate + 2 losses")
    n_losses = 2 * q if estimator == "rge-central" else q + 1
    restore = 0 if wfmt.is_integer else n_params * wfmt.bytes
    return n_losses * LOSS_BYTES + restore, f"{n_losses} losses x {LOSS_BYTES} B" + (
        f" + restore copy of the weights ({n_params:,} x {wfmt.bytes} B)" if restore else
        " (integer weights: in-place restore is exact)")


def _optimizer_bytes(optimizer: str, estimator: str, q: int, n_params: int, wfmt) -> tuple[int, str]:
    """One step's (seed, coefficient) pairs plus the optimizer's per-weight state copies."""
    copies = OPTIMIZERS[optimizer]
    state_bytes = wfmt.bytes if not wfmt.is_integer else 4
    pairs = 0 if estimator == "cge" else q
    return pairs * SEED_PAIR_BYTES + copies * n_params * state_bytes, (
        f"{pairs} (seed, coeff) pairs x {SEED_PAIR_BYTES} B"
        + (f" + {copies} state cop{'y' if copies == 1 else 'ies'} x {n_params:,} x {state_bytes} B" if copies else ""))


def _check_step(estimator: str, optimizer: str, batch_size: int, q: int) -> None:
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(q, bool) or not isinstance(q, int) or q < 1:
        raise ConfigError(f"queries_per_step must be a positive integer, got {q!r}")


def memory_breakdown(
    model: torch.nn.Module,
    profile: ProfileLike,
    *,
    input_shape: Sequence[int] | int,
    batch_size: int,
    queries_per_step: int = 1,
    estimator: str = "rge",
    optimizer: str = "seed-sgd",
    label_shape: Sequence[int] | int = (),
    label_bytes: int = 4,
) -> MemoryBreakdown:
    """Estimate the SRAM one zeroth-order training step needs on ``profile``.

    Items (bytes):

    - **weights**: parameter count x bytes of the weight format. For an
      integer format, 1-D ``bias`` tensors are stored at accumulator width
      (they are added to the accumulator) and each tensor carries one
      float32 scale.
    - **activations**: the largest pair of consecutive activation buffers
      (ping-pong: a layer reads one and writes the next) at ``batch_size``,
      x bytes of the activation format. Found by a forward of zeros, with
      hooks, through a copy of the model; in-place elementwise modules add
      no buffer.
    - **estimator**: the loss values (q + 1 for forward-difference RGE, 2q
      for central RGE, 2 for CGE; float32) plus, for RGE on a float format,
      one copy of the weights to restore them after a perturbation (in-place
      +mu u / -mu u is not exact in floating point, MeZO's fp16 issue;
      integer perturbations of integer weights are undone exactly). CGE
      saves one scalar per coordinate but keeps the d-vector of differences.
    - **optimizer**: the (seed, coefficient) pairs of one step (8 bytes
      each, q pairs for RGE), plus per-weight state: none for seed-sgd / sgd
      / sign-sgd, one copy for sgd-momentum, two for adam (at the weight
      width for float formats, float32 for integer ones). The estimate
      sum_i c_i u_i is regenerated coordinate by coordinate from the seeds,
      never stored.
    - **io**: one input batch (activation format), its labels
      (``label_shape`` per sample x ``label_bytes``, default one int32 class
      id) and one frame of ``max_frame_bytes``.
    """

    prof = load_profile(profile)
    q = queries_per_step
    _check_step(estimator, optimizer, batch_size, q)

    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    if isinstance(label_shape, int):
        label_shape = (label_shape,)
    wfmt, afmt, accfmt = prof.weight_fmt, prof.activation_fmt, prof.accumulator_fmt
    items: dict[str, int] = {}
    details: dict[str, str] = {}

    named = [(n, p) for n, p in model.named_parameters()]
    n_params = sum(p.numel() for _, p in named)
    items["weights"], details["weights"] = _weight_bytes(named, wfmt, accfmt)
    items["activations"], details["activations"] = _activation_bytes(
        _activation_numels(model, input_shape, batch_size), batch_size, afmt)
    items["estimator"], details["estimator"] = _estimator_bytes(estimator, q, n_params, wfmt)
    items["optimizer"], details["optimizer"] = _optimizer_bytes(optimizer, estimator, q, n_params, wfmt)

    # io buffers
    in_numel = batch_size * math.prod(tuple(input_shape))
    lab = batch_size * math.prod(tuple(label_shape)) * label_bytes
    items["io"] = in_numel * afmt.bytes + lab + prof.max_frame_bytes
    details["io"] = (
        f"input {in_numel:,} x {afmt.bytes} B + labels {lab:,} B + one frame {prof.max_frame_bytes:,} B"
    )

    return MemoryBreakdown(
        profile=prof,
        items={k: int(items[k]) for k in _ITEM_ORDER},
        details=details,
        params=int(n_params),
        batch_size=batch_size,
        queries_per_step=q,
        estimator=estimator,
        optimizer=optimizer,
    )


def check_fits(model: torch.nn.Module, profile: ProfileLike, **kwargs: Any) -> MemoryBreakdown:
    """:func:`memory_breakdown`, raising :class:`BudgetError` when it does not fit.

    The error message holds the table and the suggestions; the breakdown is
    on ``err.breakdown``.
    """
    bd = memory_breakdown(model, profile, **kwargs)
    if not bd.fits:
        msg = "\n".join(
            [
                f"model does not fit {bd.profile.name}: needs {bd.total:,} bytes, "
                f"budget {bd.budget:,} bytes of SRAM",
                bd.format_table(),
                "suggestions:",
                *(f"  - {s}" for s in bd.suggestions()),
            ]
        )
        raise BudgetError(msg, bd)
    return bd
