"""An interrupted backup resumes where it stopped and wraps around."""

import pytest
from files_trees import write

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


def test_interrupted_run_records_the_pointer_and_outcome(setup, inkind_run, monkeypatch):
    for f in range(10):
        write(setup.src / f"f{f}", str(f))
    calls = {"n": 0}
    real_mirror = Walker.mirror

    def mirror(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Interrupted("SIGINT")
        return real_mirror(self, *args, **kwargs)

    monkeypatch.setattr(Walker, "mirror", mirror)
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
