"""pytest fixtures for testing inkind sources (a ``pytest11`` plugin).

Installed with inkind, so a third-party plugin's tests get them too:

* ``inkind_store``: an empty store directory.
* ``inkind_config``: write a config; returns its path.
* ``inkind_cli``: run the real ``inkind`` command as a subprocess.
* ``inkind_run``: run a command in-process and get its RunReport.
* ``assert_second_run_writes_nothing``: run a backup twice and assert the
  second wrote no byte, xattr, mode, owner or mtime.
* ``inkind_kill_and_check``: SIGKILL a backup mid-run, then check that
  verify sees only recoverable leftovers and the next run succeeds.
* ``inkind_scrub_corruption``: corrupt one stored file as a failing disk
  would and check that scrub names it and exits 2.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inkind import config as config_mod
from inkind.plugins import load_plugins
from inkind.runner import Runner, RunReport

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


@pytest.fixture
def inkind_store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    return store


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


@pytest.fixture
def inkind_cli() -> Callable[..., CliResult]:
    """Run ``inkind ARGS`` as a real subprocess (console script or -m)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> CliResult:
        cmd = [sys.executable, "-m", "inkind", *map(str, args)]
        p = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
        )
        return CliResult(p.returncode, p.stdout, p.stderr)

    return run


@pytest.fixture
def inkind_run() -> Callable[..., RunReport]:
    """``inkind_run(config_path, "backup", full=True, seed=1)`` in-process."""

    def run(config_path: Path, command: str = "backup", *names: str, seed: int = 0, extra=None, **kwargs):
        runner = Runner(config_mod.load(str(config_path)), load_plugins(extra), seed=seed)
        if command == "verify":
            return runner.verify(names)[0]
        return getattr(runner, command)(names, **kwargs)

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

    inkind's own ``user.inkind.*`` xattrs are left out of the comparison.
    """
    cmd = ["rsync", "-naHAXS", "--numeric-ids", "--checksum", "--itemize-changes", "--delete"]
    cmd += ["--filter=-x user.inkind.*", f"{expected}/", f"{actual}/"]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return [line for line in out.decode("utf-8", "backslashreplace").splitlines() if line.strip()]


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
        cmd = [sys.executable, "-m", "inkind", "-q", "-c", str(config), "backup", *names]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            killed = True
        verify = inkind_cli("-c", config, "verify", "--json", *names)
        if not (killed and "not an inkind store" in verify.stderr):  # else killed before the store was made
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
