"""The mysql source with ``host``: the mysql client and mysqldump run on the
host through the real test sshd against the session's real MariaDB (root
by its unix_socket authentication, the option file on the host); the
stored dumps are byte for byte a local source's dumps of the same server, a
run without change rewrites nothing, a changed table rewrites its dump
alone; a tool missing from ``bin_dir`` on the host and a failing dump are
one line naming the source and host, exit 2, the previous dump kept."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator

import pytest
from dbservers import MariaServer
from dump_helpers import HOST, error_lines, files, identities, over_ssh

pytestmark = pytest.mark.root
_names = itertools.count(1)

SAMPLE = """
CREATE TABLE items (id int PRIMARY KEY, name varchar(40), photo blob);
INSERT INTO items SELECT seq, CONCAT('item ', seq), UNHEX(CONCAT(MD5(seq), '00FF')) FROM seq_1_to_300;
CREATE TABLE log (at timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', what varchar(100));
INSERT INTO log (what) VALUES ('one'), ('two');
CREATE PROCEDURE add_log(w varchar(100)) INSERT INTO log (what) VALUES (w);
"""


@pytest.fixture
def make_db(maria: MariaServer) -> Iterator:
    made: list[str] = []

    def make() -> str:
        name = f"rshop{next(_names)}"
        maria.sql(f"CREATE DATABASE {name}")
        made.append(name)
        maria.sql(SAMPLE, name)
        return name

    yield make
    for name in made:
        maria.sql(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def table(maria, trusted_dir) -> dict:
    """A mysql source of the session server as root (unix_socket: the
    backup runs as root here and on the host, which is this machine); its
    option file where a restricted key reads one (not in a temp)."""
    return {"type": "mysql", "defaults_file": maria.defaults_file(trusted_dir / "root.cnf")}


def test_dumps_over_ssh_are_local_dumps_and_only_a_change_rewrites(
    maria, make_db, table, inkind_sshd, inkind_config, inkind_run, inkind_store
):
    db, other = make_db(), make_db()
    table = {**table, "databases": [db, other]}
    cfg = inkind_config({"local": table, "remote": over_ssh(inkind_sshd, table)})
    first = inkind_run(cfg, seed=1)
    assert first.exit_status == 0, first.as_dict()
    local, remote = (inkind_store / n for n in ("local", "remote"))
    assert files(remote) == files(local) and sorted(files(remote)) == [f"{db}.sql", f"{other}.sql"]
    assert {r.name: r.stats.bytes_received > 0 for r in first.results} == {"local": False, "remote": True}

    before = identities(remote)
    second = inkind_run(cfg, "backup", "remote", seed=2)
    assert second.exit_status == 0, second.as_dict()
    s = second.results[0].stats
    assert (s.bytes_written, s.xattrs_written, s.mtimes_set, s.objects_changed) == (0, 0, 0, 0)
    assert identities(remote) == before

    maria.sql("INSERT INTO items VALUES (1000, 'a new item', NULL)", db)
    third = inkind_run(cfg, seed=3)
    assert third.exit_status == 0, third.as_dict()
    s = {r.name: r.stats for r in third.results}["remote"]
    assert s.bytes_written > 0 and s.objects_changed == 1
    assert files(remote) == files(local) and b"a new item" in files(remote)[f"{db}.sql"]
    assert identities(remote)[f"{other}.sql"] == before[f"{other}.sql"]


# The failures below happen before or outside the store's writes: one
# filesystem (ext4) is enough, the store path is the one tested above.
ONE_FS = pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)


@ONE_FS  # the store's writes are those of the open key's source, run on all three above
def test_a_restricted_key_dumps_what_an_open_key_does(
    make_db, table, inkind_sshd, inkind_config, inkind_run, inkind_store
):
    db = make_db()
    table = over_ssh(inkind_sshd, {**table, "databases": [db]})
    with inkind_sshd.restricted_login(sys.executable) as ssh:
        cfg = inkind_config({"open": table, "restricted": {**table, "ssh_command": ssh}})
        report = inkind_run(cfg, seed=1)
    assert report.exit_status == 0, report.as_dict()
    restricted = files(inkind_store / "restricted")
    assert restricted == files(inkind_store / "open") and b"item 300" in restricted[f"{db}.sql"]


@pytest.fixture
def remote_my(make_db, table, inkind_sshd, inkind_config, inkind_cli, inkind_store):
    """A database backed up once over ssh: (db, config, stored files)."""
    db = make_db()
    cfg = inkind_config({"my": over_ssh(inkind_sshd, {**table, "databases": [db]})})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 0, r.stderr
    return db, cfg, files(inkind_store / "my")


@ONE_FS
def test_bin_dir_names_a_directory_on_the_host_and_a_tool_missing_there_is_one_line(
    remote_my, inkind_cli, inkind_store, tmp_path
):
    _db, cfg, kept = remote_my
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/usr/bin/mysql", bin_dir / "mysql")  # the list works, mysqldump is not there
    cfg.write_text(cfg.read_text() + f'bin_dir = "{bin_dir}"\n')
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert line == (
        f"inkind: ERROR: my: host {HOST}: {bin_dir}/mysqldump: not found or not executable there "
        "(check bin_dir: it names a directory on the host)"
    )
    assert files(inkind_store / "my") == kept
    assert inkind_cli("-c", cfg, "verify").returncode == 0


@ONE_FS
def test_a_failing_dump_is_one_line_naming_the_host_and_its_dump_stays(
    remote_my, maria, inkind_cli, inkind_store
):
    db, cfg, kept = remote_my
    maria.sql(f"DROP DATABASE {db}")
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert line.startswith(f"inkind: ERROR: my: database {db}: host {HOST}: ")
    assert f"Unknown database '{db}'" in line and line.endswith("(its previous dump is kept)")
    assert files(inkind_store / "my") == kept
    assert inkind_cli("-c", cfg, "verify").returncode == 0
