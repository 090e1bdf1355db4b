"""The host's import graph: no cycles (an import inside a function counts:
it hides a cycle, it does not remove it), and the layers of
docs/architecture.md import only downwards."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def import_graph() -> dict[str, set[str]]:
    """Module -> the inkind modules it imports (``from pkg import mod``
    counts as importing ``pkg.mod`` when that is a module)."""
    paths = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        found: set[str] = set()
        for node in ast.walk(tree):
            if _type_checking_only(node, parents):
                continue
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"  # the project writes absolute ones
                base = node.module or ""
                for a in node.names:
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base)
        found = {m for m in found if m in paths}
        # Importing a.b.c runs a.b's __init__ first; the top-level package
        # is left out (it re-exports everything, and is the plugins' door).
        found |= {p for m in found for p in _parents(m) if p in paths and p != "inkind"}
        graph[name] = {m for m in found if m != name and not name.startswith(m + ".")}
    return graph


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_host():
    graph = import_graph()
    assert "inkind.runner.report" in graph and "inkind.stats" in graph["inkind.runner.report"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_importing_a_submodule_runs_its_package():
    assert "inkind.store" in import_graph()["inkind.runner.runner"]


# docs/architecture.md's layers, bottom first: a module belongs to the first
# prefix it starts with, and imports only from its own layer or lower ones.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": (
        "inkind.errors",
        "inkind.stats",
        "inkind.hashing",
        "inkind.segments",
        "inkind.findings",
        "inkind.libc",
        "inkind.ui",
        "inkind.mountinfo",
        "inkind.storefs",
        "inkind.lvm",
        "inkind.remote",
    ),
    "store": ("inkind.store",),
    "model": (
        "inkind.source",
        "inkind.verify",
        "inkind.config",
        "inkind.state",
        "inkind.storeroot",
        "inkind.keepout",
    ),
    "engines": ("inkind.engines",),
    "history": ("inkind.history",),
    "host": (
        "inkind.cli",
        "inkind.runner",
        "inkind.plugins",
        "inkind.provided",
        "inkind.hookspecs",
        "inkind.hookguard",
        "inkind.testing",
        "inkind.__main__",
    ),
}


def layer_of(module: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS.values()):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{m} imports {d}"
        for m in sorted(graph)
        if m != "inkind"
        for d in sorted(graph[m])
        if (layer_of(d) or 0) > (layer_of(m) or 0)
    ]


def test_every_host_module_has_a_layer():
    assert [m for m in import_graph() if m != "inkind" and layer_of(m) is None] == []


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports(import_graph()) == []


def test_the_layer_check_finds_an_upward_import():
    graph = {"inkind.store.files": {"inkind.runner.runner"}, "inkind.runner.runner": {"inkind.store.files"}}
    assert upward_imports(graph) == ["inkind.store.files imports inkind.runner.runner"]
