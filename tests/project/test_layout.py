"""The library's structure: no import cycle, no private name crossing modules, no numba,
nothing streamlit, and the app in Streamlit's pages-directory layout.

The import graph is read from the source with ``ast`` (every ``import`` statement, also those
inside functions), so a cycle hidden behind a late import is still one.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sinkd"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for every import in ``path``; name None for ``import module``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.module, alias.name) for alias in node.names]
    return found


def graph() -> dict[str, set[str]]:
    """sinkd module -> the sinkd modules it imports (a package's __init__ counts as a module)."""
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, imported in imports(path):
            target = f"{module}.{imported}" if f"{module}.{imported}" in MODULES else module
            if target in MODULES and target != name:
                edges[name].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    """The cycle finder reports a -> b -> c -> a and nothing for a tree (it can fail)."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_sinkd_has_no_import_cycle():
    """No chain of imports inside sinkd leads back to where it started."""
    assert find_cycle(graph()) is None


def test_no_private_name_is_imported_across_modules():
    """`from sinkd.x import _y` only where _y is a module (a private name stays in its module)."""
    crossing = [f"{name}: {module}.{imported}" for name, path in MODULES.items()
                for module, imported in imports(path)
                if module.split(".")[0] == "sinkd" and imported and imported.startswith("_")
                and f"{module}.{imported}" not in MODULES]
    assert crossing == []


def test_no_numba_and_no_streamlit_in_the_library():
    """The library neither imports nor depends on numba, and never imports streamlit."""
    banned = {(name, module) for name, path in MODULES.items() for module, _ in imports(path)
              if module.split(".")[0] in ("numba", "streamlit")}
    assert banned == set()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [d for extra in project["optional-dependencies"].values()
                                          for d in extra]
    requirements = (ROOT / "requirements.txt").read_text().lower()
    assert not any("numba" in d.lower() for d in declared) and "numba" not in requirements


def test_core_imports_neither_subpackage():
    """The core (sinkd's top-level modules) imports nothing from sinkd.distill or sinkd.lab,
    and sinkd.lab and sinkd.distill do not import each other: the architecture is layered."""
    edges = graph()
    layer = {name: name.split(".")[1] if name.count(".") >= 1 and name.split(".")[1] in (
        "distill", "lab") else "core" for name in edges}
    core_up = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                     if layer[a] == "core" and layer[b] != "core" and a != "sinkd.cli")
    across = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                    if {layer[a], layer[b]} == {"distill", "lab"})
    assert core_up == [] and across == []


def test_app_uses_the_pages_directory_layout():
    """app.py is the home page, pages/ holds the other pages, there is no views/ folder, and
    every page's first statement after its imports is one call to the shared shell."""
    assert (ROOT / "app.py").is_file() and not (ROOT / "views").exists()
    pages = sorted((ROOT / "pages").glob("*.py"))
    assert [p.stem for p in pages] == ["batchwise", "distill", "divergence_lab", "lesson",
                                          "transport", "verify"]
    for path in [ROOT / "app.py", *pages]:
        body = [node for node in ast.parse(path.read_text()).body
                if not isinstance(node, (ast.Import, ast.ImportFrom))
                and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        first = ast.unparse(body[0])
        assert "shell." in first or first.startswith(("view = page(", "page(")), (path, first)
