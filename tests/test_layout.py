"""The house stays one-way (issue 23): no import cycle between the package's modules, and
no import inside a function that would close one (a cycle dodged, not removed). An import
inside a function is fine for a heavy or optional module (torch, the web server) that a
command needs only sometimes."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bt_sorter"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str, importer: str) -> str | None:
    """The package module ``name`` (``a.b`` or ``a.b.symbol``) is, or None."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in MODULES:
            return candidate if candidate != importer else None
    return None


def imported(nodes: list[ast.stmt] | list[ast.AST], importer: str) -> set[str]:
    out: set[str] = set()
    for node in nodes:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        out |= {m for n in names if (m := resolve(n, importer)) is not None}
    return out


def graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(imports run when the module loads, imports inside its functions), per module."""
    top: dict[str, set[str]] = {}
    late: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loading: list[ast.AST] = []
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # for the type checker only
            if isinstance(node, (ast.If, ast.Try)):
                loading.extend(ast.walk(node))
            else:
                loading.append(node)
        inside = [
            sub
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for sub in ast.walk(node)
        ]
        top[name], late[name] = imported(loading, name), imported(inside, name)
    return top, late


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A path of imports from ``start`` to ``goal``, or None."""
    todo, came = [start], {start: start}
    while todo:
        here = todo.pop()
        if here == goal:
            path = [goal]
            while path[-1] != start:
                path.append(came[path[-1]])
            return path[::-1]
        for there in sorted(graph[here]):
            if there not in came:
                came[there] = here
                todo.append(there)
    return None


def test_no_import_cycle_between_the_package_modules() -> None:
    top, _ = graphs()
    assert len(top) > 50  # the whole package was read
    cycles = [
        " -> ".join(path)
        for name in sorted(top)
        for dep in sorted(top[name])
        if (path := reaches(top, dep, name)) is not None
    ]
    assert cycles == []


def test_no_import_inside_a_function_closes_a_cycle() -> None:
    top, late = graphs()
    assert sum(len(deps) for deps in late.values()) > 10  # lazy imports were found
    dodged = [
        f"{name} imports {dep} in a function; {' -> '.join(path)}"
        for name in sorted(late)
        for dep in sorted(late[name])
        if (path := reaches(top, dep, name)) is not None
    ]
    assert dodged == []


def test_the_checks_see_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert reaches(graph, "b", "a") == ["b", "c", "a"]
    assert reaches(graph, "d", "a") is None
