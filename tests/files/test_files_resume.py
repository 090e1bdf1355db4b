"""An interrupted backup resumes where it stopped and wraps around."""

import contextlib

import pytest
from files_trees import interrupt_at_mirror, write

from inkind.engines.tree import walker
from inkind.engines.tree.bounds import Bounds
from inkind.engines.tree.walker import Walker
from inkind.runner import Interrupted
from inkind.testing import tree_diff


def test_bounds_place_keys_in_walk_order():
    b = Bounds(lo=(b"b", b"m"))
    assert b.place((b"a",)) == "skip"
    assert b.place((b"b",)) == "enter"
    assert b.place((b"b", b"m")) == "skip"
    assert b.place((b"b", b"z")) == "do"
    assert b.place((b"c",)) == "do"
    h = Bounds(hi=(b"b", b"m"))
    assert h.place((b"a",)) == "do"
    assert h.place((b"b",)) == "enter"
    assert h.place((b"b", b"m")) == "skip"
    assert h.place((b"c",)) == "stop"


def test_repeated_interruptions_still_cover_the_whole_tree(setup, inkind_run, monkeypatch):
    # The walk alone, so that the budget below counts every entry: files
    # handed to the walk's worker are not mirrored by the walk, and how many
    # of an interrupted run's batch it stored depends on timing (the worker
    # and the pointer are tested together in test_files_handoff.py).
    monkeypatch.setattr(walker, "walk_worker", lambda *args: contextlib.nullcontext())
    for d in range(5):
        for f in range(8):
            write(setup.src / f"d{d}" / f"f{f}.txt", f"{d}/{f}")
    budget = {"left": 0}
    real_mirror = Walker.mirror

    def mirror(self, *args, **kwargs):
        if budget["left"] == 0:
            raise Interrupted("SIGTERM")
        budget["left"] -= 1
        return real_mirror(self, *args, **kwargs)

    monkeypatch.setattr(Walker, "mirror", mirror)

    def missing():
        # The root's own mtime is set when a run completes; ignore it here.
        if not setup.data.exists():
            return True
        return [line for line in tree_diff(setup.src, setup.data) if not line.endswith(" ./")]

    runs = 0
    while missing():
        budget["left"] = 7
        (r,) = inkind_run(setup.config).results
        assert r.outcome == "interrupted"
        runs += 1
        assert runs <= 9, "each run must advance, not start over"
    # 45 entries (5 dirs + 40 files), 7 per run, some spent re-entering
    # the directory the pointer is in: every entry was covered in few runs.
    assert runs >= 6
    budget["left"] = 10_000
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok" and r.stats.objects_changed == 0
    assert tree_diff(setup.src, setup.data) == []


def test_interrupted_run_records_the_pointer_and_outcome(setup, inkind_run, monkeypatch, one_core):
    for f in range(10):
        write(setup.src / f"f{f}", str(f))
    interrupt_at_mirror(monkeypatch, 4)
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "interrupted"
    import json

    state = json.loads((setup.store / ".inkind" / "sources" / "home.json").read_text())
    assert state["resume"] == "f2"
    assert state["last_backup"]["outcome"] == "interrupted"
    assert "running" not in state


@pytest.mark.parametrize("pointer", ["f5", "zz-not-there", "a/b/c"])
def test_resume_from_any_pointer_covers_everything(setup, inkind_run, pointer):
    for f in range(10):
        write(setup.src / f"f{f}", str(f))
    from inkind.state import SourceState

    (setup.store / ".inkind" / "sources").mkdir(parents=True, exist_ok=True)
    state = SourceState(setup.store / ".inkind" / "sources" / "home.json", {"resume": pointer})
    state.save()
    (r,) = inkind_run(setup.config).results
    # The pointer names the last entry a run completed: it is not redone.
    assert r.outcome == "ok" and r.stats.objects_changed == (9 if pointer == "f5" else 10)
    inkind_run(setup.config)
    assert tree_diff(setup.src, setup.data) == []


def test_a_recorded_pointer_never_runs_ahead_of_a_finished_syncfs(setup, inkind_run, monkeypatch):
    """The walk goes on while a checkpoint's syncfs runs on its thread; the
    pointer is recorded only after a syncfs that started once the entry it
    names was done."""
    import threading
    import time as time_mod

    from inkind.engines.tree import checkpoint, walker
    from inkind.engines.tree.entry import key_text
    from inkind.state import SourceState

    for d in range(8):
        for f in range(300):  # every 256 entries the walk asks for a checkpoint
            write(setup.src / f"d{d}" / f"f{f:03}", "x")
    events: list[tuple[str, str | None, float]] = []
    lock = threading.Lock()

    def log(kind, what=None):
        with lock:
            events.append((kind, what, time_mod.monotonic()))

    real_sync = checkpoint.sync_store

    def sync_store(fd):
        log("sync-start")
        time_mod.sleep(0.02)  # a slow disk: the walk goes on meanwhile
        real_sync(fd)
        log("sync-end")

    real_done = Walker._done

    def done(self, key):
        log("done", key_text(key))  # before a checkpoint for it can start
        time_mod.sleep(0.0002)  # a walk of 256 entries outlasts a syncfs, even on a fast machine
        real_done(self, key)

    real_resume = SourceState.set_resume

    def set_resume(self, pointer, *, force=False):
        log("resume", pointer)
        real_resume(self, pointer, force=force)

    monkeypatch.setattr(checkpoint, "sync_store", sync_store)
    monkeypatch.setattr(walker, "SAVE_EVERY", 0.0)
    monkeypatch.setattr(Walker, "_done", done)
    monkeypatch.setattr(SourceState, "set_resume", set_resume)
    (r,) = inkind_run(setup.config).results
    assert r.outcome == "ok"
    recorded = [(p, t) for kind, p, t in events if kind == "resume" and p is not None]
    assert recorded, "the walk recorded no pointer on the way"
    for pointer, at in recorded:
        done_at = next(t for kind, p, t in events if kind == "done" and p == pointer)
        starts = [t for kind, _, t in events if kind == "sync-start" and done_at <= t]
        ends = [t for kind, _, t in events if kind == "sync-end" and t <= at]
        assert any(s <= e for s in starts for e in ends), f"{pointer} recorded before a syncfs covered it"
    # And the walk did not wait for the syncfs: entries were done while one ran.
    spans = [
        (t, next(e for k, _, e in events if k == "sync-end" and e >= t))
        for k, _, t in events
        if k == "sync-start"
    ]
    assert any(s < t < e for k, _, t in events if k == "done" for s, e in spans)
