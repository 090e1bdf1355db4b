"""Directories opened ahead (engines/tree/ahead.py): the walk opens and
lists the next directory of a window, and has its worker look at its first
window, before it enters the one before; a run that does so stores, counts
and reports exactly what a run without the worker does, and leaves nothing
open, however it ends."""

import os
import shutil
import signal
import socket

from files_trees import interrupt_at_mirror, one_core, open_fds, stats_of, twin_stores, write

from inkind.engines.tree import ahead, handoff
from inkind.engines.tree.handoff import CopyWorker
from inkind.engines.tree.walker import Walker
from inkind.testing import tree_diff


def three_dirs(src):
    """a/, b/ and c/, 40 files each, named after their directory."""
    for d in "abc":
        for f in range(40):
            write(src / d / f"{d}{f:02}", f"{d} file {f}")


def test_the_worker_looks_at_the_next_directory_while_the_walk_mirrors_this_one(setup, inkind_run, events):
    three_dirs(setup.src)
    inkind_run(setup.config)
    events.clear()
    (r,) = inkind_run(setup.config).results
    assert events == [
        ("mirror", "a"),  # (the root's three entries: too few to ask about)
        ("ask", "a01"),
        ("ask", "b01"),  # before a's window is mirrored
        ("mirror", "a00"),
        ("ask", "c01"),
        ("mirror", "b00"),
        ("mirror", "c00"),
    ]
    assert r.stats.objects_seen == r.stats.objects_unchanged == 123
    assert r.stats.bytes_written == r.stats.xattrs_written == r.stats.mtimes_set == 0


def test_a_batch_handed_off_while_the_next_directory_is_asked_about_is_answered_in_order(
    tmp_path, inkind_config, inkind_run, inkind_store, events, monkeypatch
):
    src = tmp_path / "src"
    three_dirs(src)
    config = twin_stores(inkind_config, inkind_run, src)
    for f in range(10):
        write(src / "b" / f"b{f:02}", f"b file {f} changed")
    write(src / "c" / "c-new", "new")  # (first in c: its odd entries start at c00)
    events.clear()
    with_worker = inkind_run(config, "backup", "two")
    # b's batch goes out after c was asked about: the walk reads c's answer
    # first and keeps it for c.
    assert events[4:7] == [("ask", "c00"), ("store", "b01"), ("mirror", "b00")]
    one_core(monkeypatch)
    alone = inkind_run(config, "backup", "one")
    assert stats_of(with_worker) == stats_of(alone)
    s = stats_of(alone)
    assert s["objects_changed"] == 10 + 1  # (b's ten, c-new)
    assert s["bytes_written"] == sum(len(f"b file {f} changed") for f in range(10)) + 3
    for name in ("two", "one"):
        assert tree_diff(src, inkind_store / name) == []


def nested(root, depth):
    """Three subdirectories and ten files in each directory, ``depth`` levels."""
    for f in range(10):
        write(root / f"f{f}", f"{root.name} {f}")
    if depth:
        for d in range(3):
            nested(root / f"d{d}", depth - 1)


def test_no_more_directories_wait_opened_than_the_limit(
    tmp_path, inkind_config, inkind_run, inkind_store, monkeypatch
):
    monkeypatch.setattr(ahead, "OPEN_MAX", 2)
    most = {"opened": 0}
    real_take = ahead.DirsAhead.take

    def take(self, e):
        most["opened"] = max(most["opened"], len(self.opened))
        return real_take(self, e)

    monkeypatch.setattr(ahead.DirsAhead, "take", take)
    src = tmp_path / "src"
    nested(src, 3)
    config = twin_stores(inkind_config, inkind_run, src)
    write(src / "d1" / "d2" / "f3", "changed")
    before = open_fds()
    with_worker = inkind_run(config, "backup", "two")
    assert most["opened"] == 2
    assert open_fds() <= before
    one_core(monkeypatch)
    alone = inkind_run(config, "backup", "one")
    assert stats_of(with_worker) == stats_of(alone)
    assert stats_of(alone)["objects_changed"] == 1
    for name in ("two", "one"):
        assert tree_diff(src, inkind_store / name) == []


def test_an_interrupted_walk_closes_what_it_opened_ahead_and_the_next_run_completes(
    setup, inkind_run, monkeypatch
):
    three_dirs(setup.src)
    inkind_run(setup.config)
    for d in "abc":
        write(setup.src / d / "new", "new")
    interrupt_at_mirror(monkeypatch, 2)  # (a's first entry: b is open by then)
    before = open_fds()
    report = inkind_run(setup.config, verify_after=False)
    assert report.exit_status != 0
    assert open_fds() <= before
    monkeypatch.undo()
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok"
    assert tree_diff(setup.src, setup.data) == []


def in_a(setup, monkeypatch, change):
    """``change`` made while the walk is in a (b is open ahead by then)."""
    real = Walker._mirror_window

    def mirror_window(self, looks, bounds, present):
        if looks[0].name == "a00":
            change()
        return real(self, looks, bounds, present)

    monkeypatch.setattr(Walker, "_mirror_window", mirror_window)


