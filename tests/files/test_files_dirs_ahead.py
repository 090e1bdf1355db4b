"""Directories opened ahead (engines/tree/ahead.py): the walk opens and
lists the next directory of a window, and has its worker look at its first
window, before it enters the one before; a run that does so stores, counts
and reports exactly what a run without the worker does, and leaves nothing
open, however it ends."""

import os
import shutil

from files_trees import interrupt_at_mirror, one_core, open_fds, stats_of, write

from inkind.engines.tree import ahead
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
    config = inkind_config({name: {"type": "files", "path": src} for name in ("two", "one")})
    inkind_run(config, "backup", "two")
    inkind_run(config, "backup", "one")
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

    def take(self, key):
        most["opened"] = max(most["opened"], len(self.opened))
        return real_take(self, key)

    monkeypatch.setattr(ahead.DirsAhead, "take", take)
    src = tmp_path / "src"
    nested(src, 3)
    config = inkind_config({name: {"type": "files", "path": src} for name in ("two", "one")})
    inkind_run(config, "backup", "two")
    inkind_run(config, "backup", "one")
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
    write(setup.src / "b" / "b01", "B FILE 1")  # (its size is the same: the mtime tells)
    os.utime(setup.src / "b" / "b01", ns=(0, 10**18))
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
