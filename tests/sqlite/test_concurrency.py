"""Live databases: a writer at work during the backup, and a writer that
holds its lock too long."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlite_helpers import make_db, query

BASE_ROWS = 3000


def make_ledger(path: Path, journal_mode: str) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute(f"PRAGMA journal_mode={journal_mode}")
        con.executescript(
            "CREATE TABLE ledger(seq INTEGER PRIMARY KEY, payload BLOB);"
            "CREATE TABLE total(n INTEGER);"
            "INSERT INTO total VALUES (0);"
        )
        with con:  # a few MiB, so that a copy is not instantaneous
            con.executemany(
                "INSERT INTO ledger VALUES (?, randomblob(1000))", [(-i,) for i in range(BASE_ROWS)]
            )
    finally:
        con.close()


class Writer(threading.Thread):
    """Commits transaction n (a ledger row and the total, together) for
    n = 1, 2, ... until stopped."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.committed = 0
        self.started_writing = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            con = sqlite3.connect(self.path, timeout=60)
            try:
                while not self.stop.is_set():
                    n = self.committed + 1
                    with con:
                        con.execute("INSERT INTO ledger VALUES (?, randomblob(500))", (n,))
                        con.execute("UPDATE total SET n = ?", (n,))
                    self.committed = n
                    time.sleep(0.001)  # pacing only: lets a rollback-mode reader get its lock
                    if n == 20:
                        self.started_writing.set()
            finally:
                con.close()
        except BaseException as e:  # reported by the test
            self.error = e
            self.started_writing.set()


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_copy_is_a_consistent_prefix_of_a_concurrent_writer(setup, inkind_run, journal_mode):
    s = setup("live.db")
    db = s.src / "live.db"
    make_ledger(db, journal_mode)
    stored = s.data / "live.db"
    writer = Writer(db)
    writer.start()
    try:
        writer.started_writing.wait()
        copies = []
        for seed in range(3):
            before = writer.committed
            report = inkind_run(s.config, seed=seed)
            after = writer.committed
            assert report.exit_status == 0, report.as_dict()
            assert query(stored, "PRAGMA integrity_check") == [("ok",)]
            ((count, top, total),) = query(
                stored,
                "SELECT count(*), coalesce(max(seq), 0), (SELECT n FROM total) FROM ledger WHERE seq > 0",
            )
            # Transactions 1..top, all of them, nothing torn: a prefix.
            assert count == top == total
            assert before <= top <= after
            assert query(stored, "SELECT count(*) FROM ledger WHERE seq <= 0") == [(BASE_ROWS,)]
            copies.append(top)
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None
    assert copies == sorted(copies) and writer.committed > copies[0]
    assert not list(s.data.glob("*-wal")) and not list(s.data.glob("*-shm"))


def test_a_database_locked_too_long_fails_and_the_others_are_stored(setup, inkind_run):
    s = setup("*.db", busy_timeout=0.2)
    make_db(s.src / "free.db")
    locked = make_db(s.src / "locked.db")
    holder = sqlite3.connect(locked, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        report = inkind_run(s.config)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    (r,) = report.results
    assert report.exit_status == 2
    assert r.messages == [
        f"{locked}: locked by a writer for more than 0.2 s (its stored copy is left as it was)"
    ]
    assert (s.data / "free.db").is_file() and not (s.data / "locked.db").exists()
