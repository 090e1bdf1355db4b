"""A run over an unchanged source rewrites no stored inode, not even for an
atime: on btrfs with snapshots every inode rewritten costs a metadata leaf
that the previous snapshot keeps (issue 21: 15 MiB a run for a 1% scrub of
54,000 files). Under relatime, the default, the first read of a stored
entry after inkind set its mtime would record an atime: scrub's and
verify's reads, listings and readlinks must not."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from files_trees import make_awkward_tree

Times = tuple[int, int, int]
LISTING = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOATIME

# What a run records in .inkind/: its state and its report, renamed into
# their directories (whose mtime and ctime change with it).
RUN_RECORD = [".inkind", ".inkind/last-run.json", ".inkind/sources", ".inkind/sources/home.json"]


def inode_times(root: Path) -> dict[str, Times]:
    """(atime, ctime, mtime) of every entry below ``root``, listed through
    O_NOATIME descriptors so that looking changes nothing."""
    found: dict[str, Times] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        fd = os.open(os.path.join(root, rel) if rel else root, LISTING)
        try:
            for name in os.listdir(fd):  # through fd's open file description
                path = os.path.join(rel, name)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                found[path] = (st.st_atime_ns, st.st_ctime_ns, st.st_mtime_ns)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
        finally:
            os.close(fd)
    return found


def test_a_no_change_run_scrubbing_everything_rewrites_no_stored_inode(setup, inkind_config, inkind_run):
    make_awkward_tree(setup.src)
    for i in range(4):
        os.symlink(f"target-{i}", setup.src / f"link-{i}")
    cfg = inkind_config({"home": {"type": "files", "path": setup.src}}, scrub_fraction=1.0)
    # Not verified here: its verify would be the first read of each stored
    # file, and the run below must show that its own reads record nothing.
    assert inkind_run(cfg, seed=1, verify_after=False).exit_status == 0
    before = inode_times(setup.store)
    second = inkind_run(cfg, seed=2)  # scrubs every file, then verify reads them all
    (result,) = second.results
    assert second.exit_status == 0 and result.stats.objects_scrubbed >= 8
    after = inode_times(setup.store)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert changed == RUN_RECORD
    # The store's filesystem does record reads: a plain one changes the atime.
    stored = setup.data / "plain.txt"
    stored.read_bytes()
    assert os.stat(stored).st_atime_ns != before["home/plain.txt"][0]


def test_a_full_pass_reads_a_stored_symlink_the_quick_check_trusts(setup, inkind_run):
    """An incremental run takes a stored symlink of the source's length and
    mtime as unchanged, as it takes a regular file; a full pass compares
    the targets and puts the source's back."""
    os.symlink("target-a", setup.src / "link")
    inkind_run(setup.config)
    stored = setup.data / "link"
    st = os.lstat(stored)
    os.unlink(stored)
    os.symlink("target-b", stored)  # changed in the store, same length and mtime
    os.utime(stored, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    inkind_run(setup.config, seed=1)
    assert os.readlink(stored) == "target-b"
    inkind_run(setup.config, seed=2, full=True)
    assert os.readlink(stored) == "target-a"
