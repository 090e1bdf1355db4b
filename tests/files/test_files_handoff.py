"""The walk's worker process (engines/tree/handoff.py): files it stores are
stored, counted and reported exactly as the walk's own, and whatever
happens to it leaves the store sound and the next run complete."""

import errno
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from files_trees import interrupt_at_mirror, one_core, stats_of, write

from inkind.engines.tree.copier import Copier
from inkind.engines.tree.handoff import CopyWorker
from inkind.errors import SourceWarning
from inkind.testing import start_inkind, tree_diff

MAIN = os.getpid()


@pytest.fixture
def batches(monkeypatch):
    """How many files the walk handed to its worker."""
    handed = {"files": 0}
    real = CopyWorker.send

    def send(self, src, dst, entries):
        handed["files"] += len(entries)
        return real(self, src, dst, entries)

    monkeypatch.setattr(CopyWorker, "send", send)
    return handed


def tree(root, dirs=3, files=30):
    """Directories of small files, with subdirectories (one amid the files
    handed off), a hard link and a symlink among them (the walk keeps
    those)."""
    for d in range(dirs):
        for f in range(files):
            write(root / f"d{d}" / f"f{f:02}", os.urandom(f * 97))
        write(root / f"d{d}" / "m-sub" / "inner", f"inner {d}")
        write(root / f"d{d}" / "f10-dir" / "inner", f"amid the files {d}")  # walked mid-window
    os.link(root / "d0" / "f01", root / "d0" / "hard")
    os.symlink("f02", root / "d1" / "link")


def in_worker() -> bool:
    return os.getpid() != MAIN


def test_the_worker_stores_and_counts_as_the_walk_does(
    tmp_path, inkind_store, inkind_config, inkind_run, batches, monkeypatch
):
    src = tmp_path / "src"
    tree(src)
    config = inkind_config({"two": {"type": "files", "path": src}, "one": {"type": "files", "path": src}})
    with_worker = inkind_run(config, "backup", "two")
    # Every other file of each directory, the hard link's two names aside: 14 + 15 + 15.
    assert batches["files"] == 44
    one_core(monkeypatch)
    batches["files"] = 0
    alone = inkind_run(config, "backup", "one")
    assert batches["files"] == 0
    assert stats_of(with_worker) == stats_of(alone)
    assert (
        stats_of(alone)["objects_changed"] == 3 * 35 + 2
    )  # each directory, its files and subdirectory; hard, link
    assert tree_diff(src, inkind_store / "two") == []
    assert tree_diff(src, inkind_store / "one") == []


def files(root, n=30):
    for f in range(n):
        write(root / f"f{f:02}", f"file {f}")


def test_a_warning_in_the_worker_is_the_walks_and_keeps_the_previous_copy(
    setup, inkind_run, batches, monkeypatch
):
    files(setup.src)
    inkind_run(setup.config)
    for f in range(30):
        write(setup.src / f"f{f:02}", f"new {f}")
    real = Copier.copy

    def copy(self, e):
        if e.name == "f03":
            assert in_worker()  # (every other file to store is handed off: f01, f03, ...)
            raise SourceWarning("f03: vanished during the backup")
        return real(self, e)

    monkeypatch.setattr(Copier, "copy", copy)
    batches["files"] = 0
    report = inkind_run(setup.config)
    (r,) = report.results
    assert report.exit_status == 1 and r.outcome == "warnings"
    assert r.messages == ["f03: vanished during the backup"]
    assert r.stats.objects_skipped == 1 and r.stats.objects_changed == 29
    assert (setup.data / "f03").read_text() == "file 3"
    assert (setup.data / "f04").read_text() == "new 4"
    assert batches["files"] == 15


@pytest.mark.parametrize("fault", ["no space", "killed"])
def test_a_failing_worker_fails_the_run_and_the_next_run_completes(setup, inkind_run, monkeypatch, fault):
    files(setup.src / "a")
    files(setup.src / "b")
    inkind_run(setup.config)
    for f in range(30):
        write(setup.src / "b" / f"f{f:02}", f"new {f}")
    real = Copier.copy

    def copy(self, e):
        if in_worker() and e.name == "f05":
            if fault == "killed":
                os.kill(os.getpid(), signal.SIGKILL)  # (the OOM killer, say)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, e)

    monkeypatch.setattr(Copier, "copy", copy)
    report = inkind_run(setup.config, verify_after=False)
    (r,) = report.results
    assert report.exit_status == 2 and r.outcome == "failed"
    expect = "ended without an answer" if fault == "killed" else "No space left on device"
    assert len(r.messages) == 1 and expect in r.messages[0]
    monkeypatch.undo()
    (r,) = inkind_run(setup.config).results  # (verified clean after it)
    assert r.outcome == "ok"
    assert tree_diff(setup.src, setup.data) == []


def test_an_interrupted_walk_keeps_its_pointer_before_what_the_worker_has_not_returned(
    setup, inkind_run, monkeypatch
):
    for f in range(10):
        write(setup.src / f"f{f}", str(f))
    interrupt_at_mirror(monkeypatch, 4)  # f0, f2, f4 stored by the walk, f6 next; f1, f3... handed off
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "interrupted"
    state = json.loads((setup.store / ".inkind" / "sources" / "home.json").read_text())
    assert state["resume"] == "f0"  # f1's outcome never came back: nothing after f0 is passed
    monkeypatch.undo()
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok"
    assert tree_diff(setup.src, setup.data) == []


def test_a_dry_run_has_no_worker(setup, inkind_run, batches):
    files(setup.src)
    (r,) = inkind_run(setup.config, dry_run=True).results
    assert r.stats.objects_changed == 30 and batches["files"] == 0
    assert not setup.data.exists() or list(setup.data.iterdir()) == []


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_dies_with_a_killed_walk(setup, inkind_run):
    for d in range(40):
        files(setup.src / f"d{d:02}", n=100)
    run = start_inkind("-q", "-c", setup.config, "backup")
    deadline = time.monotonic() + 20
    while not (worker := children(run.pid)) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert worker, "the walk forked no worker"
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 5
    while alive(worker[0]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(worker[0]), "the worker went on after the walk was killed"
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok"
    assert tree_diff(setup.src, setup.data) == []


def test_a_worker_gone_before_the_walk_sends_it_more_fails_the_run_with_one_line(
    setup, inkind_run, monkeypatch
):
    files(setup.src / "a")
    files(setup.src / "b")
    inkind_run(setup.config)
    real = CopyWorker._request

    def request(self, message, fds, size):
        if message[0] == "look" and message[1][0] == (b"b",):  # (b's ask: the worker is gone by then)
            os.kill(self.pid, signal.SIGKILL)
            while Path(f"/proc/{self.pid}/stat").read_text().split(") ")[1][0] != "Z":  # (dead, not reaped)
                time.sleep(0.01)
        return real(self, message, fds, size)

    monkeypatch.setattr(CopyWorker, "_request", request)
    report = inkind_run(setup.config, verify_after=False)
    (r,) = report.results
    assert report.exit_status == 2 and r.outcome == "failed"
    (message,) = r.messages
    assert re.fullmatch(r"the walk's worker process \d+ ended without an answer \(killed\?\)", message)
    monkeypatch.undo()
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok" and r.stats.objects_unchanged == 62
