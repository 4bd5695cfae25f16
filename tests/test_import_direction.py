"""Imports run one way: no circle anywhere, registry -> loaders -> files, no lower layer imports the report or the CLI,
and no module reaches for another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import vaesim

PACKAGE = Path(vaesim.__file__).parent


def module_name(path: Path) -> str:
    """``vaesim.study.stages.train`` for ``<package>/study/stages/train.py`` (a package by its ``__init__.py``)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def resolve(dotted: str) -> str | None:
    """The vaesim module ``dotted`` names or lies in (longest module prefix); None outside vaesim."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return None


def absolute(node: ast.ImportFrom, importer: str) -> str:
    """The module an ``ImportFrom`` reads from, relative imports resolved against ``importer``."""
    if not node.level:
        return node.module or ""
    package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def import_edges(path: Path) -> set[str]:
    """vaesim modules a file imports, at any depth (imports inside functions and TYPE_CHECKING blocks included).

    ``from vaesim.x import y`` imports the module ``vaesim.x.y`` when ``y`` is a submodule, else ``vaesim.x``.
    A string that names a vaesim module exactly (a lazy export table, ``importlib.import_module``) counts too.
    The implicit import of a parent package is not an edge: every submodule would otherwise import its package.
    """
    importer = module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, importer)
            for alias in node.names:
                found.add(module + "." + alias.name if module + "." + alias.name in MODULES else resolve(module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
            found.add(node.value)
    found.discard(None)
    found.discard(importer)
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (first module repeated at the end) for each strongly connected part with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.add(member)
                if member == node:
                    break
            if len(part) > 1:
                parts.append(part)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for part in parts:  # a shortest way back to the part's first module, by breadth-first search inside the part
        start = min(part)
        came_from = {start: None}
        queue = [start]
        end = None
        while queue and end is None:
            node = queue.pop(0)
            for other in sorted(graph[node] & part):
                if other == start:
                    end = node
                    break
                if other not in came_from:
                    came_from[other] = node
                    queue.append(other)
        cycle = [start]
        while end is not None:
            cycle.append(end)
            end = came_from[end]
        cycles.append(cycle[:1] + cycle[1:][::-1][1:] + [start] if len(cycle) > 1 else cycle)
    return cycles


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


def test_find_cycles_reports_a_circle_and_accepts_a_tree():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert module_name(PACKAGE / "study" / "__init__.py") == "vaesim.study"


def test_no_import_circle_in_the_package():
    graph = {module: import_edges(path) for module, path in MODULES.items()}
    cycles = find_cycles(graph)
    assert cycles == [], "import circles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in cycles)


def private_uses(path: Path) -> list[str]:
    """``_name`` (not dunder) that a file imports from, or reads off, another vaesim module."""
    importer = module_name(path)
    tree = ast.parse(path.read_text())
    private = lambda name: name.startswith("_") and not (name.startswith("__") and name.endswith("__"))  # noqa: E731
    found = []
    modules: dict[str, str] = {}  # local name -> the vaesim module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = absolute(node, importer)
            if resolve(module) is None:
                continue
            for alias in node.names:
                if module + "." + alias.name in MODULES:
                    modules[alias.asname or alias.name] = module + "." + alias.name
                elif private(alias.name):
                    found.append(f"{importer} imports {module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if resolve(alias.name) is not None:
                    modules[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or alias.name.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in modules:
                dotted = ".".join([modules[value.id], *reversed(chain)])
                if dotted in MODULES and dotted != importer:
                    found.append(f"{importer} reads {dotted}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    offenders = [use for path in sorted(PACKAGE.rglob("*.py")) for use in private_uses(path)]
    assert offenders == []
