"""Scrub: corruption is found and named; silent source changes repaired."""

import os

import pytest
from files_trees import write

from inkind.engines.tree import scrubber
from inkind.engines.tree.scrubber import Scrubber
from inkind.testing import flip_byte, tree_diff


def test_scrub_finds_every_corrupt_file_and_names_it(setup, inkind_run, inkind_cli):
    for i in range(20):
        write(setup.src / f"d{i % 3}" / f"f{i}", f"content {i}" * 50)
    inkind_run(setup.config)
    bad = ["d0/f0", "d1/f7", "d2/f14"]
    for p in bad:
        flip_byte(setup.data / p, 5)
    # verify (the store alone) names them...
    v = inkind_cli("-c", setup.config, "verify")
    assert v.returncode == 2
    for p in bad:
        assert f"home/{p}" in v.stdout
    # ...and so does scrub, which also rebuilds them from the source.
    r = inkind_cli("-c", setup.config, "scrub", "--fraction", "1")
    assert r.returncode == 2
    for p in bad:
        assert f"home/{p}" in r.stderr
    # The scrub rebuilt them from the source: the store is whole again.
    assert inkind_cli("-c", setup.config, "verify").returncode == 0
    assert tree_diff(setup.src, setup.data) == []


def test_scrub_repairs_a_silent_source_change(setup, inkind_run, inkind_cli):
    f = write(setup.src / "f", "original")
    inkind_run(setup.config)
    st = os.stat(f)
    f.write_text("ORIGINAL")  # same size, mtime put back: a quick check misses it
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert inkind_run(setup.config).results[0].stats.objects_changed == 0
    r = inkind_cli("-c", setup.config, "scrub", "--fraction", "1", "--json")
    assert r.returncode == 0, r.stderr
    s = r.json()["sources"][0]["stats"]
    assert (s["objects_scrubbed"], s["objects_repaired"]) == (1, 1)
    assert (setup.data / "f").read_text() == "ORIGINAL"


def test_backup_scrubs_its_sample_and_fails_on_corruption(setup, inkind_run):
    for i in range(10):
        write(setup.src / f"f{i}", f"x{i}")
    inkind_run(setup.config)
    flip_byte(setup.data / "f3")
    report = inkind_run(setup.config, scrub_fraction=1.0)
    (r,) = report.results
    assert report.exit_status == 2 and r.outcome == "failed"
    assert r.stats.objects_scrubbed == 10
    assert any("home/f3" in m for m in r.messages)


@pytest.mark.parametrize("command", ["scrub", "backup"])
def test_scrub_sample_follows_the_seed(setup, inkind_run, command):
    for i in range(200):
        write(setup.src / f"d{i % 2}" / f"f{i:03}", "x")
    inkind_run(setup.config)
    option = {"fraction": 0.1} if command == "scrub" else {"scrub_fraction": 0.1}
    counts = [
        inkind_run(setup.config, command, seed=s, **option).results[0].stats.objects_scrubbed
        for s in (7, 7, 8, 9)
    ]
    assert counts[0] == counts[1]
    assert len(set(counts)) > 1 and all(5 <= n <= 40 for n in counts)


def test_a_backup_has_the_kernel_read_both_copies_of_its_window_sample_before_it_scrubs(
    setup, inkind_run, monkeypatch
):
    for i in range(60):
        write(setup.src / f"f{i:02}", f"file {i}")
    write(setup.src / "changed", "old")
    inkind_run(setup.config)
    write(setup.src / "changed", "new content")
    (setup.src / "f07").chmod(0o600)  # metadata only: its content is kept, so it may be scrubbed
    events = []
    real_fadvise, real_file = os.posix_fadvise, Scrubber.file

    def fadvise(fd, offset, length, advice):
        real_fadvise(fd, offset, length, advice)  # (a failure is not an advice given)
        if advice == os.POSIX_FADV_WILLNEED:
            events.append(("advised", os.path.realpath(f"/proc/self/fd/{fd}")))

    def file(self, src, dst, name, key):
        events.append(("scrub", name))
        real_file(self, src, dst, name, key)

    monkeypatch.setattr(scrubber.os, "posix_fadvise", fadvise)
    monkeypatch.setattr(Scrubber, "file", file)
    (r,) = inkind_run(setup.config, scrub_fraction=1.0).results
    assert r.outcome == "ok" and r.stats.objects_scrubbed == 60
    scrubbed = [e[1] for e in events if e[0] == "scrub"]
    assert sorted(scrubbed) == [f"f{i:02}" for i in range(60)]  # (not the changed one, stored anew)
    # One window: every file of its sample, on both sides, advised before the first is hashed.
    first = events.index(("scrub", scrubbed[0]))
    advised = {path for what, path in events[:first] if what == "advised"}
    for name in scrubbed:
        assert {os.path.realpath(setup.src / name), os.path.realpath(setup.data / name)} <= advised, name


def test_the_first_name_of_a_hard_linked_file_is_scrubbed(setup, inkind_run):
    write(setup.src / "a", "linked")
    os.link(setup.src / "a", setup.src / "b")
    for i in range(20):
        write(setup.src / f"f{i:02}", f"file {i}")
    inkind_run(setup.config)
    (r,) = inkind_run(setup.config, scrub_fraction=1.0).results
    # a and the 20; b is a second name of a's stored copy, checked with it.
    assert (r.outcome, r.stats.objects_scrubbed, r.stats.objects_changed) == ("ok", 21, 0)


def test_a_file_gone_before_its_scrub_is_read_ahead_is_skipped_by_the_scrub(setup, inkind_run, monkeypatch):
    for i in range(20):
        write(setup.src / f"f{i:02}", f"file {i}")
    inkind_run(setup.config)
    real = Scrubber.read_ahead

    def read_ahead(self, src, dst, name):
        if name == "f05":
            os.unlink(name, dir_fd=src)
        real(self, src, dst, name)

    monkeypatch.setattr(Scrubber, "read_ahead", read_ahead)
    (r,) = inkind_run(setup.config, scrub_fraction=1.0).results
    assert r.outcome == "ok" and r.stats.objects_scrubbed == 20
    assert (setup.data / "f05").read_text() == "file 5"  # (the next run's walk removes it)
