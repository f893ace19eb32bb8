"""The import contracts (docs/architecture.md), read from the source with `ast`, so they hold for imports
inside functions too (a lazy import is still a dependency):

1. the core library (`videopipe/`) imports nothing from the edges (`api/`, `workers/`);
2. the edges reach each other only where the layering allows (`workers/` never imports `api/`, `api/` never
   imports `workers/`);
3. there are no import cycles between first-party modules;
4. the repositories (`videopipe/db/repos/`) import no media, model or service code: only the database layer;
5. SQL lives in the repositories and the database layer: no other module imports SQLAlchemy's query API.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("videopipe", "api", "workers")
# Modules that may build queries (import sqlalchemy's select/delete/update/text/func...): the database layer.
SQL_ALLOWED = ("videopipe.db", "videopipe.testing.databases")  # the latter: CREATE/DROP DATABASE for tests
# ... and, for now, the services whose queries have not moved into the repositories yet. Shrink this list; never
# grow it (a module added here needs a reason in docs/architecture.md).
SQL_NOT_MOVED_YET: frozenset[str] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:  # Alembic scripts run under Alembic, not imported
                continue
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in the tree (any depth), with whether it only runs for the type checker."""

    def walk(node: ast.AST, typing_only: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, typing_only
            yield from walk(child, typing_only or _type_checking_only(child))

    yield from walk(tree, False)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement loads, resolved against the first-party modules (a `from package import
    name` names a submodule when one is called so, else the package itself)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".")
        is_package = MODULES.get(module, Path()).name == "__init__.py"
        package = package if is_package else package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    out = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        out.append(full if full in MODULES else base)
    return out


def _graph(include_typing: bool = False) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, set())
        for node, typing_only in _imports(ast.parse(path.read_text(), str(path))):
            if typing_only and not include_typing:
                continue
            for target in _targets(module, node):
                if target.split(".")[0] in PACKAGES and target != module:
                    edges.add(target)
    return graph


def test_the_contracts_see_every_module() -> None:
    assert {"videopipe.services", "videopipe.jobs", "videopipe.stages", "api.app", "workers.tasks"} <= set(MODULES)
    graph = _graph()
    assert "videopipe.stages" in graph["videopipe.jobs"]  # the engine runs the stages
    assert "videopipe.jobs" in graph["videopipe.services"]
    assert "videopipe.services" in graph["workers.tasks"]


@pytest.mark.parametrize("edge", ["api", "workers"])
def test_the_core_imports_nothing_from_the_edges(edge: str) -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in _graph(include_typing=True).items()
        if module.split(".")[0] == "videopipe"
        for target in targets
        if target.split(".")[0] == edge
    )
    assert offenders == []


def test_the_edges_do_not_import_each_other() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in _graph(include_typing=True).items()
        for target in targets
        if {module.split(".")[0], target.split(".")[0]} == {"api", "workers"}
    )
    assert offenders == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_there_are_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The contract above can fail: a cycle through a lazy import is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from videopipe.library import too_large\n")
    assert [_targets("videopipe.storage", node) for node, _ in _imports(tree)] == [["videopipe.library"]]


def test_the_repositories_import_only_the_database_layer() -> None:
    allowed = ("videopipe.db", "videopipe.errors", "videopipe.timefmt", "videopipe.config", "videopipe.schema")
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if module.startswith("videopipe.db.repos")
        for target in targets
        if not target.startswith(allowed) and not (target == "videopipe.index" and module.endswith("results"))
    )
    assert offenders == []


def test_queries_live_in_the_database_layer() -> None:
    query_api = {"select", "delete", "update", "insert", "text", "func", "or_", "and_", "case", "literal"}
    offenders = []
    for module, path in MODULES.items():
        if module.startswith(SQL_ALLOWED) or module in SQL_NOT_MOVED_YET:
            continue
        for node, _ in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
                names = {alias.name for alias in node.names} & query_api
                if names:
                    offenders.append(f"{module}: from {node.module} import {', '.join(sorted(names))}")
    assert offenders == []
