"""Helpers of the sqlite source tests: databases, dumps, corruption."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

MiB = 1 << 20


def make_db(path: Path, *, rows: int = 200, wal: bool = False) -> Path:
    """A database with several tables, types, an index, a view and a trigger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    try:
        if wal:
            con.execute("PRAGMA journal_mode=WAL")
        con.executescript(
            """
            CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB, note);
            CREATE INDEX item_name ON item(name);
            CREATE TABLE audit(id INTEGER PRIMARY KEY, item_id INTEGER, what TEXT);
            CREATE VIEW cheap AS SELECT id, name FROM item WHERE price < 10;
            CREATE TRIGGER item_added AFTER INSERT ON item
              BEGIN INSERT INTO audit(item_id, what) VALUES (new.id, 'added'); END;
            """
        )
        with con:
            con.executemany(
                "INSERT INTO item(name, price, data, note) VALUES (?, ?, ?, ?)",
                [
                    (f"item {i} \u00e9\u2603", i * 0.5, os.urandom(i % 300), None if i % 7 else "x")
                    for i in range(rows)
                ],
            )
    finally:
        con.close()
    return path


def execute(path: Path, sql: str, params: tuple = ()) -> None:
    con = sqlite3.connect(path)
    try:
        with con:
            con.execute(sql, params)
    finally:
        con.close()


def dump(path: Path) -> str:
    """The database's content as the sqlite3 CLI's ``.dump`` prints it."""
    return subprocess.run(
        ["sqlite3", "-readonly", str(path), ".dump"], check=True, capture_output=True, text=True
    ).stdout


def query(path: Path, sql: str) -> list[tuple]:
    """Rows of ``sql`` on a file nothing else uses, opened without creating
    any -wal/-shm file next to it (safe on a stored copy)."""
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def backdate(path: Path, seconds: int = 3600) -> None:
    """Make a file look untouched for a while (past the quick check's racy window)."""
    st = os.stat(path)
    old = st.st_mtime_ns - seconds * 1_000_000_000
    os.utime(path, ns=(old, old))
