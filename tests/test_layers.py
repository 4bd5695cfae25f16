"""Imports run one way: registry -> loaders -> files; no lower layer imports the report or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import vaesim

PACKAGE = Path(vaesim.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_loader_imports_the_registry():
    loaders = [p for p in (PACKAGE / "data").glob("*.py") if p.stem not in {"__init__", "registry", "commands",
                                                                           "download"}]
    assert loaders
    for path in loaders:
        assert "vaesim.data.registry" not in imported_modules(path), path.name
        # The package face re-exports the registry: only its submodules may be imported from it.
        names = {alias.name for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.ImportFrom) and node.module == "vaesim.data" for alias in node.names}
        assert all((PACKAGE / "data" / f"{name}.py").is_file() for name in names), (path.name, names)


def test_only_the_cli_layer_imports_the_report():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        package = path.relative_to(PACKAGE).parts[0]
        if package in {"report", "cli.py", "demo_command.py"}:
            continue
        if any(module.startswith("vaesim.report") for module in imported_modules(path)):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
