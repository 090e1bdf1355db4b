"""docs/design.md lists every module of the host, one line each, and names
no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src"
LISTED = re.compile(r"^- `(inkind/[A-Za-z0-9_/]+\.py)`: \S", re.MULTILINE)


def listed() -> list[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    return LISTED.findall(text.split("## Modules", 1)[1].split("\n## ", 1)[0])


def modules() -> set[str]:
    return {str(p.relative_to(SRC)) for p in (SRC / "inkind").rglob("*.py") if p.name != "__main__.py"}


def test_every_host_module_is_listed():
    assert sorted(modules() - set(listed())) == []


def test_every_listed_module_exists():
    assert sorted(set(listed()) - modules()) == []


def test_each_module_is_listed_once():
    names = listed()
    assert len(names) == len(set(names))
