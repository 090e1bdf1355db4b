"""The configuration: every mistake is one line naming the key."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inkind.config import find_config, parse
from inkind.errors import ConfigError
from inkind.plugins import load_plugins
from inkind.runner import make_source

P = Path("/etc/inkind/inkind.toml")


def err(text):
    with pytest.raises(ConfigError) as e:
        cfg = parse(text, P)
        plugins = load_plugins()
        for s in cfg.sources.values():
            make_source(s, plugins)
    return str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "missing required table [store]"),
        ("[store]\n", "store: missing required key 'path'"),
        ("[store]\npath = 3\n", "store.path: expected a path string"),
        (
            '[store]\npath = "/s"\n[defaults]\nscrub_fraction = 2\n',
            "defaults.scrub_fraction: must be between 0 and 1",
        ),
        ('[store]\npath = "/s"\n[extras]\n', "unknown table or key 'extras'"),
        ('[store]\npath = "/s"\n[sources.h]\npath = "/h"\n', "sources.h: missing required key 'type'"),
        ('[store]\npath = "/s"\n[sources.h]\ntype = "tape"\n', "sources.h.type: unknown source type 'tape'"),
        ('[store]\npath = "/s"\n[sources.h]\ntype = "files"\n', "sources.h: missing required key 'path'"),
        (
            '[store]\npath = "/s"\n[sources.h]\ntype = "files"\npath = "/h"\nexclude = "x"\n',
            "sources.h.exclude: expected a list of strings",
        ),
        (
            '[store]\npath = "/s"\n[sources.h]\ntype = "files"\npath = "/h"\nfull_probability = "1"\n',
            "sources.h.full_probability",
        ),
        (
            '[store]\npath = "/s"\n[sources.h]\ntype = "files"\npath = "/h"\nbogus = 1\n',
            "sources.h: unknown key 'bogus'",
        ),
        ("[store\n", "inkind.toml"),
    ],
)
def test_errors_name_the_key(text, needle):
    assert needle in err(text)


def test_relative_paths_follow_the_config_file():
    cfg = parse(
        '[store]\npath = "../backup"\n[sources.h]\ntype = "files"\npath = "data"\n',
        Path("/etc/inkind/x.toml"),
    )
    assert cfg.store.path == Path("/etc/backup")
    src = make_source(cfg.sources["h"], load_plugins())
    assert src.options.path == Path("/etc/inkind/data")


def test_config_lookup_order(monkeypatch):
    monkeypatch.delenv("INKIND_CONFIG", raising=False)
    assert find_config(None) == Path("/etc/inkind/inkind.toml")
    monkeypatch.setenv("INKIND_CONFIG", "/env.toml")
    assert find_config(None) == Path("/env.toml")
    assert find_config("/opt.toml") == Path("/opt.toml")


values = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.lists(st.text(max_size=3), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    store=st.dictionaries(st.sampled_from(["path", "snapshots", "snapshot_dir", "x"]), values, max_size=3),
    source=st.dictionaries(
        st.sampled_from(
            ["type", "path", "exclude", "one_file_system", "exclude_caches", "scrub_fraction", "max_age", "y"]
        ),
        values,
        max_size=5,
    ),
)
def test_wrong_types_only_ever_raise_config_error(store, source):
    import tomllib

    def toml(d):
        import json

        return "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items())

    text = f"[store]\n{toml(store)}\n[sources.s]\n{toml(source)}\n"
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # json.dumps of some floats is not TOML; not our concern here
    try:
        cfg = parse(text, P)
        plugins = load_plugins()
        for s in cfg.sources.values():
            make_source(s, plugins)
    except ConfigError:
        pass
