"""The plugin boundary (docs/architecture.md): code under plugins/ and
examples/ imports from inkind only what the top-level package exports, no
plugin imports another, and no plugin writes the store with a raw call."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import inkind

ROOT = Path(__file__).parents[2]
PLUGIN_ROOTS = [
    p for p in sorted((ROOT / "plugins").iterdir()) if p.is_dir() and p.name.startswith("inkind_")
]
PLUGIN_ROOTS += [p for p in sorted((ROOT / "examples").glob("*/inkind_*")) if p.is_dir()]
PLUGIN_NAMES = {p.name for p in PLUGIN_ROOTS}

RAW_WRITES = {
    "os": {
        "mkdir",
        "makedirs",
        "link",
        "symlink",
        "mknod",
        "mkfifo",
        "rename",
        "replace",
        "unlink",
        "remove",
        "rmdir",
    },
    "shutil": {"rmtree", "move", "copy", "copy2", "copyfile", "copytree"},
}
# The marker that lets a raw call stand: it writes outside the store (a
# metrics textfile, a snapshot folder) and says where.
OUTSIDE = "# outside the store:"


def plugin_modules() -> list[tuple[str, Path]]:
    return [(root.name, p) for root in PLUGIN_ROOTS for p in sorted(root.rglob("*.py"))]


def test_there_are_plugins():
    assert {"inkind_files", "inkind_image", "inkind_git"} <= PLUGIN_NAMES


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, node.module, alias.name


@pytest.mark.parametrize(("plugin", "path"), plugin_modules(), ids=lambda v: str(v).rsplit("/", 1)[-1])
def test_plugin_imports_only_the_public_api(plugin, path):
    public = set(inkind.__all__)
    wrong = []
    for line, module, name in _imports(ast.parse(path.read_text())):
        top = module.split(".")[0]
        where = f"{path.relative_to(ROOT)}:{line}"
        if top == "inkind":
            if module != "inkind":
                wrong.append(f"{where}: imports {module} (only `inkind` is the plugin API)")
            elif name is not None and name not in public:
                wrong.append(f"{where}: imports inkind.{name}, which inkind.__all__ does not export")
        elif top in PLUGIN_NAMES and top != plugin:
            wrong.append(f"{where}: imports another plugin, {top}")
    assert wrong == []


@pytest.mark.parametrize(("plugin", "path"), plugin_modules(), ids=lambda v: str(v).rsplit("/", 1)[-1])
def test_plugin_uses_attributes_the_api_exports(plugin, path):
    """``import inkind`` then ``inkind.x``: x must be exported too."""
    public = set(inkind.__all__) | {"__version__"}
    wrong = [
        f"{path.relative_to(ROOT)}:{node.lineno}: inkind.{node.attr} is not exported"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "inkind"
        and node.attr not in public
    ]
    assert wrong == []


def raw_writes(text: str, where: str) -> list[str]:
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        base = node.func.value
        if isinstance(base, ast.Name) and node.func.attr in RAW_WRITES.get(base.id, ()):
            span = lines[node.lineno - 1 : node.end_lineno]
            if not any(OUTSIDE in x and x.split(OUTSIDE, 1)[1].strip() for x in span):
                found.append(f"{where}:{node.lineno}: {base.id}.{node.func.attr}")
    return found


@pytest.mark.parametrize(("plugin", "path"), plugin_modules(), ids=lambda v: str(v).rsplit("/", 1)[-1])
def test_plugin_writes_the_store_only_through_primitives(plugin, path):
    assert raw_writes(path.read_text(), str(path.relative_to(ROOT))) == []


def test_the_raw_write_check_finds_a_raw_write():
    text = "import os, shutil\nos.unlink(p)\nshutil.rmtree(d)\nos.rename(a, b)  # outside the store: spool\n"
    assert raw_writes(text, "bad.py") == ["bad.py:2: os.unlink", "bad.py:3: shutil.rmtree"]
    assert raw_writes("import os\nos.rename(a, b)  # outside the store:\n", "x.py") == ["x.py:2: os.rename"]
