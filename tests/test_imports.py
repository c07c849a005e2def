"""Imports flow downward: no two modules of finsent_cli import each other, directly or around a circle.

Every ``import`` and ``from ... import`` statement counts as an edge, wherever it stands: at module level,
inside a function (a deferred import is still a dependency, one that only fails later), under
``if TYPE_CHECKING:``. A circle means one of its modules holds something the others need; the fix is to
move that thing down into a module they all import, not to defer an import. Names looked up at run time
(``importlib.import_module(REGISTRY[name])``: the backend and adapter registries) are not edges, and
importing ``a.b.c`` is an edge to ``a.b.c`` only, not to the packages ``a`` and ``a.b`` it passes through.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "finsent_cli"


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package`` (a package is its ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_edges(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Module -> {module it imports: line of the first such import}, among ``modules`` only."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from . import x, from ..y import z
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                # `from pkg import sub` imports the module pkg.sub; `from mod import name` the module mod
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in name order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
    return sorted(found)


def describe(component: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    """One circle through ``component``'s first module, with the line of each import on it."""
    inside = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:  # walk inside the component until the walk closes: every module in it reaches every other
        here = path[-1]
        nxt = min(w for w in graph[here] if w in inside)
        back = start in graph[here]
        if back or nxt in seen:
            target = start if back else nxt
            loop = path[path.index(target) :] + [target]
            break
        path.append(nxt)
        seen.add(nxt)
    root = modules[start].parents[start.count(".") + (modules[start].name == "__init__.py")]  # holds the package
    steps = [f"{a} ({modules[a].relative_to(root).as_posix()}:{graph[a][b]}) imports {b}" for a, b in itertools.pairwise(loop)]
    return f"import circle among {', '.join(component)}: " + "; ".join(steps)


def test_no_import_circles() -> None:
    modules = module_files(PACKAGE)
    graph = import_edges(modules)
    assert len(modules) > 100 and sum(map(len, graph.values())) > 300  # the walk saw the package
    found = [describe(c, graph, modules) for c in circles(graph)]
    assert not found, "\n".join(found)


def test_a_circle_through_a_deferred_import_is_named(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import os\n\n\ndef later():\n    from .. import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.a import x\n")
    (pkg / "d.py").write_text("from pkg import a\n")  # imports into the circle, not part of it
    modules = module_files(pkg)
    graph = import_edges(modules)
    assert graph["pkg.a"] == {"pkg.sub.b": 1} and graph["pkg.sub.b"] == {"pkg.c": 5} and graph["pkg.c"] == {"pkg.a": 4}
    assert circles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    text = describe(circles(graph)[0], graph, modules)
    assert "pkg.sub.b (pkg/sub/b.py:5) imports pkg.c" in text and "pkg.c (pkg/c.py:4) imports pkg.a" in text
