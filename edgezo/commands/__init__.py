"""CLI sub-commands: argument parsing that calls the engine (CLI layer only, docs/architecture.md)."""


from ..errors import ConfigError


class CLIError(ConfigError):
    """A bad command-line option: printed as ``edgezo: error: ...`` with exit status 2."""


__all__ = ["CLIError"]
