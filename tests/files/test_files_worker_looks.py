"""The walk's worker looking at entries (engines/tree/handoff.py): a file it
finds settled is counted and scrubbed as the walk's own look would have it,
and anything else is looked at again by the walk, so a run with the worker
does exactly what a run without it does."""

import os
import signal
import subprocess

import pytest
from files_trees import one_core, stats_of, twin_stores, write

from inkind.engines.tree import handoff
from inkind.engines.tree.handoff import CopyWorker, Serving
from inkind.testing import tree_diff

MAIN = os.getpid()


@pytest.fixture
def answers(monkeypatch):
    """How many names the walk asked its worker to look at, and how many it
    found settled."""
    got = {"asked": 0, "settled": 0}
    real = CopyWorker.settled

    def settled(self, reply):
        answer = real(self, reply)
        got["asked"] += len(answer)
        got["settled"] += sum(answer)
        return answer

    monkeypatch.setattr(CopyWorker, "settled", settled)
    return got


def forty(d):
    for f in range(40):
        write(d / f"f{f:02}", f"file {f}")


def change(d):
    """One of each kind of change the worker must leave to the walk, at
    the places it is asked about (every other one: f01, f03, ...)."""
    write(d / "f01", "FILE 1")  # same size
    os.utime(d / "f01", ns=(0, os.stat(d / "f01").st_mtime_ns + 10**9))
    (d / "f03").chmod(0o600)
    if os.geteuid() == 0:
        os.chown(d / "f05", 1234, 1234)
    st = os.stat(d / "f07")
    os.utime(d / "f07", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # mtime only
    (d / "f09").unlink()
    (d / "f09").mkdir()  # a file become a directory
    os.link(d / "f11", d / "hard")  # two links now
    write(d / "f17", "file 17 grown")
    write(d / "g-new", "new")


def test_a_run_with_the_worker_looking_does_what_one_without_does(
    tmp_path, inkind_config, inkind_store, inkind_run, answers, monkeypatch
):
    src = tmp_path / "src"
    for d in ("a", "b"):
        forty(src / d)
    config = twin_stores(inkind_config, inkind_run, src, {"exclude": ["/b/f13"]}, scrub_fraction=1.0)
    change(src / "a")
    for name in ("two", "one"):  # an excluded file that the store holds (put there by hand)
        subprocess.run(["cp", "-a", src / "b" / "f13", inkind_store / name / "b" / "f13"], check=True)
    answers.update(asked=0, settled=0)
    with_worker = inkind_run(config, "backup", "two", verify_after=False)  # (b/f13: see below)
    # Every other entry of a (42 with g-new and hard) and b (the root's two
    # are too few to ask): settled all but a's f01 f03 (f05) f07 f09 f11
    # f17 hard and b's f13.
    assert answers["asked"] == 21 + 20
    assert answers["settled"] == 41 - 8 - 1 + (os.geteuid() != 0)
    one_core(monkeypatch)
    answers.update(asked=0, settled=0)
    alone = inkind_run(config, "backup", "one", verify_after=False)
    assert answers["asked"] == 0
    assert stats_of(with_worker) == stats_of(alone)
    s = stats_of(alone)
    assert s["objects_seen"] == 2 + 42 + 39  # the root's a and b, a's 42 entries, b's 39
    assert s["objects_scrubbed"] > 30  # (settled files too: each is scrubbed)
    for name in ("two", "one"):
        assert tree_diff(src / "a", inkind_store / name / "a") == []
        # Verify reports the hand-made file (not inkind's); without it, clean.
        (v,) = inkind_run(config, "verify", name).results
        assert v.messages == [
            f"corruption: {name}/b: 1 entry too many (holds 40, user.inkind.entries records 39): deleted or added outside inkind (and 1 more)"
        ]
        (inkind_store / name / "b" / "f13").unlink()
        assert inkind_run(config, "backup", name).exit_status == 0


def test_a_no_change_run_has_the_worker_look_at_every_other_entry(setup, inkind_run, answers):
    forty(setup.src)
    inkind_run(setup.config)
    answers.update(asked=0, settled=0)
    (r,) = inkind_run(setup.config).results
    assert answers == {"asked": 20, "settled": 20}
    assert r.stats.objects_seen == r.stats.objects_unchanged == 40
    assert r.stats.bytes_written == r.stats.xattrs_written == r.stats.mtimes_set == 0


def test_no_worker_looks_in_a_full_pass_or_a_stored_directory_made_by_this_run(setup, inkind_run, answers):
    forty(setup.src / "old")
    inkind_run(setup.config)
    forty(setup.src / "new")
    answers.update(asked=0, settled=0)
    inkind_run(setup.config, full=True)
    assert answers["asked"] == 0
    inkind_run(setup.config)
    assert answers == {"asked": 40, "settled": 40}


def test_a_worker_killed_while_it_looks_fails_the_run_and_the_next_completes(setup, inkind_run, monkeypatch):
    forty(setup.src)
    inkind_run(setup.config)
    write(setup.src / "f01", "changed")
    real = Serving.settles

    def settles(self, src, dst, key, name):
        if os.getpid() != MAIN:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, src, dst, key, name)

    monkeypatch.setattr(Serving, "settles", settles)
    report = inkind_run(setup.config, verify_after=False)
    (r,) = report.results
    assert report.exit_status == 2 and r.outcome == "failed"
    assert len(r.messages) == 1 and "ended without an answer" in r.messages[0]
    monkeypatch.undo()
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok" and r.stats.objects_changed == 1
    assert tree_diff(setup.src, setup.data) == []


