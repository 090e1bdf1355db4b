"""Full passes delete; incremental runs do not; excludes and caches."""

import os
import subprocess

from files_trees import IS_ROOT, write

from inkind.testing import tree_diff


def only(report):
    (result,) = report.results
    return result


def test_deletions_reach_the_store_only_in_a_full_pass(setup, inkind_run):
    write(setup.src / "keep.txt", "k")
    write(setup.src / "gone.txt", "g")
    write(setup.src / "olddir" / "f", "f")
    inkind_run(setup.config)
    (setup.src / "gone.txt").unlink()
    (setup.src / "olddir" / "f").unlink()
    (setup.src / "olddir").rmdir()
    r = only(inkind_run(setup.config))
    assert not r.full and r.stats.objects_deleted == 0
    assert (setup.data / "gone.txt").exists()
    r = only(inkind_run(setup.config, full=True))
    assert r.full and r.stats.objects_deleted == 2
    assert not (setup.data / "gone.txt").exists() and not (setup.data / "olddir").exists()
    assert tree_diff(setup.src, setup.data) == []


def test_full_pass_rechecks_xattrs(setup, inkind_run):
    f = write(setup.src / "f", "x")
    inkind_run(setup.config)
    os.setxattr(f, "user.added", b"later")  # mtime does not change
    assert only(inkind_run(setup.config)).stats.xattrs_written == 0
    r = only(inkind_run(setup.config, full=True))
    assert r.stats.xattrs_written == 1
    assert os.getxattr(setup.data / "f", "user.added") == b"later"
    # A second full pass over the unchanged tree writes nothing.
    s = only(inkind_run(setup.config, full=True)).stats
    assert (s.bytes_written, s.xattrs_written, s.mtimes_set, s.modes_set) == (0, 0, 0, 0)


def test_a_directory_an_interrupted_walk_left_unfinished_gets_its_xattrs(setup, inkind_run):
    d = write(setup.src / "d" / "f", "x").parent
    os.setxattr(d, "user.dir", b"on the directory")
    inkind_run(setup.config)
    # What a walk killed inside d leaves: d made, its xattrs and mtime
    # still to come (they are set when the walk leaves it).
    stored = setup.data / "d"
    os.removexattr(stored, "user.dir")
    os.utime(stored, ns=(0, 0))
    r = only(inkind_run(setup.config))
    assert not r.full and r.stats.xattrs_written == 1 and r.stats.mtimes_set == 1
    assert tree_diff(setup.src, setup.data) == []


def test_full_pass_is_drawn_from_the_seeded_rng(tmp_path, inkind_config, inkind_run):
    src = tmp_path / "s"
    write(src / "f", "x")
    cfg = inkind_config({"home": {"type": "files", "path": src}}, full_probability=0.5)
    draws = [only(inkind_run(cfg, seed=seed)).full for seed in range(12)]
    again = [only(inkind_run(cfg, seed=seed)).full for seed in range(12)]
    assert draws == again
    assert any(draws) and not all(draws)


def test_excludes_use_gitignore_patterns(tmp_path, inkind_config, inkind_store, inkind_run):
    src = tmp_path / "s"
    for p in ("a/.cache/x", "a/keep.txt", "b/build/out.o", "c.log", "d/c.log", "e/important.log"):
        write(src / p, p)
    cfg = inkind_config(
        {
            "home": {
                "type": "files",
                "path": src,
                "exclude": ["**/.cache", "build/", "*.log", "!important.log"],
            }
        }
    )
    inkind_run(cfg)
    data = inkind_store / "home"
    stored = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())
    assert stored == ["a/keep.txt", "e/important.log"]


def test_newly_excluded_files_leave_the_store_on_the_forced_full_pass(
    tmp_path, inkind_config, inkind_store, inkind_run
):
    src = tmp_path / "s"
    write(src / "x.tmp", "t")
    write(src / "y.txt", "y")
    cfg = inkind_config({"home": {"type": "files", "path": src}})
    inkind_run(cfg)
    cfg = inkind_config({"home": {"type": "files", "path": src, "exclude": ["*.tmp"]}})
    r = only(inkind_run(cfg))
    assert r.full, "a changed configuration forces a full pass"
    assert not (inkind_store / "home" / "x.tmp").exists()
    assert (inkind_store / "home" / "y.txt").exists()


def test_cachedir_tag_directories_are_skipped(setup, inkind_run):
    write(setup.src / "cache" / "CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55\n# comment")
    write(setup.src / "cache" / "blob", "cached")
    write(setup.src / "fake" / "CACHEDIR.TAG", "Signature: not the right one")
    write(setup.src / "fake" / "blob", "kept")
    inkind_run(setup.config)
    assert not (setup.data / "cache").exists()
    assert (setup.data / "fake" / "blob").read_text() == "kept"


def test_one_file_system_stops_at_mount_points(setup, inkind_run):
    if not IS_ROOT:
        import pytest

        pytest.skip("mounting a tmpfs needs root")
    mnt = setup.src / "mnt"
    mnt.mkdir()
    write(setup.src / "top.txt", "t")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], check=True)
    try:
        write(mnt / "other-fs.txt", "not backed up")
        inkind_run(setup.config)
        assert (setup.data / "mnt").is_dir()
        assert list((setup.data / "mnt").iterdir()) == []
        assert (setup.data / "top.txt").exists()
    finally:
        subprocess.run(["umount", mnt], check=True)
