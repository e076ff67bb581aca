"""The errors meant for users: one base, :class:`EdgezoError`.

Everything a user can cause — a misspelled recipe field, a truncated
checkpoint, a device that refuses a model, an unreachable endpoint — raises a
subclass of :class:`EdgezoError` whose message says what was wrong and what to
do. The CLI prints those as one line (``edgezo: error: ...``, exit status 2);
any other exception is a bug in edgezo and surfaces with its traceback.

Subclasses that replace an older ``ValueError`` / ``RuntimeError`` keep that
base too, so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgezoError(Exception):
    """Base of every error meant for a user (printed as one line by the CLI)."""


class ConfigError(EdgezoError, ValueError):
    """A recipe, a ``--set`` override, a command-line option or a setting is invalid."""


class OutOfRange(EdgezoError, IndexError):
    """An index given by the user (a coordinate, an offset) lies outside what it indexes."""


class CheckpointError(EdgezoError, ValueError):
    """A checkpoint file cannot be used (missing, truncated, other version, unsafe, other run)."""


class MissingDependency(EdgezoError, ImportError):
    """An optional dependency (an extra such as ``edgezo[tvm]``) is not installed; the message says which."""


class MissingFile(EdgezoError, FileNotFoundError):
    """A file the user named does not exist."""


class DeviceError(EdgezoError):
    """A device — a board, the C firmware or the Python simulator — refused a request.

    ``code`` is the protocol's error code (docs/protocol.md); ``detail`` the
    device's own words; ``request`` the refused message type when known.
    """

    def __init__(self, code: int, detail: str, request: int | None = None, *, message: str | None = None):
        super().__init__(message if message is not None else detail)
        self.code, self.detail, self.request = code, detail, request


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` (difflib ratio ≥ 0.6), else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = ["EdgezoError", "ConfigError", "CheckpointError", "MissingDependency", "MissingFile", "OutOfRange",
           "DeviceError", "did_you_mean"]
