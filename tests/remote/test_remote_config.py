"""The ssh keys of the config: checked where they are written, one line
naming the key; a source type that cannot read a remote host says so."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from inkind.config import parse
from inkind.errors import ConfigError
from inkind.plugins import load_plugins
from inkind.remote.ssh import SshSettings, SshTarget, restore_target
from inkind.runner import make_source

P = Path("/etc/inkind/inkind.toml")
STORE = '[store]\npath = "/s"\n'
FILES = '[sources.web]\ntype = "files"\npath = "/srv"\n'


# A source type that reads only this machine (every built-in reads a host).
LOCAL_ONLY = """
import inkind
from dataclasses import dataclass

@dataclass
class TapeOptions:
    device: str = "/dev/st0"

class Tape(inkind.Source):
    type_name = "tape"
    Options = TapeOptions

    def backup(self, run): pass
    def scrub(self, run): pass
    def restore_commands(self, data_dir, dest, path, state): return []

@inkind.hookimpl
def inkind_source_types():
    return [Tape]
"""


def local_only() -> ModuleType:
    mod = ModuleType("tape_plugin")
    exec(compile(LOCAL_ONLY, "tape_plugin", "exec", dont_inherit=True), mod.__dict__)
    return mod


def err(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        cfg = parse(text, P)
        plugins = load_plugins([local_only()])
        for s in cfg.sources.values():
            make_source(s, plugins)
    return str(e.value)


def test_defaults_and_per_source_keys_merge_and_split_like_a_shell():
    cfg = parse(
        STORE
        + '[defaults]\nssh_command = "ssh -i \'/root/my key\'"\nremote_python = "/usr/bin/python3.11"\n'
        + FILES
        + "remote_sudo = true\n"
        + '[sources.db]\ntype = "files"\npath = "/db"\nssh_command = "ssh -p 2222"\n',
        P,
    )
    web, db = cfg.sources["web"], cfg.sources["db"]
    assert web.ssh == SshSettings(["ssh", "-i", "/root/my key"], True, "/usr/bin/python3.11")
    assert db.ssh == SshSettings(["ssh", "-p", "2222"], False, "/usr/bin/python3.11")
    assert web.host is None and web.remote is None
    assert "ssh_command" not in web.options and "remote_sudo" not in web.options


def test_a_host_makes_a_target_with_the_source_settings():
    cfg = parse(STORE + FILES + 'host = "backup@web1.example.org"\nssh_command = "ssh -p 2222"\n', P)
    assert cfg.sources["web"].remote == SshTarget(
        "backup@web1.example.org", ["ssh", "-p", "2222"], False, "python3"
    )
    assert "host" not in cfg.sources["web"].options


def test_a_source_type_that_cannot_read_a_host_refuses_one():
    tape = '[sources.t]\ntype = "tape"\nhost = "web1"\n'
    assert err(STORE + tape) == "config: sources.t.host: the tape source cannot read a remote host yet"


def test_every_built_in_type_reads_a_host():
    plugins = load_plugins()
    builtin = ("files", "image", "lvm", "postgres", "mysql", "sqlite")
    assert [t for t in builtin if not plugins.types[t].reads_remote_host] == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (FILES + 'host = ""\n', "sources.web.host: expected [user@]name"),
        (FILES + 'host = "web 1"\n', "sources.web.host: expected [user@]name"),
        (FILES + 'host = "-oProxyCommand=x"\n', "sources.web.host: expected [user@]name"),
        (FILES + 'host = "root@-x"\n', "sources.web.host: expected [user@]name"),
        (FILES + 'host = "web1:/srv"\n', "sources.web.host: expected [user@]name"),
        (FILES + 'host = "@web1"\n', "sources.web.host: expected [user@]name"),
        (FILES + 'host = "a@b@c"\n', "sources.web.host: expected [user@]name"),
        (FILES + "host = 3\n", "sources.web.host: expected a string"),
        ('[defaults]\nhost = "web1"\n', "defaults: unknown key 'host'"),
        (FILES + 'ssh_command = ""\n', "sources.web.ssh_command: must name a command"),
        (FILES + 'ssh_command = "ssh -i \'x"\n', "sources.web.ssh_command: cannot be split"),
        ('[defaults]\nssh_command = "  "\n', "defaults.ssh_command: must name a command"),
        (FILES + "ssh_command = ['ssh']\n", "sources.web.ssh_command: expected a string"),
        (FILES + 'remote_sudo = "yes"\n', "sources.web.remote_sudo: expected true or false"),
        (FILES + 'remote_python = "env python3"\n', "sources.web.remote_python: expected one program"),
        ('[defaults]\nremote_python = ""\n', "defaults.remote_python: expected one program"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(text, needle):
    message = err(STORE + text)
    assert needle in message and "\n" not in message


@pytest.mark.parametrize(
    ("dest", "source_host", "expected"),
    [
        ("/srv/restore", None, (None, "/srv/restore")),
        ("./a:b", None, (None, "./a:b")),
        ("web1:/srv", None, ("web1", "/srv")),
        ("web1:/srv", "root@web1", ("root@web1", "/srv")),
        ("admin@web1:/srv", "root@web1", ("admin@web1", "/srv")),
        ("web2:/srv", "root@web1", ("web2", "/srv")),
    ],
)
def test_a_restore_destination_is_remote_when_it_reads_host_colon_path(dest, source_host, expected):
    via, path = restore_target(dest, SshSettings(["ssh", "-p", "2"]), source_host)
    assert ((via.host if via else None), path) == expected
    if via:
        assert via.ssh_command == ["ssh", "-p", "2"]


@pytest.mark.parametrize(
    ("dest", "needle"),
    [("web1:srv", "give an absolute path on the host (web1:/srv)"), ("-x:/srv", "expected [user@]name")],
)
def test_a_bad_remote_destination_is_refused(dest, needle):
    with pytest.raises(ConfigError, match=r"^restore: --to ") as e:
        restore_target(dest, SshSettings(), None)
    assert needle in str(e.value)


def test_the_host_read_is_part_of_the_fingerprint_and_a_local_source_keeps_its_own():
    cfg = parse(STORE + FILES, P)
    src = make_source(cfg.sources["web"], load_plugins())
    local = src.fingerprint()
    assert "host" not in local
    src.remote = SshTarget("root@web1")
    assert src.fingerprint() == {**local, "host": "root@web1"}
    src.remote = SshTarget("root@web2")
    assert src.fingerprint()["host"] == "root@web2"
