"""mkdocs hook: the package as installed, for mkdocstrings to read.

edgezo is five folders mapped to one import name (setup.py: ``edgezo/`` is
``edgezo``, ``models/`` is ``edgezo.models``, ...). The API pages are read by
griffe from source files, so before the build this hook lays out that import
tree as symbolic links under ``build/docs-src/`` (ignored), which mkdocs.yml
gives mkdocstrings as its search path. The mapping is read from setup.py.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TREE = ROOT / "build" / "docs-src"


def package_folders() -> dict[str, str]:
    """``FOLDERS`` from setup.py (import name → folder), read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FOLDERS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("setup.py defines no FOLDERS mapping")


def build_tree() -> Path:
    if TREE.exists():
        shutil.rmtree(TREE)
    for name, folder in sorted(package_folders().items()):
        target = TREE.joinpath(*name.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for child in (ROOT / folder).iterdir():
            if child.name != "__pycache__" and not target.joinpath(child.name).exists():
                target.joinpath(child.name).symlink_to(child)
    return TREE


def on_startup(command, dirty) -> None:
    build_tree()
