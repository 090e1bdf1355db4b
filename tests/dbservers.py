"""Real database servers for the postgres and mysql tests, started in a temp
directory on a Unix socket only, as an unprivileged user when run as root.

Each server is started once per test session (startup costs seconds) by
the session fixtures ``pg`` and ``maria`` in tests/conftest.py (the source
suites and the reliability harness share them), and always stopped at the
end.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
READY_TIMEOUT = 60.0

PG_BACKUP_ROLE, PG_BACKUP_PASSWORD = "backup", "s3cret-Pw-4711"
# The backup role must give a password; everybody else is trusted.
PG_HBA = [f"local all {PG_BACKUP_ROLE} scram-sha-256"]
MARIA_BACKUP_USER, MARIA_BACKUP_PASSWORD = "backup", "my-s3cret-4711"


def service_user(name: str) -> pwd.struct_passwd | None:
    """The system user a server runs as when we are root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no '{name}' system user to run the server as")


def as_user(user: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user.pw_name, "--", *argv]


def private_dir(prefix: str, user: pwd.struct_passwd | None) -> Path:
    """A fresh directory the server's user owns, reachable by that user
    (pytest's own tmp dirs are 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def check(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, errors="surrogateescape", **kwargs)
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def wait_for(probe, what: str) -> None:
    """Poll ``probe()`` until it returns True (server start-up), or fail."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {READY_TIMEOUT:.0f}s")
        time.sleep(0.1)


@dataclass
class PgServer:
    """A PostgreSQL 15 cluster made by initdb, listening on a socket only."""

    base: Path
    user: pwd.struct_passwd | None
    hba_extra: list[str] = field(default_factory=list)
    running: bool = False

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        return self.base

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"host={self.sockdir} port=5432 user={user} dbname={dbname}"

    @classmethod
    def create(cls, prefix: str = "inkind-pg-", hba_extra: list[str] | None = None) -> PgServer:
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
        user = service_user("postgres")
        srv = cls(private_dir(prefix, user), user, hba_extra or [])
        check(
            as_user(
                user,
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(srv.datadir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                ],
            )
        )
        hba = srv.datadir / "pg_hba.conf"
        hba.write_text("\n".join([*srv.hba_extra, "local all all trust"]) + "\n")
        conf = srv.datadir / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"listen_addresses = ''\nunix_socket_directories = '{srv.sockdir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 16MB\nmax_connections = 30\n"
            )
        srv.start()
        return srv

    def start(self) -> None:
        log = self.base / "server.log"
        check(
            as_user(
                self.user, [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(log), "-w", "start"]
            )
        )
        self.running = True

    def stop(self) -> None:
        if self.running:
            subprocess.run(
                as_user(
                    self.user, [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"]
                ),
                capture_output=True,
            )
            self.running = False

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def psql(self, sql: str, dbname: str = "postgres", user: str = "postgres") -> str:
        """Run SQL (as the superuser by default); return the unaligned output."""
        p = check(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", self.dsn(user, dbname)],
            input=sql,
        )
        return p.stdout


@dataclass
class MariaServer:
    """A MariaDB server made by mariadb-install-db, socket only (skip-networking)."""

    base: Path
    user: pwd.struct_passwd | None
    proc: subprocess.Popen | None = None

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket(self) -> Path:
        return self.base / "mysqld.sock"

    @property
    def tmpdir(self) -> Path:
        """The server's own temp dir: with the shared /tmp, a bootstrap lost
        its temporary tables to another process's cleanup (seen on CI)."""
        return self.base / "tmp"

    @classmethod
    def create(cls, prefix: str = "inkind-maria-") -> MariaServer:
        if shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is None:
            pytest.skip("mariadbd not installed")
        user = service_user("mysql")
        srv = cls(private_dir(prefix, user), user)
        srv.tmpdir.mkdir()
        if user is not None:
            os.chown(srv.tmpdir, user.pw_uid, user.pw_gid)
        argv = ["mariadb-install-db", "--no-defaults", f"--datadir={srv.datadir}", "--skip-test-db"]
        argv.append(f"--tmpdir={srv.tmpdir}")  # passed on to the bootstrap server
        argv += ["--auth-root-authentication-method=socket", "--skip-name-resolve"]
        if user is not None:
            argv.append(f"--user={user.pw_name}")
        check(argv)
        srv.start()
        return srv

    def start(self) -> None:
        argv = [
            shutil.which("mariadbd", path="/usr/sbin:/usr/bin") or "mariadbd",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--tmpdir={self.tmpdir}",
            f"--pid-file={self.base / 'mysqld.pid'}",
            f"--log-error={self.base / 'server.log'}",
            "--skip-networking",
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=8M",
            "--innodb-flush-log-at-trx-commit=0",
            "--skip-log-bin",
        ]
        if self.user is not None:
            argv.append(f"--user={self.user.pw_name}")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self.base / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mariadbd exited {self.proc.returncode}: {log}")
            return self.sql_status("SELECT 1") == 0

        wait_for(ready, "mariadbd")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def client(self, *extra: str) -> list[str]:
        return ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", *extra]

    def sql_status(self, sql: str) -> int:
        return subprocess.run(self.client("-e", sql), capture_output=True).returncode

    def sql(self, sql: str, db: str | None = None) -> str:
        """Run SQL as root; return the batch (tab-separated) output."""
        p = check(self.client("-N", "-B", *([db] if db else [])), input=sql)
        return p.stdout

    def defaults_file(self, path: Path, user: str = "root", password: str | None = None) -> Path:
        """A client option file as the source's ``defaults_file``."""
        lines = ["[client]", f"socket={self.socket}", f"user={user}"]
        if password is not None:
            lines.append(f"password={password}")
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path
