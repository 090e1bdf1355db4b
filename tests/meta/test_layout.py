"""Rules about the test tree itself."""

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_test_module_names_are_unique():
    """pytest imports test modules by base name (rootdir-less folders), so
    two test_x.py files in different folders would shadow each other."""
    names = Counter(p.name for d in ("tests", "examples") for p in (ROOT / d).rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []


def test_every_builtin_plugin_has_tests():
    plugins = sorted(
        p.name.removeprefix("inkind_")
        for p in (ROOT / "plugins").iterdir()
        if p.is_dir() and p.name.startswith("inkind_")
    )
    for name in plugins:
        assert list((ROOT / "tests").glob(f"{name}/test_*.py")), f"plugins/inkind_{name} has no tests/{name}/"
