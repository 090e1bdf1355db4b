"""backup --dry-run: log and count what would change, write nothing.

The counts are those of the backup it stands for: ``bytes_written`` is what
that backup would write (nothing is written by the dry run itself)."""

import os

from files_trees import write


def snapshot(root):
    """Everything about a tree that a write could change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[p] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


def test_dry_run_on_a_fresh_store_writes_nothing(setup, inkind_cli):
    write(setup.src / "a" / "f", "x")
    before = snapshot(setup.store)  # what `inkind init` made
    r = inkind_cli("-c", setup.config, "backup", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    s = r.json()["sources"][0]["stats"]
    assert (s["objects_changed"], s["bytes_written"]) == (2, len("x"))
    assert "would create a/f" in r.stderr
    assert snapshot(setup.store) == before
    assert sorted(p.name for p in setup.store.iterdir()) == [".inkind"]  # as init made it


def test_dry_run_lists_changes_and_deletions_and_changes_nothing(setup, inkind_run, inkind_cli):
    write(setup.src / "keep", "k")
    write(setup.src / "edit", "e")
    write(setup.src / "gone", "g")
    inkind_run(setup.config)
    write(setup.src / "edit", "edited")
    write(setup.src / "new" / "file", "n")
    (setup.src / "gone").unlink()
    before = snapshot(setup.store)
    r = inkind_cli("-c", setup.config, "backup", "--dry-run", "--full", "--json")
    assert r.returncode == 0, r.stderr
    assert snapshot(setup.store) == before
    s = r.json()["sources"][0]["stats"]
    assert (s["objects_changed"], s["bytes_written"]) == (3, len("edited") + len("n"))
    for line in ("would update edit", "would create new", "would create new/file", "would delete gone"):
        assert line in r.stderr
    assert "keep" not in r.stderr
