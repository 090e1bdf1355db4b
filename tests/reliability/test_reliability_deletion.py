"""Deleted objects are all found, by verify (the store alone) and by scrub
--fraction 1, each named, exit 2; the next backup puts them back."""

import json
import os
import random
import shutil

import pytest
from harness import inkind, stored_files

from inkind.testing import tree_diff


def remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


# (what is deleted, the name verify gives, the name scrub gives)
CASES = {
    "a stored file": ("home/d1/f5", "home/d1", "home/d1/f5"),
    "a stored subdirectory": ("home/d2/sub0", "home/d2", "home/d2/sub0"),
    "a top-level directory": ("home/d3", "home", "home/d3"),
    "an image": ("vm/disk.img", "vm/disk.img", "vm/disk.img"),
    "a block manifest": (
        ".inkind/manifests/vm/disk.img.manifest",
        ".inkind/manifests/vm/disk.img.manifest",
        ".inkind/manifests/vm/disk.img.manifest",
    ),
    "a sqlite copy": ("app/app.db", "app/app.db", "app/app.db"),
    "a source state file": (
        ".inkind/sources/home.json",
        ".inkind/sources/home.json",
        ".inkind/sources/home.json",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_deleted_object_is_found_named_and_put_back(store_of_three, case):
    cfg, store, src = store_of_three
    victim, by_verify, by_scrub = CASES[case]
    assert (store / victim).exists()
    remove(store / victim)
    v = inkind("-c", cfg, "verify", "--json")
    assert v.returncode == 2, v.stdout + v.stderr
    errors = [f for f in json.loads(v.stdout)["findings"] if not f["recoverable"]]
    assert [f["object"] for f in errors] == [by_verify], errors
    s = inkind("-c", cfg, "scrub", "--fraction", "1")
    assert s.returncode == 2, s.stderr
    assert by_scrub in s.stderr
    # The next backup puts it back (scrub already did for files), and the
    # store is sound again.
    b = inkind("-c", cfg, "backup")
    assert b.returncode == 0, b.stderr
    assert (store / victim).exists()
    v = inkind("-c", cfg, "verify")
    assert v.returncode == 0, v.stdout
    assert tree_diff(src, store / "home") == []


def test_every_deletion_at_once_is_found(store_of_three):
    cfg, store, _ = store_of_three
    rng = random.Random(11)
    files = sorted(stored_files(store / "home"))
    victims = [f"home/{rel}" for rel in rng.sample(files, 5)]
    for v in victims:
        (store / v).unlink()
    remove(store / "vm" / "disk.img")
    remove(store / "app" / "app.db")
    v = inkind("-c", cfg, "verify", "--json")
    assert v.returncode == 2
    named = {f["object"] for f in json.loads(v.stdout)["findings"] if not f["recoverable"]}
    assert {x.rpartition("/")[0] for x in victims} <= named
    assert {"vm/disk.img", "app/app.db"} <= named
    s = inkind("-c", cfg, "scrub", "--fraction", "1")
    assert s.returncode == 2
    missed = [x for x in [*victims, "vm/disk.img", "app/app.db"] if x not in s.stderr]
    assert missed == [], f"scrub missed {missed}"


def test_a_backup_without_its_state_file_rebuilds_it(store_of_three):
    cfg, store, _ = store_of_three
    state = store / ".inkind" / "sources" / "home.json"
    state.unlink()
    r = inkind("-c", cfg, "backup", "home", "--json")
    assert r.returncode == 1, r.stderr
    assert "state file missing" in r.stderr
    assert json.loads(state.read_text())["type"] == "files"
    assert inkind("-c", cfg, "verify").returncode == 0
    assert inkind("-c", cfg, "backup").returncode == 0


def test_verify_after_a_kill_mid_walk_reports_only_recoverable(store_of_three, inkind_kill_and_check):
    """The store as a killed run leaves it: new entries stored, their
    directory's record not yet written, the running marker left."""
    cfg, store, src = store_of_three
    mid_walk = 0
    for n, delay in enumerate((0.35, 0.5, 0.65)):
        for i in range(4000):  # work for each kill to interrupt
            p = src / f"new{n}-{i % 30}" / f"g{i}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(os.urandom(2000))
        check = inkind_kill_and_check(cfg, delay=delay)
        findings = json.loads(check.verify.stdout)["findings"]
        mid_walk += any("user.inkind.entries" in f["message"] for f in findings)
        assert check.rerun.returncode == 0
        assert tree_diff(src, store / "home") == []
    print(f"{mid_walk} of 3 kills left a directory mid-walk")  # 3 of 3 on the 2-core reference host
