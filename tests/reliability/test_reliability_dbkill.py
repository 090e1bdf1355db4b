"""SIGKILL at random moments of a PostgreSQL or MariaDB backup, against the
real servers of the session (tests/conftest.py).

After each kill: every stored dump is its old content or its new one,
``verify`` finds only recoverable leftovers, no dump tool outlives the
killed run, and the server keeps no session of it (no open transaction, no
exported snapshot, no lock). The next run exits 0, the stored dumps equal a
fresh dump, and nothing is left behind: no temp in the store, no file in
the run's TMPDIR.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import KillReport, delays, inkind, timed_backup, verify_is_recoverable
from test_reliability_crash import record

from inkind.store.files import is_temp_name
from inkind.testing import render_config, start_inkind

pytestmark = pytest.mark.slow

PG_DATABASES = ("killpg_dir", "killpg_plain")
MY_DATABASE = "killmy"
TOOL_GRACE = 0.5  # seconds a killed run's dump tools may take to die
SESSION_GRACE = 3.0  # seconds the server may take to see their sessions gone


def run_killed_at(  # size: the run, when to kill it, and whose tools count
    config: Path, env: dict[str, str], delay: float, during: str | None = None, scope: str = ""
) -> int | None:
    """``inkind backup`` SIGKILLed after ``delay`` s, or (``during``) as soon
    as a process whose command line names ``during`` runs: None; or its
    exit status when it finished first."""
    p = start_inkind("-q", "-c", config, "backup", env=env)
    try:
        if during is None:
            return p.wait(timeout=delay)
        while not tool_processes(during, scope):
            if p.poll() is not None:
                return p.returncode
            time.sleep(0.005)
        time.sleep(delay)
        raise subprocess.TimeoutExpired(p.args, delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return None


def kill_plan(rng: random.Random, n: int, longest: float, tools: list[str]) -> list[tuple[float, str | None]]:
    """Kill moments: one inside each dump tool's run (a moment the random
    draw may miss: dumps are quick), then ``n`` random ones."""
    return [(0.05, tool) for tool in tools] + [(d, None) for d in delays(rng, n, longest)]


def tool_processes(marker: str, scope: str) -> list[str]:
    """Command lines of live processes (zombies left out) naming ``marker``
    and ``scope``: this test's server or option file, so the same test on
    another store filesystem, run by another worker beside it, is not seen."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in raw and scope.encode() in raw and state != "Z":
            found.append(raw.replace(b"\0", b" ").decode(errors="replace").strip())
    return found