# After the first window's ask: the next window asked about before each
# window is mirrored.
A_WINDOW_AHEAD = [
    ("ask", "f129"),
    ("mirror", "f000"),
    ("ask", "f257"),
    ("mirror", "f128"),
    ("mirror", "f256"),
]


def three_hundred(d):
    """Three windows: f000-f127, f128-f255, f256-f299."""
    for f in range(300):
        write(d / f"f{f:03}", f"file {f}")


def test_the_worker_looks_at_the_next_window_while_the_walk_mirrors_this_one(
    setup, inkind_run, answers, events
):
    three_hundred(setup.src)
    inkind_run(setup.config)
    answers.update(asked=0, settled=0)
    events.clear()
    (r,) = inkind_run(setup.config).results
    assert events == [("ask", "f001"), *A_WINDOW_AHEAD]
    assert answers == {"asked": 150, "settled": 150}
    assert r.stats.objects_seen == r.stats.objects_unchanged == 300
    assert r.stats.bytes_written == r.stats.xattrs_written == r.stats.mtimes_set == 0


def test_a_window_holding_a_directory_is_mirrored_before_the_next_is_asked_about(
    setup, inkind_run, answers, events
):
    three_hundred(setup.src)
    forty(setup.src / "a-sub")  # (before f000: the first window holds it)
    inkind_run(setup.config)
    answers.update(asked=0, settled=0)
    events.clear()
    (r,) = inkind_run(setup.config).results
    assert events == [
        ("ask", "f000"),
        ("mirror", "a-sub"),
        ("ask", "f01"),  # (a-sub's walk asks and mirrors in between)
        ("mirror", "f00"),
        ("ask", "f128"),
        ("ask", "f256"),
        ("mirror", "f127"),
        ("mirror", "f255"),
    ]
    assert answers == {"asked": 150 + 20, "settled": 150 + 20}
    assert r.stats.objects_unchanged == 341


def test_asked_about_the_next_window_while_a_batch_is_out_the_worker_answers_both_in_order(
    tmp_path, inkind_config, inkind_run, inkind_store, events, monkeypatch
):
    src = tmp_path / "src"
    three_hundred(src)
    config = twin_stores(inkind_config, inkind_run, src)
    for f in range(10):
        write(src / f"f{f:03}", f"file {f} changed")
    events.clear()
    with_worker = inkind_run(config, "backup", "two")
    assert events == [
        ("ask", "f001"),
        ("store", "f001"),  # (f001 f003 ... f009: every other file to store)
        *A_WINDOW_AHEAD,
    ]
    one_core(monkeypatch)
    alone = inkind_run(config, "backup", "one")
    assert stats_of(with_worker) == stats_of(alone)
    s = stats_of(alone)
    assert s["objects_changed"] == 10 and s["objects_unchanged"] == 290
    assert s["bytes_written"] == sum(len(f"file {f} changed") for f in range(10))
    for name in ("two", "one"):
        assert tree_diff(src, inkind_store / name) == []


def test_the_worker_has_the_kernel_read_the_files_it_finds_the_walk_will_read(setup, inkind_run, monkeypatch):
    forty(setup.src)
    inkind_run(setup.config)
    write(setup.src / "f01", "FILE 1")  # same size, a new mtime: read
    os.utime(setup.src / "f01", ns=(0, os.stat(setup.src / "f01").st_mtime_ns + 10**9))
    write(setup.src / "f17", "file 17 grown")  # read
    (setup.src / "f03").chmod(0o600)  # metadata only: not read
    write(setup.src / "f02", "file 2 grown")  # the walk's own half: its own read-ahead
    log = setup.src.parent / "advised"
    real = handoff.advise

    def advise(dir_fd, name, st):
        with open(log, "a") as f:  # (the worker is a process of its own)
            f.write(name + "\n")
        real(dir_fd, name, st)

    monkeypatch.setattr(handoff, "advise", advise)
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok" and tree_diff(setup.src, setup.data) == []
    assert sorted(log.read_text().split()) == ["f01", "f17"]
    assert r.stats.objects_changed == 3  # (f03: its mode set, its content unchanged)
