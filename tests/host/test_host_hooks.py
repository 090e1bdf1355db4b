"""Hooks are called through pluggy's own caller: tryfirst/trylast order and
wrappers behave as pluggy documents, while a plugin that raises costs one
line naming it and the other plugins' implementations still run."""

import logging
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from inkind.cli.systemd import write_paths
from inkind.config import parse
from inkind.plugins import load_plugins

CONFIG = parse('[store]\npath = "/srv/backup"\nsnapshots = "none"\n', Path("/etc/inkind/inkind.toml"))


def plugin(name: str, code: str) -> ModuleType:
    """A plugin module made from source, as an installed one would be."""
    mod = ModuleType(name)
    exec(
        compile("import inkind\nfrom pathlib import Path\n" + textwrap.dedent(code), name, "exec"),
        mod.__dict__,
    )
    return mod


def writes(name: str, marker: str = "") -> ModuleType:
    return plugin(
        name,
        f"""
        @inkind.hookimpl{marker}
        def inkind_write_paths(config):
            return [Path("/{name}")]
        """,
    )


def paths(plugins) -> list[str]:
    return [str(p) for ps in plugins.call("inkind_write_paths", config=CONFIG) for p in ps]


def test_tryfirst_and_trylast_order_the_calls_and_the_rest_go_in_listed_order():
    plugins = load_plugins(
        [writes("late", "(trylast=True)"), writes("a"), writes("b"), writes("early", "(tryfirst=True)")]
    )
    assert paths(plugins) == ["/early", "/a", "/b", "/late"]


def test_a_wrapper_wraps_the_other_implementations():
    wrapper = plugin(
        "wrapping",
        """
        @inkind.hookimpl(wrapper=True)
        def inkind_write_paths(config):
            found = yield
            return [[Path("/srv/spool/wrapped")], *found]
        """,
    )
    plugins = load_plugins([writes("a"), wrapper])
    assert paths(plugins) == ["/srv/spool/wrapped", "/a"]
    assert Path("/srv/spool/wrapped") in write_paths(CONFIG, plugins)  # as `inkind systemd` asks


def test_an_old_style_hookwrapper_sees_the_result():
    wrapper = plugin(
        "old_style",
        """
        SEEN = []
        @inkind.hookimpl(hookwrapper=True)
        def inkind_write_paths(config):
            outcome = yield
            SEEN.append(outcome.get_result())
        """,
    )
    paths(load_plugins([writes("a"), wrapper]))
    assert [Path("/a")] in wrapper.SEEN[0]


def test_a_raising_implementation_is_one_line_and_the_others_run(caplog):
    bad = plugin(
        "bad",
        """
        @inkind.hookimpl
        def inkind_write_paths(config):
            raise ValueError("spool gone")
        """,
    )
    plugins = load_plugins([writes("a"), bad, writes("b")])
    with caplog.at_level(logging.ERROR, logger="inkind"):
        assert paths(plugins) == ["/a", "/b"]
    assert [r.getMessage() for r in caplog.records] == [
        "plugin bad: inkind_write_paths failed: ValueError: spool gone"
    ]
    assert plugins.info["bad"].error == "inkind_write_paths failed: ValueError: spool gone"
    assert [p.name for p in plugins.failed] == ["bad"]


def test_a_raising_wrapper_is_one_line_naming_it(caplog):
    wrapper = plugin(
        "bad_wrapper",
        """
        @inkind.hookimpl(wrapper=True)
        def inkind_write_paths(config):
            yield
            raise RuntimeError("wrapper broke")
        """,
    )
    plugins = load_plugins([writes("a"), wrapper])
    with caplog.at_level(logging.ERROR, logger="inkind"):
        assert paths(plugins) == []
    assert [r.getMessage() for r in caplog.records] == [
        "plugin bad_wrapper: inkind_write_paths failed: RuntimeError: wrapper broke"
    ]


def test_a_misspelt_hook_refuses_that_plugin_only(caplog):
    typo = plugin(
        "typo",
        """
        @inkind.hookimpl
        def inkind_source_type():
            return []

        @inkind.hookimpl
        def inkind_write_paths(config):
            return [Path("/typo")]
        """,
    )
    with caplog.at_level(logging.ERROR, logger="inkind"):
        plugins = load_plugins([typo, writes("a")])
    error = plugins.info["typo"].error
    assert error.startswith(
        "not loaded: unknown hook inkind_source_type (inkind's hooks: inkind_config_tables, "
    )
    assert [r.getMessage() for r in caplog.records] == [f"plugin typo: {error}"]
    assert paths(plugins) == ["/a"]  # nothing of the refused plugin runs
    assert "files" in plugins.types


def test_an_argument_the_hookspec_lacks_refuses_that_plugin():
    odd = plugin(
        "odd",
        """
        @inkind.hookimpl
        def inkind_run_finished(reprot):
            pass
        """,
    )
    plugins = load_plugins([odd])
    assert plugins.info["odd"].error.startswith("failed to load: PluginValidationError: ")
    assert not plugins.manager.is_registered(odd)


@pytest.mark.parametrize(
    ("returned", "needle"),
    [
        (
            "[str]",
            "inkind_source_types failed: TypeError: <class 'str'> is not a subclass of inkind.source.Source",
        ),
        ("None.x", "inkind_source_types failed: AttributeError: "),
    ],
)
def test_a_provides_hook_that_fails_names_the_plugin(returned, needle):
    broken = plugin("broken", f"@inkind.hookimpl\ndef inkind_source_types():\n    return {returned}\n")
    plugins = load_plugins([broken])
    assert plugins.info["broken"].error.startswith(needle)
    assert plugins.info["broken"].source_types == [] and "files" in plugins.types


def test_a_wrapper_may_add_what_a_provides_hook_returns():
    wrapper = plugin(
        "adds_a_type",
        """
        class Tape(inkind.Source):
            type_name = "tape"

        @inkind.hookimpl(wrapper=True)
        def inkind_source_types():
            found = yield
            return [*found, [Tape]]
        """,
    )
    plugins = load_plugins([wrapper])
    assert plugins.types["tape"] is wrapper.Tape
    assert plugins.info["files"].source_types == ["files"]  # what each plugin provided is still its own
    assert plugins.info["adds_a_type"].source_types == [] and not plugins.failed
