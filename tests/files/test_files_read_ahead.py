"""The walk's read-ahead (engines/tree/prefetch.py): files the kernel was
asked to read ahead are stored exactly as those the walk reads itself, a file that changes
or vanishes around the read-ahead is handled as when the walk reads it, larger
files are asked for within a bound, and nothing it holds outlives the run."""

from __future__ import annotations

import os
import threading
import time

import pytest
from files_trees import open_fds, write

from inkind.engines.tree import prefetch
from inkind.testing import tree_diff


def test_files_read_ahead_are_stored_whole_and_counted(setup, inkind_run, monkeypatch):
    taken = []
    real = prefetch.Prefetcher.take

    def take(self, st):
        got = real(self, st)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(prefetch.Prefetcher, "take", take)
    sizes = [1, 100, 4096, 70_000, prefetch.SMALL, prefetch.SMALL + 1]
    for d in range(3):
        for i, size in enumerate(sizes):
            write(setup.src / f"d{d}" / f"f{i}", os.urandom(size))
    before = open_fds()
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok"
    assert tree_diff(setup.src, setup.data) == []
    assert r.stats.bytes_read == r.stats.bytes_written == 3 * sum(sizes)
    # All but the file over SMALL were read ahead; the run left no fd open.
    assert sum(taken) == 3 * (len(sizes) - 1)
    assert open_fds() <= before


def test_a_limit_too_small_leaves_the_reads_to_the_walk(setup, inkind_run, monkeypatch):
    monkeypatch.setattr(prefetch, "OPEN_MAX", 3)
    for i in range(20):
        write(setup.src / f"f{i}", os.urandom(1000))
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok" and r.stats.objects_changed == 20
    assert tree_diff(setup.src, setup.data) == []


def test_a_sparse_file_is_left_to_the_walk(setup, inkind_run):
    with open(setup.src / "sparse", "wb") as f:
        f.truncate(512 << 10)
        f.seek(100 << 10)
        f.write(b"data")
    st = os.stat(setup.src / "sparse")
    assert not prefetch.wanted(st)  # its blocks do not cover its size
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok" and tree_diff(setup.src, setup.data) == []
    assert os.stat(setup.data / "sparse").st_blocks * 512 < st.st_size  # holes stay holes


def test_a_file_growing_after_the_read_ahead_keeps_its_previous_copy(setup, inkind_run, monkeypatch):
    f = write(setup.src / "grows", b"x" * 1000)
    inkind_run(setup.config)
    write(f, b"y" * 2000)
    real = prefetch._open_ahead

    def read(dir_fd, name, st):
        got = real(dir_fd, name, st)
        with open(f, "ab") as w:
            w.write(b"appended after the read-ahead read it")
        return got

    monkeypatch.setattr(prefetch, "_open_ahead", read)
    report = inkind_run(setup.config)
    assert report.exit_status == 1
    assert any("grows: changed while it was read" in m for m in report.results[0].messages)
    assert (setup.data / "grows").read_bytes() == b"x" * 1000
    monkeypatch.undo()
    assert inkind_run(setup.config).exit_status == 0
    assert tree_diff(setup.src, setup.data) == []


def test_a_file_vanishing_before_the_read_ahead_opens_it(setup, inkind_run, monkeypatch):
    write(setup.src / "a", "old a")
    inkind_run(setup.config)
    write(setup.src / "a", "new a, longer")
    real = prefetch._open_ahead

    def read(dir_fd, name, st):
        os.unlink(name, dir_fd=dir_fd)
        return real(dir_fd, name, st)

    monkeypatch.setattr(prefetch, "_open_ahead", read)
    report = inkind_run(setup.config)
    assert report.exit_status == 1
    assert any("a: vanished" in m for m in report.results[0].messages)
    assert (setup.data / "a").read_text() == "old a"


def test_take_of_a_file_never_queued_is_none(tmp_path):
    write(tmp_path / "f", "x")
    with prefetch.Prefetcher() as p:
        assert p.take(os.stat(tmp_path / "f")) is None


def test_discard_closes_what_was_not_taken(tmp_path):
    names = [f"f{i}" for i in range(10)]
    for n in names:
        write(tmp_path / n, n * 100)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    before = open_fds()
    with prefetch.Prefetcher() as p:
        window = p.queue(fd, [(n, os.stat(n, dir_fd=fd)) for n in names])
        got = p.take(os.stat("f0", dir_fd=fd))
        assert got is not None and got.data == b"f0" * 100
        os.close(got.fd)
        p.discard(window)
    assert open_fds() <= before
    os.close(fd)
    assert (str(fd), str(tmp_path)) in before - open_fds()


