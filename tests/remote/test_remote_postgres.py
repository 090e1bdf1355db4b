"""The postgres source with ``host``: psql, pg_dumpall and pg_dump run on
the host through the real test sshd (one connection a run) against the
session's real PostgreSQL; the stored dumps equal a local source's dumps of
the same server, a run without change rewrites nothing, a changed table
rewrites its dump alone; peer authentication works for the user ssh logs
in as; a missing tool, a failing dump and a cut connection are one line
naming the source and host, exit 2, the previous dumps kept, verify clean."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbservers import PgServer
from dump_helpers import HOST, children, dump_temps, error_lines, files, identities, over_ssh
from inkind_postgres.toc import creation_time_span

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("remote-dump-temps")]
_names = itertools.count(1)

SAMPLE = """
CREATE TABLE people (id int PRIMARY KEY, name text, born date);
INSERT INTO people SELECT g, 'person ' || g, date '2000-01-01' + g FROM generate_series(1, 300) g;
CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
INSERT INTO blobs SELECT g, decode(md5(g::text) || '00ff', 'hex') FROM generate_series(1, 200) g;
CREATE VIEW young AS SELECT name FROM people WHERE born > date '2000-06-01';
"""


@pytest.fixture
def make_db(pg: PgServer) -> Iterator:
    made: list[str] = []

    def make(sql: str = SAMPLE) -> str:
        name = f"rdump{next(_names)}"
        pg.psql(f"CREATE DATABASE {name}")
        made.append(name)
        pg.psql(sql, name)
        return name

    yield make
    for name in made:
        pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def of(db: str, name: str) -> bool:
    """Whether the stored file ``name`` belongs to the dump of ``db``."""
    return name.split("/")[0] in (db, f"{db}.sql")


def comparable(stored: dict[str, bytes]) -> dict[str, bytes]:
    """Stored dump files with what differs between any two dumps of the same
    data masked: the restrict key of a plain dump (random per source) and
    the creation time in a toc.dat."""
    out = {}
    for name, data in stored.items():
        data = re.sub(rb"\\(un)?restrict \S+", rb"\\\1restrict KEY", data)
        span = creation_time_span(data) if name.endswith("toc.dat") else None
        if span is not None:
            data = data[: span[0]] + bytes(span[1] - span[0]) + data[span[1] :]
        out[name] = data
    return out


# Directory dumps on ext4, btrfs and xfs (hard links and a directory swap
# per dump); a plain dump is one UpdateFile, on ext4 only: the store path
# is the local one, run on all three by tests/postgres.
@pytest.mark.parametrize(
    ("fmt", "inkind_store_fs"),
    [("directory", "ext4"), ("directory", "btrfs"), ("directory", "xfs"), ("plain", "ext4")],
    indirect=["inkind_store_fs"],
)
def test_dumps_over_ssh_equal_local_ones_and_only_a_change_rewrites(
    fmt, pg, make_db, inkind_sshd, inkind_config, inkind_run, inkind_store
):
    db, other = make_db(), make_db()
    table = {"type": "postgres", "dsn": pg.dsn(), "databases": [db, other], "format": fmt}
    cfg = inkind_config({"local": table, "remote": over_ssh(inkind_sshd, table)})
    first = inkind_run(cfg, seed=1)
    assert first.exit_status == 0, first.as_dict()
    local, remote = (inkind_store / n for n in ("local", "remote"))
    assert comparable(files(remote)) == comparable(files(local))
    stats = {r.name: r.stats for r in first.results}
    assert stats["local"].bytes_received == 0
    assert stats["remote"].bytes_received > 0 and stats["remote"].bytes_written > 0

    before = identities(remote)
    second = inkind_run(cfg, "backup", "remote", seed=2)
    assert second.exit_status == 0, second.as_dict()
    s = second.results[0].stats
    assert (s.bytes_written, s.xattrs_written, s.mtimes_set, s.objects_changed) == (0, 0, 0, 0)
    assert identities(remote) == before  # not one dump rewritten

    pg.psql("INSERT INTO people VALUES (1000, 'a new person', date '2024-02-29')", db)
    third = inkind_run(cfg, seed=3)
    assert third.exit_status == 0, third.as_dict()
    s = {r.name: r.stats for r in third.results}["remote"]
    assert s.bytes_written > 0 and s.objects_changed == 1  # the people table's data, or the one SQL file
    stored = files(remote)
    assert comparable(stored) == comparable(files(local))
    assert any(b"a new person" in data for name, data in stored.items() if of(db, name))
    after = identities(remote)
    # The other database's dump and the globals untouched.
    assert {k: v for k, v in after.items() if not of(db, k)} == {
        k: v for k, v in before.items() if not of(db, k)
    }


# The failures below happen before or outside the store's writes: one
# filesystem (ext4) is enough, the store path is the one tested above.
ONE_FS = pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)


@ONE_FS  # the store's writes are those of the open key's source, run on all three above
@pytest.mark.parametrize("fmt", ["directory", "plain"])
def test_a_restricted_key_dumps_what_an_open_key_does(
    fmt, pg, make_db, inkind_sshd, inkind_config, inkind_run, inkind_store
):
    db = make_db()
    table = over_ssh(inkind_sshd, {"type": "postgres", "dsn": pg.dsn(), "databases": [db], "format": fmt})
    with inkind_sshd.restricted_login(sys.executable) as ssh:
        cfg = inkind_config({"open": table, "restricted": {**table, "ssh_command": ssh}})
        report = inkind_run(cfg, seed=1)
    assert report.exit_status == 0, report.as_dict()
    restricted = files(inkind_store / "restricted")
    assert comparable(restricted) == comparable(files(inkind_store / "open"))
    assert any(b"person 300" in data for name, data in restricted.items() if of(db, name))


@pytest.fixture
def remote_pg(pg, make_db, inkind_sshd, inkind_config, inkind_cli, inkind_store):
    """A database backed up once over ssh: (db, config, stored files)."""
    db = make_db()
    table = over_ssh(inkind_sshd, {"type": "postgres", "dsn": pg.dsn(), "databases": [db]})
    cfg = inkind_config({"pg": table})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 0, r.stderr
    return db, cfg, files(inkind_store / "pg")


@ONE_FS
def test_a_tool_missing_on_the_host_is_one_line_and_the_dumps_stay(
    remote_pg, inkind_cli, inkind_store, tmp_path
):
    _db, cfg, kept = remote_pg
    empty = tmp_path / "no-tools-here"
    empty.mkdir()
    cfg.write_text(cfg.read_text() + f'bin_dir = "{empty}"\n')
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert line.startswith("inkind: ERROR: pg: host root@127.0.0.1: ")
    assert (
        f"{empty}/psql: not found or not executable there (check bin_dir: it names a directory on the host)"
        in line
    )
    assert files(inkind_store / "pg") == kept
    assert inkind_cli("-c", cfg, "verify").returncode == 0


@ONE_FS
def test_a_failing_dump_is_one_line_naming_the_host_and_its_dump_stays(
    remote_pg, pg, inkind_cli, inkind_store
):
    db, cfg, kept = remote_pg
    pg.psql(f"ALTER DATABASE {db} ALLOW_CONNECTIONS false")
    try:
        r = inkind_cli("-c", cfg, "backup")
    finally:
        pg.psql(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert f"pg: database {db}: host {HOST}: " in line
    assert "not currently accepting connections" in line and line.endswith("(its previous dump is kept)")
    assert {k: v for k, v in files(inkind_store / "pg").items() if of(db, k)} == {
        k: v for k, v in kept.items() if of(db, k)
    }
    assert inkind_cli("-c", cfg, "verify").returncode == 0


@ONE_FS
def test_a_connection_cut_mid_dump_keeps_the_dump_and_the_host_temp_goes(
    remote_pg, pg, inkind_cli, inkind_store
):
    db, cfg, kept = remote_pg
    pg.psql("INSERT INTO people VALUES (1000, 'not stored yet', NULL)", db)

    def dumping() -> bool:
        """Whether a pg_dump of ``db`` still runs (on the host: this machine)."""
        return any(b"pg_dump" in c and f"dbname='{db}'".encode() in c for c in cmdlines())

    locker = subprocess.Popen(["psql", "-X", "-q", "-d", pg.dsn(dbname=db)], stdin=subprocess.PIPE, text=True)
    assert locker.stdin is not None
    locker.stdin.write("BEGIN; LOCK TABLE people IN ACCESS EXCLUSIVE MODE;\n")
    locker.stdin.flush()
    # verify-after: the connection is cut mid-run; verify runs below
    backup = subprocess.Popen(
        [sys.executable, "-m", "inkind", "-c", str(cfg), "backup"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while pg.psql("SELECT count(*) FROM pg_locks WHERE NOT granted").strip() == "0":
            assert backup.poll() is None and time.monotonic() < deadline, "pg_dump never waited on the lock"
            time.sleep(0.05)
        assert dump_temps(), "pg_dump -Fd writes into a temp directory on the host"
        (ssh,) = children(backup.pid, "ssh")
        subprocess.run(["kill", "-KILL", str(ssh)], check=True)  # the network cut, as the server sees it
        _out, err = backup.communicate(timeout=60)
        # The remote side finds its stdin hung up and kills pg_dump, which
        # waited on the lock: no dump runs on to its end; the temp directory
        # goes with it. (Its server session waits on the lock until COMMIT,
        # as a local pg_dump's does: the server notices the closed socket
        # only then.)
        deadline = time.monotonic() + 30
        while (dump_temps() or dumping()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not dump_temps(), "the temp directory was left on the host"
        assert not dumping(), "pg_dump ran on after the connection was cut"
    finally:
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait()
        if backup.poll() is None:
            backup.kill()
            backup.wait()
    assert backup.returncode == 2, err
    (line,) = error_lines(err)
    assert f"pg: database {db}: host {HOST}: the remote side ended mid-reply" in line, line
    assert files(inkind_store / "pg") == kept
    assert inkind_cli("-c", cfg, "verify").returncode == 0
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 0, r.stderr
    assert b"not stored yet" in b"".join(v for k, v in files(inkind_store / "pg").items() if of(db, k))


def cmdlines() -> list[bytes]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes())
    return out


@pytest.fixture(scope="module")
def peer_pg(ssh_user) -> Iterator[PgServer]:
    """A cluster where the role of the ssh login user is admitted by peer
    authentication alone (its OS user must be that user)."""
    srv = PgServer.create(prefix="inkind-pg-peer-", hba_extra=[f'local all "{ssh_user}" peer'])
    try:
        srv.psql(f'CREATE ROLE "{ssh_user}" LOGIN SUPERUSER')
        srv.psql("CREATE DATABASE shop")
        srv.psql(SAMPLE, "shop")
        yield srv
    finally:
        srv.destroy()


@ONE_FS
def test_peer_authentication_works_for_the_user_ssh_logs_in_as(
    peer_pg, ssh_user, inkind_sshd, inkind_config, inkind_run, inkind_cli, inkind_store
):
    dsn = f"host={peer_pg.sockdir} dbname=postgres"  # no user: libpq takes the login's name
    table = {"type": "postgres", "dsn": dsn, "databases": ["shop"]}
    cfg = inkind_config({"pg": over_ssh(inkind_sshd, table, host=f"{ssh_user}@127.0.0.1")})
    report = inkind_run(cfg, seed=1)
    assert report.exit_status == 0, report.as_dict()
    stored = files(inkind_store / "pg")
    assert "shop/toc.dat" in stored and b"person 300" in b"".join(stored.values())
    # As root, the same role is refused by peer authentication: one line.
    cfg = inkind_config({"pg": over_ssh(inkind_sshd, {**table, "dsn": f"{dsn} user={ssh_user}"})})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert f"pg: host {HOST}: " in line and f'Peer authentication failed for user "{ssh_user}"' in line, line
    assert files(inkind_store / "pg") == stored
