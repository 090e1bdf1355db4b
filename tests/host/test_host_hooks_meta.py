"""Every hook has a docstring, a section in docs/writing-a-source.md, and a
test that names it (datasette's rule)."""

from pathlib import Path

import pytest

from inkind import hookspecs

ROOT = Path(__file__).parents[2]
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("inkind_"))


def test_there_are_hooks():
    assert "inkind_source_types" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring(hook):
    assert (getattr(hookspecs, hook).__doc__ or "").strip()


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    guide = (ROOT / "docs" / "writing-a-source.md").read_text()
    assert f"### {hook}" in guide, f"docs/writing-a-source.md has no '### {hook}' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_tested(hook):
    me = Path(__file__).resolve()
    tests = [p for p in (ROOT / "tests").rglob("test_*.py") if p.resolve() != me]
    assert any(hook in p.read_text() for p in tests), f"no test mentions {hook}"