def _asked(monkeypatch) -> list[int]:
    """The lengths of the larger files the read-ahead thread is given."""
    lengths = []
    real = prefetch._Advisor.advise

    def advise(self, fd, length):
        lengths.append(length)
        real(self, fd, length)

    monkeypatch.setattr(prefetch._Advisor, "advise", advise)
    return lengths


def _pieces(monkeypatch, wait: threading.Event | None = None) -> list[tuple[int, int]]:
    """The (offset, length) of each advice over part of a file; with
    ``wait``, the first one waits for it to be set."""
    pieces = []
    real = os.posix_fadvise

    def fadvise(fd, offset, length, advice):
        if length:
            if wait is not None and not pieces:
                wait.wait(10)
            pieces.append((offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(prefetch.os, "posix_fadvise", fadvise)
    return pieces


def _advisors() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "inkind-read-ahead"]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_larger_file_is_asked_for_and_stored_as_the_walk_reads_it(setup, inkind_run, monkeypatch):
    asked = _asked(monkeypatch)
    size = 3 * prefetch.SMALL + 5
    write(setup.src / "big", os.urandom(size))
    write(setup.src / "sparse", b"")
    with open(setup.src / "sparse", "r+b") as f:
        f.truncate(3 * prefetch.SMALL)  # all hole: not asked for
    before = open_fds()
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok" and tree_diff(setup.src, setup.data) == []
    assert asked == [size]
    assert r.stats.bytes_read == r.stats.bytes_written == size
    assert open_fds() <= before and _advisors() == []


def test_larger_files_are_asked_for_within_the_bound(tmp_path, monkeypatch):
    asked = _asked(monkeypatch)
    mib = 1 << 20
    monkeypatch.setattr(prefetch, "LARGE_AHEAD", 5 * mib)
    for name in ("a", "b", "c", "d", "e"):
        write(tmp_path / name, os.urandom(3 * mib))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    before = open_fds()

    def files(*names):
        return [(n, os.stat(n, dir_fd=fd)) for n in names]

    pieces = _pieces(monkeypatch)
    with prefetch.Prefetcher() as p:
        first = p.queue(fd, files("a", "b", "c"))
        assert asked == [3 * mib, 2 * mib]  # b only in part, c not: the bound is spent
        assert p.take(os.stat("a", dir_fd=fd)) is None  # the walk reads a itself ...
        p.queue(fd, files("d"))
        assert asked == [3 * mib, 2 * mib, 3 * mib]  # ... which frees a's part of the bound
        assert p.queue(fd, files("e")) is None  # spent again
        p.discard(first)  # b never read: its part is free too
        p.queue(fd, files("e"))
        assert asked[-1] == 2 * mib
        three, two = [(0, 2 * mib), (2 * mib, mib)], [(0, 2 * mib)]  # (prefetch.PIECE: 2 MiB)
        deadline = time.monotonic() + 10
        while len(pieces) < 6 and time.monotonic() < deadline:  # (a stop drops what is left)
            time.sleep(0.01)
    assert pieces == three + two + three + two  # a, b in part, d, e in part
    assert open_fds() <= before and _advisors() == []
    os.close(fd)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_walk_stopped_stops_asking_and_closes_what_it_asked_for(tmp_path, monkeypatch):
    for i in range(5):
        write(tmp_path / f"f{i}", os.urandom(2 * prefetch.SMALL))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    before = open_fds()
    go_on = threading.Event()
    pieces = _pieces(monkeypatch, wait=go_on)
    with prefetch.Prefetcher() as p:
        assert p.queue(fd, [(f"f{i}", os.stat(f"f{i}", dir_fd=fd)) for i in range(5)])
        assert len(_advisors()) == 1
        threading.Timer(0.2, go_on.set).start()  # the first advice returns after the walk stopped
    assert pieces == [(0, prefetch.PIECE)]  # nothing asked after the stop; all five closed
    assert open_fds() <= before and _advisors() == []
    os.close(fd)


def test_no_thread_to_be_had_leaves_the_reads_to_the_walk(setup, inkind_run, monkeypatch):
    def refused(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(prefetch._Advisor, "__init__", refused)
    write(setup.src / "big", os.urandom(3 * prefetch.SMALL))
    before = open_fds()
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok" and tree_diff(setup.src, setup.data) == []
    assert open_fds() <= before
