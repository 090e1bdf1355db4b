"""Rules about the test tree itself."""

import re
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


# verify-after: (the pattern itself)
BYPASS = re.compile(r'"-m",\s*"inkind"|-m inkind|\bRunner\(')


def test_every_backup_outside_the_fixtures_says_why_it_is_not_verified():
    """inkind_cli and inkind_run verify the store after every finished
    backup; a test that runs inkind another way (to kill it, to watch it
    mid-run, as another user) must say so with a ``# verify-after:``
    comment on the line or just above, so no new test skips the check by
    accident."""
    unexplained = []
    for d in ("tests", "examples"):
        for path in (ROOT / d).rglob("*.py"):
            lines = path.read_text().splitlines()
            for i, line in enumerate(lines):
                if BYPASS.search(line) and not any(
                    "# verify-after:" in x for x in lines[max(0, i - 3) : i + 1]
                ):
                    unexplained.append(f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert unexplained == []
