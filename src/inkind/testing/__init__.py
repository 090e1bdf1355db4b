"""pytest fixtures for testing inkind sources (a ``pytest11`` plugin).

Installed with inkind, so a third-party plugin's tests get them too:

* ``inkind_store``: an empty store (made by ``inkind init``) on a
  loop-mounted ext4, btrfs and XFS: a test that takes it runs three times.
* ``inkind_store_dir``: an empty directory there, not yet a store.
* ``inkind_config``: write a config; returns its path.
* ``inkind_cli``: run the real ``inkind`` command as a subprocess.
* ``inkind_run``: run a command in-process and get its RunReport.

Every backup that ``inkind_cli`` or ``inkind_run`` makes (not a dry run)
and that finishes (exit 0 or 1) is followed by a ``verify`` of the sources
it backed up, which must be clean: a test cannot forget to check that what
it stored is sound. ``verify_after=False`` opts one call out, for a backup
that another run overlaps.
* ``assert_second_run_writes_nothing``: run a backup twice and assert the
  second wrote no byte, xattr, mode, owner or mtime.
* ``inkind_kill_and_check``: SIGKILL a backup mid-run, then check that
  verify sees only recoverable leftovers and the next run succeeds.
* ``inkind_scrub_corruption``: corrupt one stored file as a failing disk
  would and check that scrub names it and exits 2.
* ``inkind_sshd``: a real OpenSSH server on 127.0.0.1 for the session,
  with its ``ssh_command()`` (root only; :mod:`inkind.testing.sshd`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inkind import config as config_mod
from inkind.plugins import load_plugins
from inkind.runner import Runner, RunReport
from inkind.store.xattrs import ACL_ALIAS_FILTER
from inkind.storeroot import StoreLayout, init_store
from inkind.testing import forkserver
from inkind.testing.filesystems import NEEDS_ROOT, STORE_FILESYSTEMS, SessionFilesystems, remove_tree
from inkind.testing.sshd import inkind_sshd  # noqa: F401  (a fixture: pytest finds it here)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def render_config(store: Path, sources: dict[str, dict[str, Any]], **defaults: Any) -> str:
    """A config text: the store (no snapshots), defaults (no random full
    pass or scrub unless asked), and the given source tables."""
    lines = ["[store]", f"path = {toml_value(store)}", 'snapshots = "none"', "", "[defaults]"]
    merged = {"full_probability": 0.0, "scrub_fraction": 0.0, **defaults}
    lines += [f"{k} = {toml_value(v)}" for k, v in merged.items()]
    for name, table in sources.items():
        lines += ["", f"[sources.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def inkind_filesystems() -> Iterator[SessionFilesystems]:
    """The session's loop-mounted ext4, btrfs and XFS (each made on first use)."""
    filesystems = SessionFilesystems.make()
    yield filesystems
    filesystems.close()


@pytest.fixture(params=STORE_FILESYSTEMS)
def inkind_store_fs(request: pytest.FixtureRequest) -> str:
    """The type of filesystem this run of the test keeps its store on."""
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    return request.param


@pytest.fixture
def inkind_store_dir(
    request: pytest.FixtureRequest, inkind_store_fs: str, inkind_filesystems: SessionFilesystems
) -> Iterator[Path]:
    """An empty directory on the store filesystem, not yet a store."""
    base = inkind_filesystems.new_dir(inkind_store_fs, request.node.originalname)
    store = base / "store"
    store.mkdir()
    yield store
    remove_tree(base)


@pytest.fixture
def inkind_store(inkind_store_dir: Path) -> Path:
    """An empty store, made by ``init`` as a sysadmin would."""
    init_store(inkind_store_dir)
    return inkind_store_dir


@pytest.fixture
def inkind_config(tmp_path: Path, inkind_store: Path) -> Callable[..., Path]:
    """``inkind_config(sources={"home": {"type": "files", "path": ...}})``."""

    def write(sources: dict[str, dict[str, Any]], store: Path | None = None, **defaults: Any) -> Path:
        path = tmp_path / "inkind.toml"
        path.write_text(render_config(store or inkind_store, sources, **defaults))
        return path

    return write


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


_GLOBAL_VALUED = {"-c", "--config", "--log-json"}
_BACKUP_VALUED = {"--scrub-fraction", "--seed", "--jobs"}


