"""A plugin owns its config table: ``[plugins.NAME]`` is checked against the
options dataclass it declares through ``inkind_config_tables``, as a
source's options are, and reaches its hooks as ``config.plugins[NAME]``."""

import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from inkind.config import parse
from inkind.errors import ConfigError
from inkind.plugins import load_plugins
from inkind.testing import render_config

P = Path("/etc/inkind/inkind.toml")
STORE = '[store]\npath = "/srv/backup"\n'
NOTIFY = """
import inkind
from dataclasses import dataclass
from pathlib import Path

@dataclass
class NotifyOptions:
    url: str
    retries: int = 3
    spool: Path | None = None

@inkind.hookimpl
def inkind_config_tables():
    return {"notify": NotifyOptions}
"""


def notify() -> ModuleType:
    mod = ModuleType("notify_plugin")
    exec(textwrap.dedent(NOTIFY), mod.__dict__)
    return mod


def configured(text: str):
    cfg = parse(text + STORE, P)
    plugins = load_plugins([notify()])
    plugins.configure(cfg)
    return cfg, plugins


def test_the_table_reaches_the_plugin_as_its_dataclass():
    cfg, plugins = configured('[plugins.notify]\nurl = "https://x"\nspool = "spool"\n')
    options = cfg.plugins["notify"]
    assert type(options).__name__ == "NotifyOptions"
    assert (options.url, options.retries, options.spool) == ("https://x", 3, Path("/etc/inkind/spool"))
    assert plugins.tables["notify"] is type(options)
    assert plugins.info["notify_plugin"].config_tables == ["notify"]


def test_no_table_no_entry():
    cfg, _ = configured("")
    assert cfg.plugins == {}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '[plugins.notify]\nurll = "x"\n',
            "config: plugins.notify: unknown key 'urll' (known keys: retries, spool, url)",
        ),
        (
            '[plugins.notify]\nurl = "x"\nretries = "3"\n',
            "config: plugins.notify.retries: expected an integer",
        ),
        ("[plugins.notify]\nretries = 1\n", "config: plugins.notify: missing required key 'url'"),
        (
            "[plugins.nope]\n",
            "config: plugins.nope: no plugin declares this table (known: plugins.metrics, plugins.notify)",
        ),
        ("[plugins]\nnotify = 1\n", "config: plugins.notify: must be a table"),
        ("plugins = 1\n", "config: plugins: must be a table of [plugins.NAME] tables"),
        ("[metrics]\n[plugins.metrics]\n", "config: [metrics] and [plugins.metrics] are one table"),
        ('[metrics]\ntextfle = "x"\n', "config: metrics: unknown key 'textfle'"),
    ],
)
def test_a_wrong_table_is_one_line_naming_the_key(text, needle):
    with pytest.raises(ConfigError) as e:
        configured(text)
    assert needle in str(e.value)


@pytest.mark.parametrize("table", ["plugins.metrics", "metrics"])
def test_the_metrics_table_is_the_metrics_plugins_own(table):
    cfg, _ = configured(f'[{table}]\ntextfile = "m/inkind.prom"\n')
    assert cfg.plugins["metrics"].textfile == Path("/etc/inkind/m/inkind.prom")


def test_a_table_declared_twice_names_both():
    twin = ModuleType("twin")
    exec(textwrap.dedent(NOTIFY), twin.__dict__)
    plugins = load_plugins([notify(), twin])
    assert plugins.info["twin"].error == (
        "config table 'notify' is already provided by plugin notify_plugin (notify_plugin)"
    )


def test_a_table_that_is_not_a_dataclass_is_the_plugins_error():
    odd = ModuleType("odd")
    exec(
        "import inkind\n@inkind.hookimpl\ndef inkind_config_tables():\n    return {'odd': dict}\n",
        odd.__dict__,
    )
    plugins = load_plugins([odd])
    assert (
        plugins.info["odd"].error
        == "inkind_config_tables failed: TypeError: 'odd': <class 'dict'> is not an options dataclass"
    )
    assert "odd" not in plugins.tables


def test_a_wrong_key_stops_a_backup_before_it_writes(tmp_path, inkind_cli):
    store = tmp_path / "store"
    src = tmp_path / "src"
    src.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        render_config(store, {"h": {"type": "files", "path": src}}) + '[plugins.metrics]\ntextfle = "m"\n'
    )
    assert inkind_cli("-c", cfg, "init").returncode == 0
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith("inkind: error: config: plugins.metrics: unknown key 'textfle'")
    )
    assert not (store / "h").exists()
