"""The reliability harness: run the real ``inkind`` and attack it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from inkind.store.xattrs import XAttrs
from inkind.testing import CliResult, run_inkind, start_inkind, verify_clean


def inkind(*args, timeout: float = 300) -> CliResult:
    """The real ``inkind``; a finished backup is verified clean after it."""
    return run_inkind(*args, timeout=timeout)


def backup_killed_at(config: Path, delay: float) -> int | None:
    """Start ``inkind backup`` and SIGKILL it after ``delay`` seconds.
    Returns its exit status when it finished before the kill, else None."""
    p = start_inkind("-q", "-c", config, "backup")
    try:
        return p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return None


def timed_backup(config: Path, env: dict[str, str] | None = None) -> float:
    """A backup's own time (the verify after it not counted): the span
    that kill moments are drawn from."""
    start = time.monotonic()
    r = run_inkind("-c", config, "backup", env=env, verify_after=False)
    took = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    verify_clean(config)
    return took


def stored_files(root: Path) -> dict[str, Path]:
    """Regular files below ``root`` by relative path, temps left out."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(".inkind-tmp-"):
                continue
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = p
    return out


def pending_journal(store: Path, source: str) -> bool:
    d = store / ".inkind" / "journal" / source
    return d.is_dir() and any(p.name.endswith(".journal") for p in d.iterdir())


@dataclass
class KillReport:
    """What a series of kills found: every count is part of docs/reliability.md."""

    kills: int = 0  # runs killed before they finished
    finished: int = 0  # runs that finished before their kill time
    mid_journal: int = 0  # kills that left an image mid-journal (recoverable)
    leftovers: int = 0  # kills that left temps or journals for the next run
    lost: list[str] = field(default_factory=list)  # objects neither old nor new

    def as_dict(self) -> dict:
        return self.__dict__


def check_old_or_new(
    data: Path, old: dict[str, bytes], new: dict[str, bytes], store: Path, source: str, report: KillReport
) -> None:
    """Every stored object is whole: its old content or its new one, or (an
    image updated in place) it carries the dirty mark and its journal waits."""
    for rel, path in stored_files(data).items():
        content = path.read_bytes()
        if content == new.get(rel) or content == old.get(rel):
            continue
        if XAttrs(path).get("dirty") is not None and pending_journal(store, source):
            report.mid_journal += 1
            continue
        report.lost.append(rel)


def verify_is_recoverable(config: Path) -> bool:
    """``inkind verify`` after a kill: 0 (sound) or 1 (recoverable), never 2."""
    r = inkind("-c", config, "verify", "--json")
    data = json.loads(r.stdout)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert all(f["recoverable"] for f in data["findings"]), data["findings"]
    return r.returncode == 1


def delays(rng: random.Random, n: int, longest: float) -> list[float]:
    """Kill moments spread over a run (from startup to past its end)."""
    return [rng.uniform(0.1, longest * 0.95) for _ in range(n)]
