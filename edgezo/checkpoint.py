"""The one checkpoint format of every long-running job (training, robustification, export's input).

A checkpoint is a ``torch.save`` zip holding tensors and plain data only
(dict, list, tuple, str, int, float, bool, None), with a header under the key
``"edgezo"``::

    {"edgezo": {"format": "edgezo-checkpoint", "version": 2, "kind": "train",
                "settings": "<canonical JSON of the run's settings>",
                "fingerprint": "<sha256 of that JSON>"},
     **state}

* Written atomically (temporary file beside the target, then ``os.replace``),
  so a crash never leaves half a checkpoint in place of a good one.
* Read with ``torch.load(weights_only=True)``: a file that carries any other
  Python object (a pickle payload that would run code) is refused before a
  single object of it is built.
* Versioned and fingerprinted: a file of another format version, another job
  kind or other settings is refused with one line that names the file, what
  is wrong and what to do (:class:`~edgezo.errors.CheckpointError`).

See docs/checkpoints.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from . import io
from .errors import CheckpointError

FORMAT = "edgezo-checkpoint"
VERSION = 2
HEADER = "edgezo"
_ZIP_MAGIC = b"PK\x03\x04"


def settings_json(settings: Mapping[str, Any]) -> str:
    """The canonical JSON of a run's settings (sorted keys, no spaces) that the fingerprint hashes."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(settings: Mapping[str, Any]) -> str:
    """``sha256(settings_json(settings))`` as hex."""
    return hashlib.sha256(settings_json(settings).encode()).hexdigest()


def save(path: str | os.PathLike, kind: str, state: Mapping[str, Any], *, settings: Mapping[str, Any]) -> None:
    """Write ``state`` (tensors and plain data) as a ``kind`` checkpoint of a run with ``settings``, atomically."""
    if HEADER in state:
        raise ValueError(f"the state may not use the key {HEADER!r}")
    text = settings_json(settings)
    header = {"format": FORMAT, "version": VERSION, "kind": kind, "settings": text,
              "fingerprint": hashlib.sha256(text.encode()).hexdigest()}
    io.torch_save({HEADER: header, **state}, path)


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The raw payload of a checkpoint file (header included), read with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is missing, not a
    checkpoint, truncated, or carries objects other than tensors and plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there (run the job without resuming first, or check the path)")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != _ZIP_MAGIC:
        raise CheckpointError(f"{path}: not an edgezo checkpoint (not a torch.save file); "
                              "pass the checkpoint.pt that edgezo wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err).lower():
            raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors and plain data, "
                                  "and edgezo never runs code from a file; use a checkpoint that edgezo wrote"
                                  ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint ({_first_line(err)}); "
                              "use another checkpoint or start a new run") from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_first_line(err)}); "
                              "use another checkpoint or start a new run") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not an edgezo checkpoint (it holds a {type(payload).__name__})")
    return payload


def load(path: str | os.PathLike, kind: str, *, settings: Mapping[str, Any] | None = None,
         required: Iterable[str] = ()) -> dict[str, Any]:
    """The state of a ``kind`` checkpoint, checked: format, version, kind, the ``required`` keys and,
    when ``settings`` is given, that the run's settings are the same (naming the settings that differ)."""
    path = Path(path)
    payload = read(path)
    header = payload.pop(HEADER, None)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        old = payload.get("version")
        hint = f" (an older edgezo's format version {old})" if isinstance(old, int) else ""
        raise CheckpointError(f"{path}: not an edgezo checkpoint of format version {VERSION}{hint}; "
                              "start a new run in another --out directory")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {header.get('version')}, this edgezo reads "
                              f"version {VERSION}; start a new run in another --out directory")
    if header.get("kind") != kind:
        raise CheckpointError(f"{path}: a {header.get('kind')!r} checkpoint, not a {kind!r} one")
    missing = [k for k in required if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, lacks {', '.join(map(repr, missing))}")
    if settings is not None and header.get("fingerprint") != fingerprint(settings):
        raise CheckpointError(f"{path}: written by a run with other settings (differs in: "
                              f"{', '.join(_differences(header.get('settings'), settings)) or 'unknown'}); "
                              "resume with the same recipe and options, or use another --out directory")
    return payload


def _differences(theirs_json: Any, mine: Mapping[str, Any]) -> list[str]:
    try:
        theirs = json.loads(theirs_json)
    except (TypeError, ValueError):
        return []
    mine = json.loads(settings_json(mine))
    return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


__all__ = ["FORMAT", "VERSION", "save", "read", "load", "fingerprint", "settings_json"]