def settle(grace: float, probe: Callable[[], list]) -> list:
    """``probe()`` until it finds nothing or ``grace`` s passed; what it
    found last."""
    deadline = time.monotonic() + grace
    while (found := probe()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def temps_below(root: Path) -> list[str]:
    out = []
    for dirpath, dirs, files in os.walk(root):
        out += [os.path.join(dirpath, n) for n in dirs + files if is_temp_name(n)]
    return out


def without_restrict(text: str) -> list[str]:
    """A SQL script's lines in sorted order, psql's ``\\restrict`` lines left
    out (their key is random per dump): equal for the same data whatever
    order the rows came in."""
    return sorted(line for line in text.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


# --- PostgreSQL ----------------------------------------------------------


def pg_script(entry: Path) -> list[str] | None:
    """A stored postgres dump as a SQL script (a directory archive through
    ``pg_restore -f -``), or None when there is none."""
    if entry.is_dir():
        out = subprocess.run(
            ["pg_restore", "--restrict-key=k", "-f", "-", str(entry)], capture_output=True, text=True
        )
        assert out.returncode == 0, f"{entry}: not a whole archive: {out.stderr}"
        return without_restrict(out.stdout)
    if entry.is_file():
        return without_restrict(entry.read_text())
    return None


def pg_fresh(pg, tmp: Path) -> dict[str, list[str]]:
    """What the stored dumps must hold now: fresh dumps made by hand."""
    fresh = {}
    out = tmp / "fresh-dump"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    subprocess.run(["pg_dump", "-Fd", "-Z0", "-d", pg.dsn(dbname="killpg_dir"), "-f", str(out)], check=True)
    fresh["pg/killpg_dir"] = pg_script(out)
    plain = subprocess.run(
        ["pg_dump", "-Fp", "--create", "-d", pg.dsn(dbname="killpg_plain")], capture_output=True, check=True
    )
    fresh["pgplain/killpg_plain.sql"] = without_restrict(plain.stdout.decode())
    globals_ = subprocess.run(
        ["pg_dumpall", "--globals-only", "-d", pg.dsn(), "-l", "postgres"], capture_output=True, check=True
    )
    fresh["pg/globals.sql"] = fresh["pgplain/globals.sql"] = without_restrict(globals_.stdout.decode())
    return fresh


def pg_stored(store: Path, names) -> dict[str, list[str] | None]:
    return {rel: pg_script(store / rel) for rel in names}


def pg_mutate(pg, rng: random.Random) -> None:
    for db in PG_DATABASES:
        lo, hi = sorted(rng.randrange(1, 60000) for _ in range(2))
        pg.psql(
            f"UPDATE big SET body = md5(random()::text) || body WHERE id BETWEEN {lo} AND {lo + 300};"
            f"DELETE FROM big WHERE id BETWEEN {hi} AND {hi + 20};"
            f"INSERT INTO big (body) SELECT repeat(md5(g::text), 4) FROM generate_series(1, 50) g;",
            db,
        )


def pg_sessions(pg) -> list[str]:
    """Server-side traces of a dump: sessions on the test databases, exported
    snapshots' transactions, locks of other sessions, prepared transactions."""
    dbs = ", ".join(f"'{d}'" for d in PG_DATABASES)
    out = pg.psql(
        f"SELECT 'session ' || pid || ' ' || coalesce(application_name, '') || ' ' || state "
        f"FROM pg_stat_activity WHERE datname IN ({dbs}) AND pid <> pg_backend_pid() "
        "UNION ALL SELECT 'lock ' || l.pid || ' ' || l.mode || ' on ' || coalesce(l.relation::regclass::text, '') "
        "FROM pg_locks l WHERE l.pid <> pg_backend_pid() AND l.locktype = 'relation' "
        "UNION ALL SELECT 'prepared ' || gid FROM pg_prepared_xacts"
    )
    return out.split("\n") if out.strip() else []


@pytest.fixture
def pg_kill_setup(pg, tmp_path, inkind_store):
    rng = random.Random(17)
    for db in PG_DATABASES:
        pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        pg.psql(f"CREATE DATABASE {db}")
        pg.psql(
            "CREATE TABLE big (id serial PRIMARY KEY, body text);"
            "INSERT INTO big (body) SELECT repeat(md5(g::text), 4) FROM generate_series(1, 60000) g;"
            "CREATE TABLE quiet (id int PRIMARY KEY, v text);"
            "INSERT INTO quiet SELECT g, md5(g::text) FROM generate_series(1, 20000) g;"
            "CREATE TABLE small (id int PRIMARY KEY, v text); INSERT INTO small VALUES (1, 'one');",
            db,
        )
    cfg = tmp_path / "c.toml"
    sources = {
        "pg": {"type": "postgres", "dsn": pg.dsn(), "databases": ["killpg_dir"], "jobs": 2},
        "pgplain": {"type": "postgres", "dsn": pg.dsn(), "databases": ["killpg_plain"], "format": "plain"},
    }
    cfg.write_text(render_config(inkind_store, sources))
    try:
        yield cfg, rng
    finally:
        for db in PG_DATABASES:
            pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_postgres_source_survives_kills(pg, pg_kill_setup, tmp_path, inkind_store, db_kill_points):
    cfg, rng = pg_kill_setup
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    names = ["pg/globals.sql", "pg/killpg_dir", "pgplain/globals.sql", "pgplain/killpg_plain.sql"]
    timed_backup(cfg, env)
    pg_mutate(pg, rng)
    longest = timed_backup(cfg, env)  # an incremental run: one table's files rewritten
    report = KillReport()
    plan = kill_plan(rng, db_kill_points, longest, ["dbname='killpg_dir'", "dbname='killpg_plain'"])
    old = pg_stored(inkind_store, names)
    for delay, during in plan:
        pg_mutate(pg, rng)
        new = pg_fresh(pg, tmp_path)
        status = run_killed_at(cfg, env, delay, during, str(pg.sockdir))
        report.kills += status is None
        report.finished += status is not None
        assert settle(TOOL_GRACE, lambda: tool_processes("killpg_", str(pg.sockdir))) == [], (
            "a dump tool outlived the killed run"
        )
        assert settle(SESSION_GRACE, lambda: pg_sessions(pg)) == [], "the killed run left server state"
        for rel, content in pg_stored(inkind_store, names).items():
            if content is not None and content not in (old[rel], new[rel]):
                report.lost.append(rel)
        report.leftovers += verify_is_recoverable(cfg)
        timed_backup(cfg, env)
        assert pg_stored(inkind_store, names) == new
        old = new  # what the store holds for the next kill
        assert temps_below(inkind_store) == []
        assert list(tmpdir.iterdir()) == []
    assert inkind("-c", cfg, "verify").returncode == 0
    record("postgres", report)
    print("postgres", report.as_dict())
    assert report.lost == []


# --- MariaDB -------------------------------------------------------------

DUMP = ["--single-transaction", "--routines", "--events", "--triggers", "--skip-dump-date"]
DUMP += ["--order-by-primary", "--hex-blob"]


def my_mutate(maria, rng: random.Random) -> None:
    lo, hi = sorted(rng.randrange(1, 80000) for _ in range(2))
    maria.sql(
        f"UPDATE big SET body = REVERSE(body) WHERE id BETWEEN {lo} AND {lo + 300};"
        f"DELETE FROM big WHERE id BETWEEN {hi} AND {hi + 20};"
        "INSERT INTO big (body) SELECT REPEAT(MD5(seq), 4) FROM seq_1_to_50;",
        MY_DATABASE,
    )


def my_sessions(maria) -> list[str]:
    """Sessions of the killed run still on the server (its dump's
    transaction and metadata locks live as long as the session)."""
    out = maria.sql(
        "SELECT CONCAT(id, ' ', user, ' ', command, ' ', COALESCE(info, '')) FROM information_schema.processlist "
        f"WHERE id <> CONNECTION_ID() AND (db = '{MY_DATABASE}' OR info LIKE '%{MY_DATABASE}%') "
        "AND user <> 'system user'"
    )
    return [line for line in out.split("\n") if line.strip()]


@pytest.fixture
def my_kill_setup(maria, tmp_path, inkind_store):
    maria.sql(f"DROP DATABASE IF EXISTS {MY_DATABASE}; CREATE DATABASE {MY_DATABASE}")
    maria.sql(
        "CREATE TABLE big (id int AUTO_INCREMENT PRIMARY KEY, body text) ENGINE=InnoDB;"
        "INSERT INTO big (body) SELECT REPEAT(MD5(seq), 4) FROM seq_1_to_80000;"
        "CREATE TABLE quiet (id int PRIMARY KEY, v text) ENGINE=MyISAM;"
        "INSERT INTO quiet SELECT seq, MD5(seq) FROM seq_1_to_20000;",
        MY_DATABASE,
    )
    defaults = maria.defaults_file(tmp_path / "root.cnf")
    cfg = tmp_path / "c.toml"
    source = {"type": "mysql", "defaults_file": defaults, "databases": [MY_DATABASE]}
    cfg.write_text(render_config(inkind_store, {"my": source}))
    try:
        yield cfg, defaults
    finally:
        maria.sql(f"DROP DATABASE IF EXISTS {MY_DATABASE}")


def test_mysql_source_survives_kills(maria, my_kill_setup, tmp_path, inkind_store, db_kill_points):
    cfg, defaults = my_kill_setup
    rng = random.Random(19)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    stored = inkind_store / "my" / f"{MY_DATABASE}.sql"
    timed_backup(cfg, env)
    my_mutate(maria, rng)
    longest = timed_backup(cfg, env)
    report = KillReport()
    for delay, during in kill_plan(rng, db_kill_points, longest, [MY_DATABASE]):
        old = stored.read_bytes()
        my_mutate(maria, rng)
        fresh = subprocess.run(
            ["mysqldump", f"--defaults-file={defaults}", *DUMP, "--", MY_DATABASE],
            capture_output=True,
            check=True,
        )
        new = fresh.stdout
        status = run_killed_at(cfg, env, delay, during, str(defaults))
        report.kills += status is None
        report.finished += status is not None
        assert settle(TOOL_GRACE, lambda: tool_processes(MY_DATABASE, str(defaults))) == [], (
            "a dump tool outlived the killed run"
        )
        assert settle(SESSION_GRACE, lambda: my_sessions(maria)) == [], "the killed run left server state"
        if stored.read_bytes() not in (old, new):
            report.lost.append(stored.name)
        report.leftovers += verify_is_recoverable(cfg)
        timed_backup(cfg, env)
        assert stored.read_bytes() == new
        assert temps_below(inkind_store) == []
        assert list(tmpdir.iterdir()) == []
    assert inkind("-c", cfg, "verify").returncode == 0
    record("mysql", report)
    print("mysql", report.as_dict())
    assert report.lost == []
