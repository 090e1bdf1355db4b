"""docs/user-guide.md lists every source type the built-in plugins register,
with each key of its options dataclass, the type config.py checks it
against (in the words of its error messages) and whether it is required."""

from __future__ import annotations

import dataclasses
import re
import typing
from importlib.metadata import distribution
from pathlib import Path

import pytest

from inkind.config import Defaults, _describe
from inkind.plugins import load_plugins

GUIDE = Path(__file__).parents[2] / "docs" / "user-guide.md"
ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", re.M)


def sections() -> dict[str, str]:
    """Each ``### TITLE`` section's text, up to the next heading."""
    parts = re.split(r"^(#{2,3} .+)$", GUIDE.read_text(), flags=re.M)
    return {
        h.removeprefix("### "): body
        for h, body in zip(parts[1::2], parts[2::2], strict=True)
        if h.startswith("### ")
    }


def rows(section: str) -> dict[str, tuple[str, str]]:
    """A key table: key -> (type, default)."""
    return {m.group(1): (m.group(2).strip(), m.group(3).strip()) for m in ROW.finditer(section)}


def builtin_types() -> dict[str, type]:
    """The source types of the plugins that ship with inkind itself."""
    modules = {ep.value for ep in distribution("inkind").entry_points if ep.group == "inkind"}
    return {t: c for t, c in load_plugins().types.items() if c.__module__.split(".")[0] in modules}


def check_table(documented: dict[str, tuple[str, str]], cls: type, where: str) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        assert f.name in documented, f"user-guide.md: {where}: key `{f.name}` is missing"
        kind, default = documented[f.name]
        assert kind == _describe(hints[f.name]), (
            f"{where}.{f.name}: type {kind!r}, config says {_describe(hints[f.name])!r}"
        )
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert (default == "required") == required, (
            f"{where}.{f.name}: default {default!r}, required={required}"
        )
    unknown = set(documented) - {f.name for f in dataclasses.fields(cls)}
    assert not unknown, f"user-guide.md: {where}: documents keys the config refuses: {unknown}"


def test_the_builtin_plugins_are_all_loaded():
    assert {"files", "image", "lvm", "postgres", "mysql", "sqlite"} <= set(builtin_types())


@pytest.mark.parametrize("type_name", sorted(builtin_types()))
def test_every_key_of_every_builtin_source_type_is_in_the_user_guide(type_name):
    found = sections()
    assert type_name in found, f"user-guide.md has no section '### {type_name}'"
    check_table(rows(found[type_name]), builtin_types()[type_name].Options, f"sources ({type_name})")


def test_the_keys_of_every_source_are_in_the_user_guide():
    documented = rows(sections()["Keys of every source"])
    assert documented.pop("type") == ("a string", "required")
    assert documented.pop("host") == ("a string", "none (this machine)")  # a source's own, not in [defaults]
    check_table(documented, Defaults, "sources (every type)")
