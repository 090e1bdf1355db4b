"""The cache warmer (engines/tree/warm.py, warmwalk.py): guided by the store,
it lstats what both trees hold and nothing else, never writes to the store
(not even an atime), follows no link, and ends with the walk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from files_trees import write

from inkind.engines.tree import warm, warmwalk

DIR = os.O_RDONLY | os.O_DIRECTORY


def _paths(*roots):
    """Every entry below the roots (listed once, before the times are read:
    a listing itself may update a directory's atime)."""
    return [os.path.join(d, n) for root in roots for d, dirs, files in os.walk(root) for n in dirs + files]


def _times(paths):
    return {p: (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns) for p in paths for st in [os.lstat(p)]}


def _backed_up(setup, inkind_config, inkind_run):
    write(setup.src / "a" / "b" / "file", "x")
    write(setup.src / "a" / "other", "y")
    write(setup.src / "skipped" / "inside", "z")
    os.symlink(setup.src / "a", setup.src / "link-to-a")
    cfg = inkind_config({"home": {"type": "files", "path": setup.src, "exclude": ["skipped/"]}})
    (r,) = inkind_run(cfg).results
    assert r.outcome == "ok"
    return cfg


def _last_walk(setup, inkind_config, inkind_run) -> tuple[Path, int]:
    """The backed-up tree's config and the entries its walk counted (what
    the next walk compares with warm.WARM_FROM)."""
    cfg = _backed_up(setup, inkind_config, inkind_run)
    (r,) = inkind_run(cfg).results
    return cfg, r.stats.objects_seen


def _warmed(setup, monkeypatch, threads: int) -> list[tuple[str, bytes]]:
    """What warmwalk.main on ``threads`` threads lstats: (side, name)."""
    seen: list[tuple[str, bytes]] = []
    real = os.stat
    sides = {}

    def stat(name, *, dir_fd=None, follow_symlinks=True):
        assert not follow_symlinks
        st = os.fstat(dir_fd)
        seen.append((sides.get((st.st_dev, st.st_ino), "?"), os.fsencode(name)))
        return real(name, dir_fd=dir_fd, follow_symlinks=False)

    src, dst = os.open(setup.src, DIR), os.open(setup.data, DIR)
    try:
        for side, root in (("src", setup.src), ("store", setup.data)):
            for d, _, _ in os.walk(root):
                st = os.stat(d)
                sides[(st.st_dev, st.st_ino)] = side
        monkeypatch.setattr(warmwalk.os, "stat", stat)
        warmwalk.main(src, dst, threads)
    finally:
        os.close(src)
        os.close(dst)
    monkeypatch.setattr(warmwalk.os, "stat", real)
    return seen


# Each stored name, in the store then in the source: a directory's names,
# then its subdirectories in walk order. The excluded directory is not in
# the store, the link is not entered.
ORDER = [b"a", b"link-to-a", b"b", b"other", b"file"]


def test_the_warmer_visits_what_the_store_holds_in_both_trees(setup, inkind_config, inkind_run, monkeypatch):
    _backed_up(setup, inkind_config, inkind_run)
    assert _warmed(setup, monkeypatch, 1) == [(side, name) for name in ORDER for side in ("store", "src")]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_threads_share_the_tree_and_close_what_they_open(setup, inkind_config, inkind_run, monkeypatch):
    _backed_up(setup, inkind_config, inkind_run)
    write(setup.src / "a" / "c" / "d" / "deep", "d")
    write(setup.data / "a" / "c" / "d" / "deep", "d")
    before = _open_fds()
    monkeypatch.setattr(warmwalk, "FRONTIER", 1)  # one waits; a thread goes down into the rest itself
    seen = _warmed(setup, monkeypatch, 3)
    expected = [*ORDER, b"c", b"d", b"deep"]
    assert sorted(seen) == sorted((side, name) for name in expected for side in ("store", "src"))
    assert _open_fds() == before


def test_warm_caches_end_every_thread_and_close_what_waits(setup, inkind_config, inkind_run, monkeypatch):
    _backed_up(setup, inkind_config, inkind_run)
    monkeypatch.setattr(warmwalk, "BATCH", 1)
    monkeypatch.setattr(warmwalk, "WARM_RUNS", 1)
    monkeypatch.setattr(warmwalk, "EACH", 60.0)  # every entry counts as read from memory
    before = _open_fds()
    seen = _warmed(setup, monkeypatch, 2)
    assert len(seen) <= 2 * 2  # the first entry stops the walk (each thread may have lstatted one)
    assert _open_fds() == before


def test_the_warmer_writes_nothing_not_even_an_atime(setup, inkind_config, inkind_run):
    _backed_up(setup, inkind_config, inkind_run)
    paths = _paths(setup.data, setup.src)
    dirs = [p for p in paths if os.path.isdir(p) and not os.path.islink(p)]
    for d in dirs:  # atimes older than mtimes: under relatime a listing updates them
        st = os.stat(d)
        os.utime(d, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    before = _times(paths)
    src, dst = os.open(setup.src, DIR), os.open(setup.data, DIR)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", warm.WALK, str(src), str(dst)], pass_fds=(src, dst)
        )
    finally:
        os.close(src)
        os.close(dst)
    assert done.returncode == 0
    assert _times(paths) == before
    os.listdir(dirs[0])  # (a plain listing does update it: the check above could fail)
    assert _times(paths)[dirs[0]][0] != before[dirs[0]][0]


def _warmers() -> list[str]:
    """This test's warmers still running (its own children: another xdist
    worker's tests start warmers of their own)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if b"warmwalk.py" in cmd and ppid == os.getpid():
            found.append(pid)
    return found


def test_a_backup_with_a_previous_one_starts_a_warmer_that_ends_with_it(
    setup, inkind_config, inkind_run, monkeypatch
):
    cfg, seen = _last_walk(setup, inkind_config, inkind_run)
    started = []
    real = warm.CacheWarmer.__enter__

    def enter(self):
        got = real(self)
        started.append(self._proc is not None)
        return got

    monkeypatch.setattr(warm.CacheWarmer, "__enter__", enter)
    monkeypatch.setattr(warm.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(warm, "WARM_FROM", seen)
    write(setup.src / "a" / "new", "n")
    (r,) = inkind_run(cfg).results
    assert r.outcome == "ok" and r.stats.objects_changed == 1
    assert started == [True]
    assert _warmers() == []


def test_a_tree_smaller_than_a_warmer_pays_for_is_walked_without_one(
    setup, inkind_config, inkind_run, monkeypatch
):
    cfg, seen = _last_walk(setup, inkind_config, inkind_run)
    made = []
    monkeypatch.setattr(warm, "CacheWarmer", lambda *fds: made.append(fds))
    monkeypatch.setattr(warm, "WARM_FROM", seen + 1)
    write(setup.src / "a" / "new", "n")
    (r,) = inkind_run(cfg).results
    assert r.outcome == "ok" and r.stats.objects_changed == 1
    assert made == []


def _ticks(monkeypatch, seconds_each: list[float]) -> int:
    """Entries the warmer's clock counts before it stops, each entry taking
    the next of ``seconds_each``; 0: it never stops."""
    now = [0.0]
    monkeypatch.setattr(warmwalk.time, "perf_counter", lambda: now[0])
    clock = warmwalk.Clock()
    for each in seconds_each:
        now[0] += each
        try:
            clock.tick()
        except warmwalk.Warm:
            return clock.count
    return 0


def test_the_warmer_stops_once_it_finds_the_caches_warm(monkeypatch):
    batch = warmwalk.BATCH
    from_memory, from_disk = 2e-6, 80e-6
    assert _ticks(monkeypatch, [from_memory] * 10 * batch) == warmwalk.WARM_RUNS * batch
    assert _ticks(monkeypatch, [from_disk] * 10 * batch) == 0
    # A batch read from the disk starts the count again.
    runs = [from_memory] * 3 * batch + [from_disk] * batch + [from_memory] * 10 * batch
    assert _ticks(monkeypatch, runs) == (4 + warmwalk.WARM_RUNS) * batch
