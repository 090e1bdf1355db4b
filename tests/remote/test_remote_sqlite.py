"""The sqlite source with ``host``: copied on the host with the backup API
through the real test sshd, only the blocks the stored copy lacks cross
(Stats.bytes_received), the stored copy equals the database, and the
remote side's temp copy is gone afterwards, also when the run fails."""

from __future__ import annotations

import glob
import os
import random
import shlex
import sqlite3
from pathlib import Path

import pytest

# Each test gives the remote side a TMPDIR of its own (where its temps land), so
# the fixture's check after it sees that test's temps and no other's.
pytestmark = [pytest.mark.root]
ROWS = 400
BLOB = 4000
BLOCK = 64 << 10
FRAMING = 16 << 10  # generous bound on what crosses beside the blocks: hello, hashes, headers


def temps(host_tmp: Path) -> set[str]:
    """The remote side's sqlite copies in its TMPDIR (the host is this
    machine; each test gives the remote side a TMPDIR of its own)."""
    return set(glob.glob(f"{host_tmp}/.inkind-sqlite-*"))


def make_db(path: Path, rng: random.Random) -> None:
    """About 1.7 MB of incompressible rows, in WAL mode, closed (no -wal)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, data BLOB)")
    con.executemany("INSERT INTO item VALUES (?, ?)", [(i, rng.randbytes(BLOB)) for i in range(ROWS)])
    con.commit()
    con.close()


def rows(path: Path) -> list[tuple[int, bytes]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT id, data FROM item ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.fixture(params=["file", "image"])
def remote_db(request, inkind_sshd, inkind_config, tmp_path, monkeypatch):
    """A database on the host, stored through UpdateFile or (with LARGE
    lowered, in-process runs only: inkind_cli runs the real LARGE) kept as
    an image by the block-copy engine."""
    if request.param == "image":
        from inkind_sqlite import storing

        monkeypatch.setattr(storing, "LARGE", 1 << 20)
    db = tmp_path / "app.db"
    make_db(db, random.Random(7))
    host_tmp = tmp_path / "host-tmp"
    host_tmp.mkdir(mode=0o700)
    python = tmp_path / "python3"  # the remote side with a TMPDIR of this test's
    python.write_text(f'#!/bin/sh\nTMPDIR={host_tmp} exec python3 "$@"\n')
    python.chmod(0o755)
    table = {
        "type": "sqlite",
        "path": db,
        "host": "root@127.0.0.1",
        "ssh_command": shlex.join(inkind_sshd.ssh_command()),
        "remote_python": str(python),
    }
    request.node.host_tmp = host_tmp
    yield db, inkind_config({"app": table})
    assert temps(host_tmp) == set(), "the remote side's temp copy was left on the host"


def stored(store: Path) -> Path:
    return store / "app" / "app.db"


def test_first_run_stores_a_copy_equal_to_the_database(remote_db, inkind_run, inkind_store):
    db, cfg = remote_db
    report = inkind_run(cfg, seed=1)
    assert report.exit_status == 0, report.as_dict()
    beside = [p for p in os.listdir(db.parent) if p.startswith("app.db")]
    assert beside == ["app.db"], "a read-only open made the -wal/-shm of a database nobody had open"
    s = report.results[0].stats
    assert rows(stored(inkind_store)) == rows(db)
    size = os.path.getsize(stored(inkind_store))
    assert size * 0.9 <= s.bytes_received <= size + FRAMING  # rows of random bytes: zlib gains little
    assert os.getxattr(stored(inkind_store), "user.inkind.source") == f"root@127.0.0.1:{db}".encode()


def test_a_run_without_change_moves_only_the_hashes_and_writes_nothing(
    remote_db, assert_second_run_writes_nothing
):
    _db, cfg = remote_db
    second = assert_second_run_writes_nothing(cfg)
    s = second.results[0].stats
    assert s.bytes_received < FRAMING
    assert s.objects_unchanged == 1


def test_a_changed_row_moves_only_the_changed_blocks(remote_db, inkind_run, inkind_store):
    db, cfg = remote_db
    assert inkind_run(cfg, seed=1).exit_status == 0
    con = sqlite3.connect(db)
    con.execute("UPDATE item SET data = ? WHERE id = 200", (random.Random(9).randbytes(BLOB),))
    con.commit()
    con.close()
    report = inkind_run(cfg, seed=3)
    assert report.exit_status == 0, report.as_dict()
    s = report.results[0].stats
    # The row's page (in WAL mode the header's change counter stays): one block of 64 KiB.
    assert BLOCK // 2 < s.bytes_received <= BLOCK + FRAMING
    assert s.objects_changed == 1
    assert rows(stored(inkind_store)) == rows(db)
    assert dict(rows(stored(inkind_store)))[200] == random.Random(9).randbytes(BLOB)


def test_a_missing_database_is_one_line_naming_the_host_and_the_stored_copy_stays(
    remote_db, inkind_cli, inkind_store
):
    db, cfg = remote_db
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    before = stored(inkind_store).read_bytes()
    os.rename(db, db.with_name("gone.db"))
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if "host root@127.0.0.1" in line]
    assert lines and str(db) in lines[0] and "No such file" in lines[0], r.stderr
    assert stored(inkind_store).read_bytes() == before
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_a_failure_while_fetching_removes_the_temp_and_keeps_the_stored_copy(
    remote_db, inkind_run, inkind_store, monkeypatch, request
):
    from inkind_sqlite import remote

    db, cfg = remote_db
    host_tmp = request.node.host_tmp
    assert inkind_run(cfg, seed=1).exit_status == 0
    before = stored(inkind_store).read_bytes()
    con = sqlite3.connect(db)
    con.execute("DELETE FROM item WHERE id < 100")
    con.commit()
    con.close()
    seen: list[set[str]] = []

    def broken(channel, path, base, fd, block_size):
        seen.append(temps(host_tmp))
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(remote, "pull_copy", broken)
    report = inkind_run(cfg, seed=2)
    assert report.exit_status == 2
    assert "Input/output error" in " ".join(report.results[0].messages)
    assert seen and seen[0] and not temps(host_tmp), (
        "the temp existed (in TMPDIR) while it was fetched, and is gone now"
    )
    assert stored(inkind_store).read_bytes() == before


def test_a_glob_with_host_is_refused_naming_the_host(remote_db, inkind_cli, inkind_store):
    _db, cfg = remote_db
    cfg.write_text(cfg.read_text().replace("app.db", "*.db", 1))
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    assert "a glob cannot be read on host root@127.0.0.1" in r.stderr, r.stderr
    assert not stored(inkind_store).exists()


def test_restore_to_the_host_goes_through_rsync_over_ssh(remote_db, inkind_run, inkind_cli, tmp_path):
    db, cfg = remote_db
    assert inkind_run(cfg, seed=1).exit_status == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "app.db-wal").write_bytes(b"stale wal of another database")
    r = inkind_cli("-c", cfg, "restore", "app", "--to", f"127.0.0.1:{out}/", "--run")
    assert r.returncode == 0, r.stderr
    assert any(
        line.startswith("rsync -S -e ") and f"root@127.0.0.1:{out}/app.db" in line
        for line in r.stdout.splitlines()
    ), r.stdout
    assert not (out / "app.db-wal").exists()
    assert rows(out / "app.db") == rows(db)


def test_scrub_checks_the_stored_copy_only(remote_db, inkind_run, inkind_cli, inkind_store):
    _db, cfg = remote_db
    assert inkind_run(cfg, seed=1).exit_status == 0
    r = inkind_cli("-c", cfg, "scrub", "--fraction", "1")
    assert r.returncode == 0, r.stderr
    with open(stored(inkind_store), "r+b") as f:
        f.seek(8192)
        f.write(b"bit rot")
    r = inkind_cli("-c", cfg, "scrub", "--fraction", "1")
    assert r.returncode != 0
    assert "app/app.db" in r.stdout + r.stderr
