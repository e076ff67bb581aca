"""CLI sub-commands: argument parsing that calls the engine (CLI layer only, docs/architecture.md)."""


class CLIError(Exception):
    """A user error: printed as ``edgezo: error: ...`` with exit status 2."""


__all__ = ["CLIError"]
