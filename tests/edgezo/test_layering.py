"""The layering rules of docs/architecture.md, checked on the import graph.

Every ``import`` statement of the package (module level and inside functions,
``TYPE_CHECKING`` blocks included) is read with :mod:`ast`; the test fails on
an import from a higher layer, on an import between ``host`` and ``targets``,
on an import cycle between modules, on bench/ or tests/ importing the CLI
layer (tests may only drive ``edgezo.cli.main``), and on a module over 500
lines or a function over 80 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"edgezo": "edgezo", "edgezo.models": "models", "edgezo.export": "export",
           "edgezo.targets": "targets", "edgezo.host": "host"}

# (module prefix, layer): the longest matching prefix wins; a higher layer may import a lower one.
LAYERS = [
    ("edgezo", 0), ("edgezo.registry", 0), ("edgezo.errors", 0), ("edgezo.io", 0),
    ("edgezo.models", 1),
    ("edgezo.params", 2), ("edgezo.directions", 2), ("edgezo.direction_spec", 2), ("edgezo.direction_backends", 2),
    ("edgezo.direction_native", 2), ("edgezo.direction_cache", 2), ("edgezo.oracle", 2),
    ("edgezo.oracles.base", 2), ("edgezo.losses", 2), ("edgezo.protocol", 2), ("edgezo.devices", 2),
    ("edgezo.extras", 0), ("edgezo._version", 0),
    ("edgezo.estimators", 3),
    ("edgezo.oracles", 4),
    ("edgezo.trainer", 5), ("edgezo.optim", 5), ("edgezo.data", 5), ("edgezo.recipes", 5), ("edgezo.plots", 5),
    ("edgezo.distributed", 5), ("edgezo.checkpoint", 5), ("edgezo.tracking", 5),
    ("edgezo.overrides", 5), ("edgezo.recipe_schema", 5), ("edgezo.tasks", 5),
    ("edgezo.adapters", 6),
    ("edgezo.bench", 7), ("edgezo.host", 7), ("edgezo.export", 7), ("edgezo.targets", 7),
    ("edgezo.commands", 8),
    ("edgezo.cli", 9), ("edgezo.__main__", 9), ("edgezo.pytest_plugin", 9),
]
# The package's lazy public API (edgezo/__init__.py) imports by string, never with a statement.
LAZY_ROOT = {"edgezo"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# Modules allowed over the size limits, each with its reason (none today; the list only shrinks).
SIZE_EXCEPTIONS: dict[str, str] = {}


def _module_files() -> dict[str, Path]:
    out = {}
    for package, folder in FOLDERS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"] if rel.name == "__init__" else list(rel.parts)
            if any(p.startswith(".") or p == "firmware" for p in parts):
                continue
            out[".".join([package, *parts])] = path
    return out


MODULES = _module_files()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str, tree: ast.AST) -> set[str]:
    """The edgezo modules that ``name`` imports (a name imported from a package counts as its module)."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {_owner(m) for m in found if m == "edgezo" or m.startswith("edgezo.")} - {None, name}


def _owner(module: str) -> str | None:
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def _layer(module: str) -> tuple[int, str]:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best], best


TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}
GRAPH = {name: _imports(name, tree) for name, tree in TREES.items()}


def test_every_module_has_a_layer():
    assert len(MODULES) > 100
    assert all(_layer(m)[1] != "edgezo" or m in LAZY_ROOT | {"edgezo.registry"} for m in MODULES), \
        [m for m in MODULES if _layer(m)[1] == "edgezo" and m not in LAZY_ROOT]


def test_no_module_imports_a_higher_layer():
    bad = [f"{src} (layer {_layer(src)[0]}) imports {dst} (layer {_layer(dst)[0]})"
           for src, targets in GRAPH.items() for dst in targets if _layer(dst)[0] > _layer(src)[0]]
    assert not bad, "\n".join(sorted(bad))


def test_host_and_targets_share_only_the_protocol_module():
    bad = [f"{src} imports {dst}" for src, targets in GRAPH.items() for dst in targets
           if {_layer(src)[1], _layer(dst)[1]} == {"edgezo.host", "edgezo.targets"}]
    assert not bad, "\n".join(sorted(bad))


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def _package_cycle(comp: list[str]) -> bool:
    """A package importing its own sub-modules to re-export them, which they import back: not a cycle of layers."""
    return all(m == comp[0] or m.startswith(comp[0] + ".") for m in comp) and _is_package(comp[0])


def test_no_import_cycles():
    cycles = [c for c in _cycles() if not _package_cycle(c)]
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_bench_and_tests_do_not_import_the_cli_layer():
    bad = [f"{src} imports {dst}" for src, targets in GRAPH.items() for dst in targets
           if src.startswith("edgezo.bench") and _layer(dst)[0] >= _layer("edgezo.commands")[0]]
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgezo.commands"):
                bad.append(f"{path.relative_to(ROOT)} imports {node.module}")
            if isinstance(node, ast.ImportFrom) and node.module == "edgezo.cli":
                bad += [f"{path.relative_to(ROOT)} imports edgezo.cli.{a.name}" for a in node.names if a.name != "main"]
            if isinstance(node, ast.Import):
                bad += [f"{path.relative_to(ROOT)} imports {a.name}" for a in node.names
                        if a.name.startswith(("edgezo.cli", "edgezo.commands"))]
    assert not bad, "\n".join(sorted(bad))


def test_ahead_of_time_export_does_not_import_runtimes():
    """export/ compiles; only the glue that hands compiled graphs to a runtime imports oracles/:
    export/backends.py (``--backend``) and export/onnx_model.py (``train --onnx``)."""
    glue = {"edgezo.export.backends", "edgezo.export.onnx_model"}
    bad = [f"{src} imports {dst}" for src, targets in GRAPH.items() for dst in targets
           if src.startswith("edgezo.export.") and src not in glue and dst.startswith("edgezo.oracles")]
    assert not bad, "\n".join(sorted(bad))


def test_engine_names_no_higher_layer_by_string():
    """A lazy "module:attr" string is an import too: below adapters/ none may name a higher layer."""
    bad = []
    for src, tree in TREES.items():
        if src in LAZY_ROOT:
            continue  # the lazy public API names what it re-exports
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("edgezo."):
                target = _owner(node.value.partition(":")[0].split()[0])
                if target and _layer(target)[0] > _layer(src)[0]:
                    bad.append(f"{src} names {node.value!r}")
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_and_function_sizes(name):
    if name in SIZE_EXCEPTIONS:
        pytest.skip(SIZE_EXCEPTIONS[name])
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{MODULES[name]} has {lines} lines (limit {MAX_MODULE_LINES})"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(TREES[name])
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{MODULES[name]}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"
