"""Credentials of the HTTP services: API keys (model endpoint) and bearer tokens (robustify jobs).

Both are *secret → optional number* maps, read from an environment variable or
a TOML file:

* environment: ``"secret1:100000,secret2"`` — comma-separated, an optional
  ``:N`` is the key's query budget (model endpoint) or the token's query quota
  (robustify service); no number = unlimited.
* TOML file: one table, ``[keys]`` or ``[tokens]``, of named entries::

      [keys]
      alice = { key = "k-3f9c...", budget = 100000 }
      bob   = { key = "k-77aa..." }            # unlimited

      [tokens]
      ci = { token = "t-51e0...", quota = 5000000 }

Secrets are compared in constant time (``hmac.compare_digest``); a job's owner is
stored as a hash of its token, never the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from edgezo.errors import ConfigError, MissingFile

MODEL_KEYS_ENV = "EDGEZO_MODEL_KEYS"
SERVICE_TOKENS_ENV = "EDGEZO_SERVICE_TOKENS"


@dataclass(frozen=True)
class Credential:
    name: str
    secret: str
    limit: int | None  # budget (keys) or quota (tokens); None = unlimited

    @property
    def owner(self) -> str:
        return owner_id(self.secret)


def owner_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def parse_spec(text: str) -> list[Credential]:
    """``"s1:100,s2"`` → credentials (names ``env0``, ``env1``, ...)."""
    out = []
    for k, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        secret, _, limit = part.partition(":")
        out.append(Credential(f"env{k}", secret.strip(), _limit(limit.strip() or None, f"entry {k}")))
    return _checked(out, "the environment")


def load_toml(path: str | os.PathLike, table: str) -> list[Credential]:
    """Credentials from ``[table]`` of a TOML file (``table`` is ``keys`` or ``tokens``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"credentials file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    secret_field, limit_field = ("key", "budget") if table == "keys" else ("token", "quota")
    entries = data.get(table)
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path} has no [{table}] table; write e.g. "
                         f'[{table}]\\nalice = {{ {secret_field} = "...", {limit_field} = 100000 }}')
    out = []
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get(secret_field), str):
            raise ConfigError(f"{path}: [{table}].{name} needs a string field {secret_field!r}")
        out.append(Credential(name, entry[secret_field], _limit(entry.get(limit_field), f"[{table}].{name}")))
    return _checked(out, str(path))


def load_credentials(path: str | os.PathLike | None, table: str, env: str) -> list[Credential]:
    """From ``path`` when given, else from the environment variable ``env``; at least one is required."""
    if path is not None:
        return load_toml(path, table)
    text = os.environ.get(env, "")
    if not text.strip():
        what = "API keys" if table == "keys" else "bearer tokens"
        raise ConfigError(f"no {what}: set {env}=\"secret[:N],...\" or pass a TOML file with a [{table}] table")
    return parse_spec(text)


def _limit(value, where: str) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: the limit must be an integer, got {value!r}") from None
    if n < 0:
        raise ConfigError(f"{where}: the limit must be >= 0, got {n}")
    return n


def _checked(creds: list[Credential], where: str) -> list[Credential]:
    if not creds:
        raise ConfigError(f"no credentials found in {where}")
    seen = set()
    for c in creds:
        if len(c.secret) < 8:
            raise ConfigError(f"{where}: secret of {c.name!r} is shorter than 8 characters")
        if c.secret in seen:
            raise ConfigError(f"{where}: the same secret appears twice")
        seen.add(c.secret)
    return creds


def match(creds: list[Credential], presented: str | None) -> Credential | None:
    """The credential whose secret equals ``presented`` (constant-time comparison), or None."""
    if not presented:
        return None
    found = None
    for c in creds:
        if hmac.compare_digest(c.secret.encode(), presented.encode()):
            found = c
    return found
