"""The oracle backends, by name: ``edgezo train --backend NAME``.

A backend entry is ``factory(recipe) -> oracle_factory | None``; the
``oracle_factory(model, loss_fn, *, groups, example_batch, **options)`` it
returns builds the oracle the trainer queries (None: the recipe's own
:class:`~edgezo.oracles.torch_oracle.TorchOracle`). ``torch`` is built in;
``onnxruntime``, ``tvm`` (``edgezo.export.backends``), ``int8`` and
``photonic`` (``edgezo.targets.backends``) and any third-party backend come
from the ``edgezo.backends`` entry-point group, so this module names none of
them (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..oracle import OracleError
from ..registry import Registry

__all__ = ["BACKENDS", "oracle_factory", "torch_backend"]


def torch_backend(recipe) -> None:
    """``--backend torch``: the recipe's TorchOracle (no factory)."""
    return None


BACKENDS: Registry[Callable[..., Any]] = Registry("backend", group="edgezo.backends", packaged=True)
BACKENDS.register("torch", torch_backend)


def oracle_factory(backend: str, recipe) -> Callable[..., Any] | None:
    """The oracle factory of ``backend`` for ``recipe`` (None: the engine's TorchOracle).

    An unknown name raises ``unknown backend ...; available: ...``; a backend
    whose optional dependency is missing raises :class:`OracleError` naming it.
    """
    try:
        make = BACKENDS.get(backend)
    except ModuleNotFoundError as err:
        raise OracleError(f"backend {backend!r} is not part of this installation ({err})") from None
    return make(recipe)