@dataclass
class BackupCall:
    """What a command line asks of ``backup``: the config and the sources."""

    config: str | None
    names: tuple[str, ...]
    dry_run: bool

    @classmethod
    def parse(cls, args: list[str], env: dict[str, str]) -> BackupCall | None:
        config, i = env.get("INKIND_CONFIG"), 0
        while i < len(args) and args[i].startswith("-"):
            if args[i] in _GLOBAL_VALUED:
                config = args[i + 1] if args[i] in ("-c", "--config") else config
                i += 1
            i += 1
        if i >= len(args) or args[i] != "backup":
            return None
        names, rest = [], args[i + 1 :]
        j = 0
        while j < len(rest):
            if rest[j] in _BACKUP_VALUED:
                j += 1
            elif not rest[j].startswith("-"):
                names.append(rest[j])
            j += 1
        return cls(config, tuple(names), "--dry-run" in rest)


def verify_clean(config: str | Path, names: tuple[str, ...] = (), extra=None) -> None:
    """Assert that ``verify`` finds nothing in the sources a backup just
    stored (those a concurrent run still holds are left to that run)."""
    cfg = config_mod.load(str(config))
    store = cfg.store.path
    selected = names or tuple(cfg.sources)
    done = [n for n in selected if not StoreLayout(store).load_state(n).data.get("running")]
    if not done:
        return
    report, findings = Runner(cfg, load_plugins(extra), seed=0).verify(tuple(done))
    checked = [r for r in report.results if r.outcome != "busy"]  # a lock the test holds
    found = [str(f) for f in findings] + [m for r in checked for m in r.messages]
    assert not found and all(r.outcome == "ok" for r in checked), f"verify after the backup: {found}"


_FORKS = forkserver.Client()  # this worker's fork server, started on first use


