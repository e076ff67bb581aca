"""The task registry: a recipe's ``task`` names the builder that turns it into a Trainer.

``classification`` is registered by :mod:`edgezo.recipes`; adapters add theirs
through the ``edgezo.tasks`` entry points (docs/architecture.md). It lives in
its own module so that the recipe schema can name the tasks without importing
the recipe builders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .registry import Registry

TASKS: Registry[Callable[..., Any]] = Registry("task", group="edgezo.tasks", packaged=True)

__all__ = ["TASKS"]