def test_a_directory_removed_after_it_was_opened_ahead_is_reported_as_without_a_worker(
    setup, inkind_run, monkeypatch
):
    monkeypatch.setattr(ahead, "FRESH_FOR", 60.0)
    three_dirs(setup.src)
    inkind_run(setup.config)
    in_a(setup, monkeypatch, lambda: shutil.rmtree(setup.src / "b"))
    (r,) = inkind_run(setup.config, verify_after=False).results
    assert r.messages == ["b: changed type or vanished during the backup"]
    assert r.stats.objects_skipped == 1
    assert r.stats.objects_seen == 3 + 40 + 40  # (none of b's)
    monkeypatch.undo()
    (r,) = inkind_run(setup.config, full=True).results
    assert r.outcome == "ok"
    assert tree_diff(setup.src, setup.data) == []


def test_a_directory_replaced_after_it_was_opened_ahead_is_not_walked_under_its_old_name(
    setup, inkind_run, monkeypatch
):
    monkeypatch.setattr(ahead, "FRESH_FOR", 60.0)
    three_dirs(setup.src)
    inkind_run(setup.config)
    write(setup.src / "b" / "b01", "B FILE 1")

    def replace():
        (setup.src / "b").rename(setup.src / "b.old")
        write(setup.src / "b", "now a file")

    in_a(setup, monkeypatch, replace)
    (r,) = inkind_run(setup.config, verify_after=False).results
    assert r.messages == ["b: changed type or vanished during the backup"]
    assert r.stats.objects_changed == 0  # (b.old's b01 is not stored as b/b01)
    assert (setup.data / "b" / "b01").read_text() == "b file 1"
    monkeypatch.undo()
    (r,) = inkind_run(setup.config, full=True).results
    assert r.outcome == "ok"
    assert tree_diff(setup.src, setup.data) == []


def chain(root, depth):
    """Directories of a few entries each, nested ``depth`` deep, each with
    a sibling of 40 files: every level leaves one directory asked about
    ahead while the walk goes down."""
    for f in range(40):
        write(root / "b-files" / f"f{f:02}", f"{f}")
    if depth:
        chain(root / "a-deeper", depth - 1)  # (walked first: b-files waits, asked about)


def test_the_walk_reads_answers_before_the_worker_could_block_on_them(setup, inkind_run, monkeypatch):
    monkeypatch.setattr(ahead, "FRESH_FOR", 60.0)
    unread = {"most": 0}
    real_request = CopyWorker._request

    def request(self, message, fds, size):
        got = real_request(self, message, fds, size)
        unread["most"] = max(unread["most"], len(self.replies))
        return got

    monkeypatch.setattr(CopyWorker, "_request", request)
    real_pair = socket.socketpair

    def small_buffers(*args):
        pair = real_pair(*args)
        for s in pair:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return pair

    monkeypatch.setattr(socket, "socketpair", small_buffers)
    chain(setup.src, 30)
    inkind_run(setup.config)

    def stuck(signum, frame):
        raise TimeoutError("the walk and its worker wait for each other")

    signal.signal(signal.SIGALRM, stuck)
    signal.alarm(60)
    try:
        (r,) = inkind_run(setup.config).results
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert r.outcome == "ok" and r.stats.objects_unchanged == r.stats.objects_seen == 31 * 41 + 30
    assert unread["most"] == handoff.UNREAD


def test_a_directory_that_vanishes_before_it_is_opened_ahead_is_reported_by_the_walk(
    setup, inkind_run, monkeypatch
):
    three_dirs(setup.src)
    inkind_run(setup.config)
    real = ahead.DirsAhead.entering

    def entering(self, looks, i):
        if looks[i].name == "a":
            shutil.rmtree(setup.src / "b")
        return real(self, looks, i)

    monkeypatch.setattr(ahead.DirsAhead, "entering", entering)
    (r,) = inkind_run(setup.config, verify_after=False).results
    assert r.messages == ["b: changed type or vanished during the backup"]
    assert r.stats.objects_skipped == 1
    monkeypatch.undo()
    (r,) = inkind_run(setup.config, full=True).results  # (b's stored copy goes in a full pass)
    assert r.outcome == "ok"
    assert tree_diff(setup.src, setup.data) == []


def test_a_directory_opened_too_long_before_its_turn_is_opened_and_looked_at_again(
    setup, inkind_run, events, monkeypatch
):
    monkeypatch.setattr(ahead, "FRESH_FOR", -1.0)  # (each one: too long ago)
    three_dirs(setup.src)
    inkind_run(setup.config)

    def change():  # (after the worker looked at b: its own size, a new mtime)
        write(setup.src / "b" / "b01", "B FILE 1")
        os.utime(setup.src / "b" / "b01", ns=(0, 10**18))

    in_a(setup, monkeypatch, change)
    events.clear()
    before = open_fds()
    (r,) = inkind_run(setup.config).results
    assert events == [
        ("mirror", "a"),
        ("ask", "a01"),
        ("ask", "b01"),
        ("ask", "a01"),  # (a again: its walk opened it anew)
        ("mirror", "a00"),
        ("ask", "c01"),
        ("ask", "b01"),
        ("mirror", "b00"),
        ("ask", "c01"),
        ("mirror", "c00"),
    ]
    assert open_fds() <= before
    assert r.stats.objects_changed == 1 and r.stats.objects_unchanged == 122
    assert tree_diff(setup.src, setup.data) == []