def run_inkind(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 300, verify_after: bool = True
) -> CliResult:
    """Run ``inkind ARGS`` in a process of its own (a fork of this worker's
    server, see :mod:`inkind.testing.forkserver`, or a new interpreter); a
    finished backup is followed by a verify that must be clean (see the
    module docstring)."""
    argv = [str(a) for a in args]
    full_env = {**os.environ, **(env or {})}
    if forkserver.usable(full_env):
        p = _FORKS.run(argv, full_env, timeout)
    else:
        p = subprocess.run(
            [sys.executable, "-m", "inkind", *argv],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
    call = BackupCall.parse(argv, full_env)
    if verify_after and call and not call.dry_run and call.config and p.returncode in (0, 1):
        verify_clean(call.config, call.names)
    return CliResult(p.returncode, p.stdout, p.stderr)


def start_inkind(
    *args: str | Path, env: dict[str, str] | None = None
) -> forkserver.Running | subprocess.Popen:
    """Start ``inkind ARGS`` (output to /dev/null) for a test that kills it
    or watches it mid-run: ``wait``, ``poll``, ``send_signal`` and ``kill``
    as on a Popen. No verify follows: the caller decides what must hold."""
    argv = [str(a) for a in args]
    full_env = {**os.environ, **(env or {})}
    if forkserver.usable(full_env):
        with open(os.devnull, "wb") as null:
            return _FORKS.start(argv, full_env, null.fileno(), null.fileno())
    return subprocess.Popen(
        # verify-after: the caller's run is killed or watched
        [sys.executable, "-m", "inkind", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=full_env,
    )


@pytest.fixture
def inkind_cli() -> Callable[..., CliResult]:
    """Run ``inkind ARGS`` in a process of its own (:func:`run_inkind`)."""
    return run_inkind


@pytest.fixture
def inkind_run() -> Callable[..., RunReport]:
    """``inkind_run(config_path, "backup", full=True, seed=1)`` in-process;
    a finished backup is followed by a clean verify, as with ``inkind_cli``."""

    # size: the runner's commands and options as keywords, as the CLI takes them
    def run(
        config_path: Path,
        command: str = "backup",
        *names: str,
        seed: int = 0,
        extra=None,
        verify_after: bool = True,
        **kwargs,
    ):
        runner = Runner(config_mod.load(str(config_path)), load_plugins(extra), seed=seed)
        if command == "verify":
            return runner.verify(names)[0]
        report = getattr(runner, command)(names, **kwargs)
        finished = report.exit_status in (0, 1) and not kwargs.get("dry_run")
        if command == "backup" and verify_after and finished:
            verify_clean(config_path, names, extra)
        return report

    return run


@pytest.fixture
def assert_second_run_writes_nothing(inkind_run) -> Callable[..., RunReport]:
    """Back up twice; assert the second run changed nothing at all."""

    def check(config_path: Path, *names: str) -> RunReport:
        first = inkind_run(config_path, "backup", *names, seed=1)
        assert first.exit_status == 0, first.as_dict()
        second = inkind_run(config_path, "backup", *names, seed=2)
        assert second.exit_status == 0, second.as_dict()
        for r in second.results:
            s = r.stats
            wrote = (
                s.bytes_written,
                s.xattrs_written,
                s.mtimes_set,
                s.modes_set,
                s.owners_set,
                s.objects_changed,
            )
            assert wrote == (0, 0, 0, 0, 0, 0), f"{r.name}: second run wrote {s.nonzero()}"
        return second

    return check


def tree_diff(expected: Path, actual: Path) -> list[str]:
    """What differs between two trees, in content and every piece of
    metadata rsync -aHAX knows (owner, mode, mtime, xattrs, ACLs, hard
    links, devices), as rsync's itemized lines; empty when identical.

    inkind's own ``user.inkind.*`` xattrs are left out of the comparison,
    and so are XFS's aliases of ACLs (the ACLs themselves are compared).
    """
    cmd = ["rsync", "-naHAXS", "--numeric-ids", "--checksum", "--itemize-changes", "--delete"]
    cmd += ["--filter=-x user.inkind.*", ACL_ALIAS_FILTER, f"{expected}/", f"{actual}/"]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return [line for line in out.decode("utf-8", "backslashreplace").splitlines() if line.strip()]


def dirtied_bytes() -> int:
    """Bytes this process (every thread, and every child it has reaped: a
    dump tool) has sent towards storage so far (``write_bytes`` of
    /proc/self/io: counted when a page is dirtied, so a file deleted before
    it reaches the disk counts too). The difference
    around an in-process run tells how often it wrote its data, which the
    run's Stats cannot: a scratch copy written and then copied again."""
    io = Path("/proc/self/io")
    for line in io.read_text().splitlines() if io.exists() else []:
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    pytest.skip("no write_bytes in /proc/self/io (a kernel without task I/O accounting)")


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt a stored file the way a disk would: one byte changes; size,
    mtime and xattrs stay, so only a checksum can tell."""
    st = os.stat(path)
    at = st.st_size // 2 if offset is None else offset
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@dataclass
class KillCheck:
    killed: bool  # False: the backup finished before the kill
    verify: CliResult  # right after the kill
    rerun: CliResult  # the next backup


@pytest.fixture
def inkind_kill_and_check(inkind_cli) -> Callable[..., KillCheck]:
    """``inkind_kill_and_check(config, "src", delay=0.5)``: start a backup,
    SIGKILL it after ``delay`` seconds (or a moment drawn from ``seed``),
    assert that ``verify`` finds only recoverable leftovers (exit 0 or 1)
    and that the next backup exits 0."""

    def check(config: Path, *names: str, delay: float | None = None, seed: int = 0, longest: float = 2.0):
        if delay is None:
            delay = random.Random(seed).uniform(0.1, longest)
        p = start_inkind("-q", "-c", config, "backup", *names)
        try:
            p.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            killed = True
        verify = inkind_cli("-c", config, "verify", "--json", *names)
        assert verify.returncode in (0, 1), verify.stdout + verify.stderr
        assert all(f["recoverable"] for f in verify.json()["findings"]), verify.stdout
        rerun = inkind_cli("-c", config, "backup", *names)
        assert rerun.returncode == 0, rerun.stderr
        return KillCheck(killed, verify, rerun)

    return check


@pytest.fixture
def inkind_scrub_corruption(inkind_cli) -> Callable[..., CliResult]:
    """``inkind_scrub_corruption(config, "src", stored_file)``: flip a byte
    of ``stored_file`` (below STORE/src) and assert that ``scrub
    --fraction 1`` exits 2 and names it."""

    def check(config: Path, name: str, stored_file: Path) -> CliResult:
        flip_byte(stored_file)
        r = inkind_cli("-c", config, "scrub", "--fraction", "1", name)
        assert r.returncode == 2, r.stdout + r.stderr
        rel = f"{name}/{stored_file.name}"
        assert rel in r.stdout + r.stderr, f"scrub did not name {rel}: {r.stderr}"
        return r

    return check
