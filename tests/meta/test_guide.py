"""docs/writing-a-source.md cannot drift from the code: every hookspec's
signature appears in it as written in hookspecs.py, and every public name
of ``inkind`` has a row in its table of the plugin API (and no row names
something the package does not export)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import inkind
from inkind import hookspecs

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "writing-a-source.md"
ROW = re.compile(r"^\| `(?:inkind\.)?([A-Za-z_][A-Za-z0-9_]*)`", re.MULTILINE)


def signatures() -> dict[str, str]:
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    return {
        node.name: f"{node.name}({ast.unparse(node.args)}) -> {ast.unparse(node.returns)}"
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("inkind_")
    }


def api_rows() -> set[str]:
    text = GUIDE.read_text()
    section = text.split("## The plugin API", 1)[1].split("\n## ", 1)[0]
    return set(ROW.findall(section))


@pytest.mark.parametrize(("hook", "signature"), sorted(signatures().items()))
def test_hook_signature_is_in_the_guide(hook, signature):
    assert f"`{signature}`" in GUIDE.read_text(), f"docs/writing-a-source.md does not show `{signature}`"


def test_every_public_name_has_a_row():
    assert sorted(set(inkind.__all__) - api_rows()) == []


def test_every_row_is_a_public_name():
    assert sorted(api_rows() - set(inkind.__all__)) == []


def test_signatures_are_read():
    assert signatures()["inkind_source_types"].startswith("inkind_source_types() -> ")
