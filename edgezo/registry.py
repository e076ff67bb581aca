"""One registry mechanism for every named plug-in kind (docs/architecture.md).

A :class:`Registry` maps names to objects (a class, a builder function, a
module). An entry is either the object itself or a ``"module:attr"`` path
(``"module"`` alone names a module) imported on first use, so registering
costs no import. A registry may name an entry-point group
(``edgezo.<kind>`` in ``pyproject.toml``): packages, edgezo's own adapters
included, add entries there and the engine never names them. Duplicate names
are refused; an unknown name raises :class:`UnknownName` (a ``ConfigError``, hence a ``ValueError``)
with the one message ``unknown <kind> 'x'; available: a, b, c``.

This module has no dependencies inside edgezo: every layer may use it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["Registry", "UnknownName", "DuplicateName", "resolve"]


class UnknownName(ConfigError):
    """A name that no entry of the registry has."""


class DuplicateName(ConfigError):
    """A second entry under a name that is taken."""


def resolve(path: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module"``) and return the object."""
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named entries of one kind, resolved lazily.

    ``kind`` is the word used in messages ("estimator", "backend", ...);
    ``group`` is the entry-point group read once, on the first lookup;
    ``packaged`` says that edgezo's own pyproject.toml fills that group, so an
    empty group means a stale install (the unknown-name message then says to
    reinstall).
    """

    def __init__(self, kind: str, *, group: str | None = None, packaged: bool = False):
        self.kind = kind
        self.group = group
        self.packaged = packaged
        self._entries: dict[str, T | str] = {}
        self._entry_points_loaded = group is None
        self._entry_point_count = 0

    # --- filling ------------------------------------------------------------------------
    def register(self, name: str, entry: T | str) -> T | str:
        """Add ``entry`` (an object or a ``"module:attr"`` path) under ``name``; a taken name is refused."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise DuplicateName(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        seen: set[tuple[str, str]] = set()
        for ep in importlib.metadata.entry_points(group=self.group):
            if (ep.name, ep.value) in seen:  # one distribution visible twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            self.register(ep.name, ep.value)
        self._entry_point_count = len(seen)

    # --- looking up ---------------------------------------------------------------------
    def available(self) -> list[str]:
        """The registered names, sorted."""
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())

    def __len__(self) -> int:
        return len(self.available())

    def unknown(self, name: object, hint: str = "") -> UnknownName:
        """The error for a name that is not registered (raise it)."""
        available = self.available()
        if self.packaged and not self._entry_point_count:
            hint += (f" (no '{self.group}' entry points are installed: after updating edgezo, reinstall it, "
                     "e.g. pip install -e .)")
        return UnknownName(f"unknown {self.kind} {name!r}; available: {', '.join(available)}{hint}")

    def path(self, name: str) -> str | None:
        """The ``"module:attr"`` path of a lazy entry (None when the entry is an object)."""
        if name not in self:
            raise self.unknown(name)
        entry = self._entries[name]
        return entry if isinstance(entry, str) else None

    def get(self, name: str) -> T:
        """The entry named ``name``, importing it on first use."""
        if name not in self:
            raise self.unknown(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = resolve(entry)
            self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
