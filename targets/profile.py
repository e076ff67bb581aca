"""Target profiles (memory, number format, noise) and the on-device memory model.

A *target profile* describes where a forward pass runs: how much SRAM and
flash it has, which number formats its datapath uses for weights,
activations and accumulators, how large one frame on its link may be, how
noisy its multiply-accumulates are, and (optionally) the LLVM triple / CPU to
cross-compile for. Profiles are TOML files; the shipped ones live in
``targets/profiles/`` (package data of ``edgezo.targets``)::

    name = "cortex-m4-256k"
    description = "..."
    sram_bytes = 262144
    flash_bytes = 1048576
    max_frame_bytes = 256

    [format]
    weight = "fp32"            # fp32 | fp16 | bf16 | int8 | int16 | int32
    activation = "fp32"
    accumulator = "fp32"
    # activation_frac_bits = 4 # required when activation is an integer format

    [noise]                    # optional; default kind = "none"
    kind = "none"              # none | multiplicative
    # relative_std = 0.02
    # granularity = "mac"      # mac | output

    [cross]                    # optional
    triple = "thumbv7em-none-eabihf"
    cpu = "cortex-m4"

The memory model (:func:`memory_breakdown`, :func:`check_fits`) estimates the
SRAM a forward-only (zeroth-order) training step needs on such a target —
weights, the live activation buffers, estimator and optimizer state, I/O
buffers — and says what to shrink when it does not fit (the budgets of
MIT's "On-Device Training Under 256KB Memory" and of "Poor Man's Training on
MCUs", METHODS.md section 6).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union
from edgezo.errors import ConfigError, EdgezoError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "NumberFormat",
    "FORMATS",
    "TargetProfile",
    "PROFILES_DIR",
    "load_profile",
    "list_profiles",
    "profile_names",
    "MemoryBreakdown",
    "BudgetError",
    "memory_breakdown",
    "check_fits",
    "ESTIMATORS",
    "OPTIMIZERS",
]

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

ProfileLike = Union["TargetProfile", str, os.PathLike]


# --------------------------------------------------------------------------
# number formats
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NumberFormat:
    """A storage / arithmetic format: ``kind`` is "float" or "int"."""

    name: str
    kind: str
    bits: int

    @property
    def bytes(self) -> int:
        return self.bits // 8

    @property
    def is_integer(self) -> bool:
        return self.kind == "int"

    @property
    def qmax(self) -> int:
        """Largest representable integer (integer formats only)."""
        if not self.is_integer:
            raise ValueError(f"{self.name} is not an integer format")
        return 2 ** (self.bits - 1) - 1

    @property
    def qmin(self) -> int:
        if not self.is_integer:
            raise ValueError(f"{self.name} is not an integer format")
        return -(2 ** (self.bits - 1))

    @property
    def torch_dtype(self) -> "torch.dtype":
        import torch

        return {
            "fp32": torch.float32,
            "fp16": torch.float16,
            "bf16": torch.bfloat16,
            "int8": torch.int8,
            "int16": torch.int16,
            "int32": torch.int32,
        }[self.name]


FORMATS: dict[str, NumberFormat] = {
    f.name: f
    for f in (
        NumberFormat("fp32", "float", 32),
        NumberFormat("fp16", "float", 16),
        NumberFormat("bf16", "float", 16),
        NumberFormat("int8", "int", 8),
        NumberFormat("int16", "int", 16),
        NumberFormat("int32", "int", 32),
    )
}

NOISE_KINDS = ("none", "multiplicative")
NOISE_GRANULARITIES = ("mac", "output")


# --------------------------------------------------------------------------
# the profile
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetProfile:
    """An edge target: memory budget, number formats, link frame size, noise.

    Fields mirror the TOML file (``[format]``, ``[noise]`` and ``[cross]``
    tables are flattened). Construction validates every field and raises a
    :class:`ValueError` naming ``source`` (the file) and the bad field.
    """

    name: str
    sram_bytes: int
    flash_bytes: int
    max_frame_bytes: int
    weight_format: str = "fp32"
    activation_format: str = "fp32"
    accumulator_format: str = "fp32"
    activation_frac_bits: int | None = None
    description: str = ""
    noise: str = "none"
    noise_relative_std: float = 0.0
    noise_granularity: str = "mac"
    triple: str | None = None
    cpu: str | None = None
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        where = self.source or f"TargetProfile({self.name!r})"

        def bad(fld: str, msg: str) -> ValueError:
            return ValueError(f"{where}: field '{fld}': {msg}")

        if not isinstance(self.name, str) or not self.name.strip():
            raise bad("name", f"must be a non-empty string, got {self.name!r}")
        if not isinstance(self.description, str):
            raise bad("description", f"must be a string, got {self.description!r}")
        for fld in ("sram_bytes", "flash_bytes", "max_frame_bytes"):
            v = getattr(self, fld)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise bad(fld, f"must be a positive integer, got {v!r}")
        for fld, toml_key in (
            ("weight_format", "format.weight"),
            ("activation_format", "format.activation"),
            ("accumulator_format", "format.accumulator"),
        ):
            v = getattr(self, fld)
            if v not in FORMATS:
                raise bad(toml_key, f"unknown number format {v!r}; known: {', '.join(FORMATS)}")
        w, a, acc = self.weight_fmt, self.activation_fmt, self.accumulator_fmt
        fb = self.activation_frac_bits
        if a.is_integer:
            if fb is None:
                raise bad(
                    "format.activation_frac_bits",
                    f"required for the fixed-point activation format {a.name}",
                )
            if isinstance(fb, bool) or not isinstance(fb, int) or not 0 <= fb < a.bits:
                raise bad(
                    "format.activation_frac_bits",
                    f"must be an integer in [0, {a.bits - 1}] for {a.name}, got {fb!r}",
                )
        elif fb is not None:
            raise bad(
                "format.activation_frac_bits",
                f"only meaningful for an integer activation format, not {a.name}",
            )
        if w.is_integer != a.is_integer:
            raise bad(
                "format.weight",
                f"weights ({w.name}) and activations ({a.name}) must both be integer "
                "or both be floating point",
            )
        if w.is_integer:
            if not acc.is_integer or acc.bits < w.bits + a.bits:
                raise bad(
                    "format.accumulator",
                    f"{w.name} x {a.name} products need an integer accumulator of at "
                    f"least {w.bits + a.bits} bits, got {acc.name}",
                )
        elif acc.is_integer:
            raise bad("format.accumulator", f"a float datapath needs a float accumulator, got {acc.name}")
        if self.noise not in NOISE_KINDS:
            raise bad("noise.kind", f"unknown noise kind {self.noise!r}; known: {', '.join(NOISE_KINDS)}")
        s = self.noise_relative_std
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
            raise bad("noise.relative_std", f"must be a finite number >= 0, got {s!r}")
        if self.noise == "multiplicative":
            if s <= 0:
                raise bad("noise.relative_std", "must be > 0 for multiplicative noise")
            if w.is_integer:
                raise bad("noise.kind", "analog noise is only modelled for floating-point datapaths")
        if self.noise_granularity not in NOISE_GRANULARITIES:
            raise bad(
                "noise.granularity",
                f"unknown granularity {self.noise_granularity!r}; known: {', '.join(NOISE_GRANULARITIES)}",
            )
        for fld in ("triple", "cpu"):
            v = getattr(self, fld)
            if v is not None and (not isinstance(v, str) or not v):
                raise bad(f"cross.{fld}", f"must be a non-empty string, got {v!r}")

    # -- convenience -------------------------------------------------------

    @property
    def weight_fmt(self) -> NumberFormat:
        return FORMATS[self.weight_format]

    @property
    def activation_fmt(self) -> NumberFormat:
        return FORMATS[self.activation_format]

    @property
    def accumulator_fmt(self) -> NumberFormat:
        return FORMATS[self.accumulator_format]

    @property
    def weight_bytes(self) -> int:
        return self.weight_fmt.bytes

    @property
    def activation_bytes(self) -> int:
        return self.activation_fmt.bytes

    @property
    def is_integer(self) -> bool:
        """True for an integer (fixed-point) datapath."""
        return self.weight_fmt.is_integer

    @property
    def has_noise(self) -> bool:
        return self.noise != "none"

    def tvm_target(self) -> dict[str, str] | None:
        """A TVM target dict for cross compilation, or None without a triple."""
        if self.triple is None:
            return None
        t = {"kind": "llvm", "mtriple": self.triple}
        if self.cpu:
            t["mcpu"] = self.cpu
        return t

    def to_dict(self) -> dict[str, Any]:
        """The profile as the nested mapping of its TOML file."""
        fmt: dict[str, Any] = {
            "weight": self.weight_format,
            "activation": self.activation_format,
            "accumulator": self.accumulator_format,
        }
        if self.activation_frac_bits is not None:
            fmt["activation_frac_bits"] = self.activation_frac_bits
        noise: dict[str, Any] = {"kind": self.noise}
        if self.has_noise:
            noise["relative_std"] = self.noise_relative_std
            noise["granularity"] = self.noise_granularity
        d: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "sram_bytes": self.sram_bytes,
            "flash_bytes": self.flash_bytes,
            "max_frame_bytes": self.max_frame_bytes,
            "format": fmt,
            "noise": noise,
        }
        cross = {k: v for k, v in (("triple", self.triple), ("cpu", self.cpu)) if v is not None}
        if cross:
            d["cross"] = cross
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> "TargetProfile":
        """Build a profile from the nested TOML mapping; errors name ``source``."""
        where = source or "<profile>"

        def bad(fld: str, msg: str) -> ValueError:
            return ValueError(f"{where}: field '{fld}': {msg}")

        top = {"name", "description", "sram_bytes", "flash_bytes", "max_frame_bytes", "format", "noise", "cross"}
        sub = {
            "format": {"weight", "activation", "accumulator", "activation_frac_bits"},
            "noise": {"kind", "relative_std", "granularity"},
            "cross": {"triple", "cpu"},
        }
        for k in data:
            if k not in top:
                raise bad(k, f"unknown field; allowed: {', '.join(sorted(top))}")
        for req in ("name", "sram_bytes", "flash_bytes", "max_frame_bytes", "format"):
            if req not in data:
                raise bad(req, "missing required field")
        tables: dict[str, Mapping[str, Any]] = {}
        for t, allowed in sub.items():
            v = data.get(t, {})
            if not isinstance(v, Mapping):
                raise bad(t, f"must be a table, got {v!r}")
            for k in v:
                if k not in allowed:
                    raise bad(f"{t}.{k}", f"unknown field; allowed: {', '.join(sorted(allowed))}")
            tables[t] = v
        fmt, noise, cross = tables["format"], tables["noise"], tables["cross"]
        for req in ("weight", "activation", "accumulator"):
            if req not in fmt:
                raise bad(f"format.{req}", "missing required field")
        noise_kind = noise.get("kind", "none")
        if noise_kind == "multiplicative" and "relative_std" not in noise:
            raise bad("noise.relative_std", "missing; required for multiplicative noise")
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            sram_bytes=data["sram_bytes"],
            flash_bytes=data["flash_bytes"],
            max_frame_bytes=data["max_frame_bytes"],
            weight_format=fmt["weight"],
            activation_format=fmt["activation"],
            accumulator_format=fmt["accumulator"],
            activation_frac_bits=fmt.get("activation_frac_bits"),
            noise=noise_kind,
            noise_relative_std=noise.get("relative_std", 0.0),
            noise_granularity=noise.get("granularity", "mac"),
            triple=cross.get("triple"),
            cpu=cross.get("cpu"),
            source=source,
        )


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


def _shipped_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PROFILES_DIR.glob("*.toml"))}


def profile_names() -> list[str]:
    """Names of the shipped profiles (file stems), sorted."""
    return list(_shipped_files())


def _load_file(path: Path, *, expect_name: str | None = None) -> TargetProfile:
    src = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"target profile file not found: {src}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: invalid TOML: {exc}") from exc
    prof = TargetProfile.from_dict(data, source=src)
    if expect_name is not None and prof.name != expect_name:
        raise ConfigError(
            f"{src}: field 'name': {prof.name!r} does not match the file name {expect_name!r}"
        )
    return prof


def load_profile(name_or_path: ProfileLike) -> TargetProfile:
    """Load a profile by shipped name (``"cortex-m4-256k"``) or from a .toml path.

    A :class:`TargetProfile` is returned unchanged. A string that ends in
    ``.toml`` or contains a path separator is read as a path. Raises
    :class:`ValueError` for an unknown name (listing the known names), a
    missing file, invalid TOML, or a missing / invalid field (naming the file
    and the field).
    """
    if isinstance(name_or_path, TargetProfile):
        return name_or_path
    if isinstance(name_or_path, os.PathLike):
        return _load_file(Path(name_or_path))
    if not isinstance(name_or_path, str):
        raise TypeError(f"expected a profile name, path or TargetProfile, got {type(name_or_path).__name__}")
    s = name_or_path
    if s.endswith(".toml") or "/" in s or os.sep in s:
        return _load_file(Path(s))
    files = _shipped_files()
    if s not in files:
        raise ConfigError(f"unknown target profile {s!r}; known profiles: {', '.join(files) or '(none)'}")
    return _load_file(files[s], expect_name=s)


def list_profiles() -> list[TargetProfile]:
    """All shipped profiles, sorted by name."""
    return [_load_file(p, expect_name=n) for n, p in _shipped_files().items()]


# --------------------------------------------------------------------------
# memory model
# --------------------------------------------------------------------------

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


def _compute_units(model: "torch.nn.Module") -> list["torch.nn.Module"]:
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


def _record(model: "torch.nn.Module", hook: Any, run: Any) -> None:
    import torch

    handles = [u.register_forward_hook(hook) for u in _compute_units(model)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()


def _activation_numels(model: "torch.nn.Module", input_shape: Sequence[int], batch_size: int) -> list[int]:
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


def memory_breakdown(
    model: "torch.nn.Module",
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
    import torch

    prof = load_profile(profile)
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    q = queries_per_step
    if isinstance(q, bool) or not isinstance(q, int) or q < 1:
        raise ConfigError(f"queries_per_step must be a positive integer, got {q!r}")

    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    if isinstance(label_shape, int):
        label_shape = (label_shape,)
    wfmt, afmt, accfmt = prof.weight_fmt, prof.activation_fmt, prof.accumulator_fmt
    items: dict[str, int] = {}
    details: dict[str, str] = {}

    # weights
    named = [(n, p) for n, p in model.named_parameters()]
    n_params = sum(p.numel() for _, p in named)
    if wfmt.is_integer:
        n_bias = sum(p.numel() for n, p in named if p.dim() == 1 and n.rsplit(".", 1)[-1] == "bias")
        n_w = n_params - n_bias
        items["weights"] = n_w * wfmt.bytes + n_bias * accfmt.bytes + SCALE_BYTES * len(named)
        details["weights"] = (
            f"{n_w:,} x {wfmt.bytes} B ({wfmt.name}) + {n_bias:,} bias x {accfmt.bytes} B "
            f"({accfmt.name}) + {len(named)} scales x {SCALE_BYTES} B"
        )
    else:
        items["weights"] = n_params * wfmt.bytes
        details["weights"] = f"{n_params:,} params x {wfmt.bytes} B ({wfmt.name})"

    # activations
    numels = _activation_numels(model, input_shape, batch_size)
    if len(numels) >= 2:
        i = max(range(len(numels) - 1), key=lambda j: numels[j] + numels[j + 1])
        pair = (numels[i], numels[i + 1])
    else:
        pair = (numels[0] if numels else 0, 0)
    items["activations"] = (pair[0] + pair[1]) * afmt.bytes
    details["activations"] = (
        f"largest consecutive pair ({pair[0]:,} + {pair[1]:,} values at batch {batch_size}) "
        f"x {afmt.bytes} B ({afmt.name})"
    )

    # estimator state
    if estimator == "cge":
        n_losses = 2
        est = n_losses * LOSS_BYTES + n_params * LOSS_BYTES + wfmt.bytes
        details["estimator"] = f"{n_params:,} coordinate differences x {LOSS_BYTES} B + saved coordinate + 2 losses"
    else:
        n_losses = 2 * q if estimator == "rge-central" else q + 1
        restore = 0 if wfmt.is_integer else n_params * wfmt.bytes
        est = n_losses * LOSS_BYTES + restore
        details["estimator"] = f"{n_losses} losses x {LOSS_BYTES} B" + (
            f" + restore copy of the weights ({n_params:,} x {wfmt.bytes} B)" if restore else
            " (integer weights: in-place restore is exact)"
        )
    items["estimator"] = est

    # optimizer state
    copies = OPTIMIZERS[optimizer]
    state_bytes = wfmt.bytes if not wfmt.is_integer else 4
    pairs = 0 if estimator == "cge" else q
    items["optimizer"] = pairs * SEED_PAIR_BYTES + copies * n_params * state_bytes
    details["optimizer"] = f"{pairs} (seed, coeff) pairs x {SEED_PAIR_BYTES} B" + (
        f" + {copies} state cop{'y' if copies == 1 else 'ies'} x {n_params:,} x {state_bytes} B" if copies else ""
    )

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


def check_fits(model: "torch.nn.Module", profile: ProfileLike, **kwargs: Any) -> MemoryBreakdown:
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
