"""Shared test helpers; the fixtures themselves come from inkind.testing,
except the real database servers, started once per session and shared by
the postgres and mysql suites and the reliability harness, and the
unprivileged user's inkind (tests/unprivileged.py), and the per-test loop
devices and filesystems of tests/loopfs.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from dbservers import (
    MARIA_BACKUP_PASSWORD,
    MARIA_BACKUP_USER,
    PG_BACKUP_PASSWORD,
    PG_BACKUP_ROLE,
    PG_HBA,
    MariaServer,
    PgServer,
)
from loopfs import loop_device, mounted
from unprivileged import Unprivileged

__all__ = ["loop_device", "maria", "mounted", "pg", "unprivileged"]


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A PostgreSQL 15 cluster (initdb + pg_ctl, socket only, as the postgres
    user when root), with a password-only superuser role for the backups."""
    srv = PgServer.create(hba_extra=PG_HBA)
    try:
        srv.psql(f"CREATE ROLE {PG_BACKUP_ROLE} LOGIN SUPERUSER PASSWORD '{PG_BACKUP_PASSWORD}'")
        yield srv
    finally:
        srv.destroy()


@pytest.fixture(scope="session")
def maria() -> Iterator[MariaServer]:
    """A MariaDB server (mariadb-install-db + mariadbd, socket only, as the
    mysql user when root), with a backup user of the usual grants."""
    srv = MariaServer.create()
    try:
        srv.sql(
            f"CREATE USER '{MARIA_BACKUP_USER}'@'localhost' IDENTIFIED BY '{MARIA_BACKUP_PASSWORD}';"
            f"GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT, PROCESS ON *.* "
            f"TO '{MARIA_BACKUP_USER}'@'localhost';"
        )
        yield srv
    finally:
        srv.destroy()


@pytest.fixture(scope="session")
def unprivileged() -> Iterator[Unprivileged]:
    """``unprivileged.inkind(args, cwd)`` runs the CLI as uid 65534 from an
    interpreter and packages that user can read, wherever the checkout and
    the interpreter live (a clone in /root is out of its reach)."""
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root")
    made = Unprivileged.build()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def no_read_ahead(monkeypatch):
    """The walk reads every file itself: for tests of what happens between
    its own lstat and open (the read-ahead has its tests in
    test_files_read_ahead.py)."""
    from inkind.engines.tree import prefetch

    monkeypatch.setattr(prefetch, "wanted", lambda st: False)


@pytest.fixture
def one_core(monkeypatch):
    """The walk may use one core only (as under ``taskset -c 0``), so it has
    no worker: for tests of the order in which the walk itself goes."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
