"""Small modules with one job: no module of src/ or plugins/ over 400
lines, no function over 60 lines or 6 parameters unless a ``# size:``
comment on its ``def`` line or just above says why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
MAX_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 6
REASON = "# size:"

MODULES = sorted(p for d in ("src", "plugins") for p in (ROOT / d).rglob("*.py"))


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return [n for n in names if n not in ("self", "cls")]


def oversized(text: str) -> list[str]:
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        count = len(parameters(node))
        if length <= MAX_FUNCTION_LINES and count <= MAX_PARAMETERS:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        around = lines[max(0, first - 3) : node.lineno]
        if not any(REASON in x and x.split(REASON, 1)[1].strip() for x in around):
            found.append(f"line {node.lineno}: {node.name}: {length} lines, {count} parameters")
    return found


def test_there_are_modules():
    assert any(p.name == "runner.py" for p in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_module_is_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_functions_are_small_or_say_why(path):
    assert oversized(path.read_text()) == []


def test_the_size_check_finds_a_long_function_and_takes_a_reason():
    many = "def f(a, b, c, d, e, f, g):\n    pass\n"
    assert oversized(many) == ["line 1: f: 2 lines, 7 parameters"]
    assert oversized("# size: one per CLI option\n" + many) == []
    assert oversized("# size:\n" + many) != []
    long = "def g():\n" + "    x = 1\n" * 60
    assert oversized(long) == ["line 1: g: 61 lines, 0 parameters"]
