"""The one ``--set KEY=VALUE`` syntax of every command (train, device train, export, robustify, bench).

``KEY`` is a dotted path of identifiers (``train.epochs``, ``estimator.q``;
``robustify`` settings have no section: ``batch_size``). ``VALUE`` is a TOML
literal — ``5``, ``0.01``, ``true``, ``"text"``, ``[0.25, 0.5]``, ``{a = 1}`` —
and any other text is taken as a bare string (``--set model.activation=relu``).
Which keys exist is the command's business (the recipe schema for recipes,
the settings dataclass for robustify); they refuse unknown keys with a
"did you mean".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")


def parse_value(raw: str) -> Any:
    """A TOML literal (number, bool, quoted string, array, inline table), else the text itself."""
    text = raw.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(items: Iterable[str] | None) -> dict[str, Any]:
    """``["train.epochs=5", "estimator.q=64"]`` → ``{"train.epochs": 5, "estimator.q": 64}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. --set train.epochs=5), got {item!r}")
        if not _KEY.fullmatch(key):
            raise ConfigError(f"--set {item!r}: {key!r} is not a key (letters, digits, _ and -, "
                              "sections joined by dots, e.g. train.epochs)")
        out[key] = parse_value(raw)
    return out


__all__ = ["parse_set", "parse_value"]
