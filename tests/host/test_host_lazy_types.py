"""A source type or snapshot provider named by its import path is imported
the first time it is looked up; one that cannot be used is one line naming
its plugin, and is then missing as if that plugin had failed to load."""

import sys
import textwrap

import pytest
from test_host_hooks import plugin  # the helper making a plugin module from source

from inkind.config import StoreConfig
from inkind.history.folders import provider_for
from inkind.plugins import PROVIDERS, load_plugins
from inkind.provided import Named

TAPES = """
import inkind

class Tape(inkind.Source):
    type_name = "tape"

class Cassette(inkind.Source):
    type_name = "cassette"

class NotASource:
    type_name = "tape"

class Shelf(inkind.SnapshotProvider):
    name = "shelf"
"""


@pytest.fixture
def tapes(tmp_path, monkeypatch):
    """A module on sys.path that no one has imported yet."""
    name = f"tapes_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TAPES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def providing(types: str, providers: str = "{}"):
    return plugin(
        "lazy",
        f"""
        @inkind.hookimpl
        def inkind_source_types():
            return {types}

        @inkind.hookimpl
        def inkind_snapshot_providers():
            return {providers}
        """,
    )


def test_a_path_is_imported_when_its_name_is_first_looked_up(tapes):
    plugins = load_plugins([providing(f"{{'tape': '{tapes}:Tape'}}", f"{{'shelf': '{tapes}:Shelf'}}")])
    assert tapes not in sys.modules
    assert "tape" in plugins.types and "shelf" in plugins.providers  # listing a name imports nothing
    assert plugins.info["lazy"].source_types == ["tape"]
    assert plugins.info["lazy"].snapshot_providers == ["shelf"]
    assert tapes not in sys.modules
    assert plugins.types["tape"] is sys.modules[tapes].Tape
    assert plugins.providers["shelf"] is sys.modules[tapes].Shelf
    assert not plugins.failed


def test_a_dict_may_hold_the_class_itself(tapes):
    module = plugin(
        "eager",
        f"import {tapes}\n@inkind.hookimpl\ndef inkind_source_types():\n    return {{'tape': {tapes}.Tape}}\n",
    )
    plugins = load_plugins([module])
    assert plugins.types["tape"] is sys.modules[tapes].Tape and not plugins.failed


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("{m}_gone:Tape", "ModuleNotFoundError: No module named '{m}_gone'"),
        ("{m}:Reel", "AttributeError: module '{m}' has no attribute 'Reel'"),
        ("{m}", "ValueError: not a 'module:Class' path"),
        ("{m}:Cassette", "TypeError: {m}.Cassette.type_name is 'cassette', not 'tape'"),
        ("{m}:NotASource", "TypeError: <class '{m}.NotASource'> is not a subclass of inkind.source.Source"),
    ],
)
def test_a_path_that_cannot_be_used_is_one_line_and_the_type_is_missing(tapes, caplog, path, why):
    path, why = path.format(m=tapes), why.format(m=tapes)
    plugins = load_plugins([providing(f"{{'tape': '{path}'}}")])
    assert not plugins.failed
    assert plugins.types.get("tape") is None
    expected = f"source type 'tape': cannot use {path}: {why}"
    assert plugins.info["lazy"].error == expected
    assert [r.getMessage() for r in caplog.records if "tape" in r.getMessage()] == [
        f"plugin lazy: {expected}"
    ]
    assert "tape" not in plugins.types and "files" in plugins.types  # as if the plugin had not loaded
    assert plugins.failed == [plugins.info["lazy"]]


def test_import_all_reports_each_path_that_cannot_be_used(tapes):
    plugins = load_plugins([providing(f"{{'tape': '{tapes}:Tape'}}", f"{{'shelf': '{tapes}:Gone'}}")])
    plugins.import_all()
    assert plugins.info["lazy"].error == (
        f"snapshot provider 'shelf': cannot use {tapes}:Gone: AttributeError: module '{tapes}' has no attribute 'Gone'"
    )
    assert list(plugins.types).count("tape") == 1 and "shelf" not in plugins.providers
    assert plugins.info["lazy"].source_types == ["tape"]
    assert plugins.info["lazy"].snapshot_providers == []  # `inkind plugins` lists what can be used
    assert "btrfs" in plugins.providers  # the built-in providers' paths all import


def test_auto_passes_over_a_provider_that_cannot_be_used(tmp_path):
    failed = []
    providers = Named(PROVIDERS, lambda owner, line: failed.append(line))
    providers.add("btrfs", "no_such_module_at_all:Btrfs", None)
    providers.add("hardlink", "inkind_snapshots.copies:Hardlink", None)
    chosen = provider_for(StoreConfig(tmp_path), providers)
    assert chosen.name == "hardlink"  # its detect() holds anywhere
    assert failed == [
        "snapshot provider 'btrfs': cannot use no_such_module_at_all:Btrfs:"
        " ModuleNotFoundError: No module named 'no_such_module_at_all'"
    ]


@pytest.mark.parametrize(
    ("returned", "needle"),
    [
        (
            "{1: 'x:Y'}",
            "inkind_source_types failed: TypeError: 1: 'x:Y' is neither a class nor a 'module:Class' path",
        ),
        (
            "{'tape': 3}",
            "inkind_source_types failed: TypeError: 'tape': 3 is neither a class nor a 'module:Class' path",
        ),
        (
            "{'tape': inkind.Source}",
            "inkind_source_types failed: AttributeError: type object 'Source' has no attribute 'type_name'",
        ),
    ],
)
def test_a_dict_that_is_neither_form_fails_the_hook(returned, needle):
    plugins = load_plugins([providing(returned)])
    assert plugins.info["lazy"].error == needle
    assert plugins.info["lazy"].source_types == []


def test_a_name_given_twice_names_where_the_first_came_from(tapes):
    plugins = load_plugins([providing(f"{{'files': '{tapes}:Tape'}}")])
    assert plugins.info["lazy"].error == (
        "source type 'files' is already provided by plugin files (inkind_files.source:FilesSource)"
    )
    assert plugins.types["files"].__module__ == "inkind_files.source"
