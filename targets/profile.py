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
MCUs", docs/methods/zo-basics.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from edgezo.errors import ConfigError

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
    def torch_dtype(self) -> torch.dtype:
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
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> TargetProfile:
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
