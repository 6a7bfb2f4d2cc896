"""The package's shape, checked: imports go down the stack, no circles, no borrowed privates.

These read the source (no imports), so a new module is checked the day it is added.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "charrnn"
SCRIPTS = PACKAGE.parent / "scripts"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, top_level_only: bool):
    """(module, name) pairs for every ``from charrnn... import name`` / ``import charrnn...``."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("charrnn"):
            for alias in node.names:
                yield node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("charrnn"):
                    yield alias.name, None


def test_no_import_circles_between_modules():
    edges = {}
    for mod, path in MODULES.items():
        targets = set()
        for src, name in imports(path, top_level_only=True):
            target = f"{src}.{name}" if f"{src}.{name}" in MODULES else src
            if target in MODULES and target != mod:
                targets.add(target)
        edges[mod] = targets
    state: dict[str, int] = {}

    def visit(mod, trail):
        state[mod] = 1
        for nxt in edges[mod]:
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join([*trail, mod, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, mod])
        state[mod] = 2

    for mod in edges:
        if mod not in state:
            visit(mod, [])


@pytest.mark.parametrize(
    "path", [*MODULES.values(), *sorted(SCRIPTS.glob("*.py"))], ids=lambda p: p.name
)
def test_no_private_name_is_imported_from_another_module(path):
    private = [
        f"{src}.{name}"
        for src, name in imports(path, top_level_only=False)
        if name and name.startswith("_") and not name.startswith("__")
    ]
    tree = ast.parse(path.read_text())
    modules = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if (node.module or "").startswith("charrnn")
    }
    private += [
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in modules
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    assert not private, f"{path.name} uses private names of other modules: {private}"


@pytest.mark.parametrize("package", ["engine", "data", "parallel"])
def test_the_engine_data_and_parallel_packages_know_nothing_of_sklearn_click_or_estimators(
    package,
):
    for path in (PACKAGE / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                assert not name.startswith(("sklearn", "click", "charrnn.cli")), (path, name)
                assert not name.startswith("charrnn.estimators"), (path, name)
