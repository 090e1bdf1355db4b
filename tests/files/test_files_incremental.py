"""Only changes are read and written, and exactly counted."""

import os

from files_trees import make_awkward_tree, write

from inkind.testing import tree_diff


def stats_of(report):
    (result,) = report.results
    return result.stats


def test_unchanged_source_writes_nothing(setup, assert_second_run_writes_nothing):
    make_awkward_tree(setup.src)
    second = assert_second_run_writes_nothing(setup.config)
    s = stats_of(second)
    assert s.bytes_read == 0 and s.objects_unchanged == s.objects_seen


def test_changed_small_file_costs_exactly_its_bytes(setup, inkind_run):
    write(setup.src / "a.txt", "one")
    write(setup.src / "b.txt", "two")
    # An old directory mtime: the rename below always has one to restore,
    # however fast the runs are (timestamps tick in milliseconds).
    os.utime(setup.src, ns=(1_600_000_000_000_000_000,) * 2)
    inkind_run(setup.config)
    before_b = os.stat(setup.data / "b.txt").st_ino
    write(setup.src / "a.txt", "changed!")
    s = stats_of(inkind_run(setup.config))
    assert (s.objects_changed, s.bytes_read, s.bytes_written) == (1, 8, 8)
    # xxh3 on the new file; mtime and mode set on the temp before the rename;
    # the parent directory's mtime is restored after the rename touched it.
    assert s.xattrs_written == 1
    assert s.mtimes_set == 2
    assert os.stat(setup.data / "b.txt").st_ino == before_b
    assert tree_diff(setup.src, setup.data) == []


def test_touch_sets_one_mtime_and_writes_no_byte(setup, inkind_run):
    write(setup.src / "a.txt", "same content")
    inkind_run(setup.config)
    ino = os.stat(setup.data / "a.txt").st_ino
    os.utime(setup.src / "a.txt", ns=(5, 1_600_000_000_000_000_001))
    s = stats_of(inkind_run(setup.config))
    assert (s.bytes_written, s.xattrs_written, s.mtimes_set, s.objects_changed) == (0, 0, 1, 0)
    assert s.bytes_read == len("same content")
    assert os.stat(setup.data / "a.txt").st_ino == ino


def test_chmod_sets_one_mode(setup, inkind_run):
    write(setup.src / "a.txt", "x")
    inkind_run(setup.config)
    os.chmod(setup.src / "a.txt", 0o600)
    s = stats_of(inkind_run(setup.config))
    assert (s.bytes_read, s.bytes_written, s.modes_set, s.mtimes_set) == (0, 0, 1, 0)


def _rchar() -> int:
    """Bytes this process has read (/proc/self/io), page cache included."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def test_large_file_rewrites_only_changed_blocks(setup, inkind_run):
    big = setup.src / "big.bin"
    with open(big, "wb") as f:
        for _ in range(80):
            f.write(os.urandom(1 << 20))
    inkind_run(setup.config)
    ino = os.stat(setup.data / "big.bin").st_ino
    with open(big, "r+b") as f:  # two scattered 4 KiB writes, one at the end
        f.seek(10 << 20)
        f.write(os.urandom(4096))
        f.seek((80 << 20) - 4096)
        f.write(os.urandom(4096))
    rchar = _rchar()
    s = stats_of(inkind_run(setup.config, verify_after=False))
    read_back = _rchar() - rchar - (80 << 20)  # beyond the source: the stored copy
    assert inkind_run(setup.config, "verify").exit_status == 0
    assert s.objects_changed == 1
    assert s.bytes_written == 2 * 4096  # the two 4 KiB pieces, not 80 MiB
    assert s.bytes_read == 80 << 20
    # The block digests (user.inkind.blocks) name the two changed 4 MiB
    # blocks: only those are read back from the store, not 80 MiB.
    assert read_back < 3 * (4 << 20), read_back
    assert (setup.data / "big.bin").read_bytes() == big.read_bytes()
    # On a filesystem without reflinks the update went through a journal,
    # in place; with reflinks, through a clone (a new inode).
    if s.bytes_journaled:
        assert s.bytes_journaled == s.bytes_written
        assert os.stat(setup.data / "big.bin").st_ino == ino


def test_large_file_growing_and_shrinking(setup, inkind_run):
    big = setup.src / "big.bin"
    data = os.urandom(70 << 20)
    big.write_bytes(data)
    inkind_run(setup.config)
    with open(big, "ab") as f:
        f.write(b"tail" * 1000)
    inkind_run(setup.config)
    assert (setup.data / "big.bin").read_bytes() == big.read_bytes()
    big.write_bytes(data[: 65 << 20])
    inkind_run(setup.config)
    assert (setup.data / "big.bin").read_bytes() == data[: 65 << 20]
    assert tree_diff(setup.src, setup.data) == []


def test_type_changes_are_followed(setup, inkind_run):
    write(setup.src / "x" / "inner.txt", "dir first")
    os.symlink("target", setup.src / "y")
    write(setup.src / "z", "file first")
    inkind_run(setup.config)
    (setup.src / "x" / "inner.txt").unlink()
    (setup.src / "x").rmdir()
    write(setup.src / "x", "now a file")
    (setup.src / "y").unlink()
    (setup.src / "y").mkdir()
    (setup.src / "z").unlink()
    os.symlink("elsewhere", setup.src / "z")
    inkind_run(setup.config)
    assert tree_diff(setup.src, setup.data) == []


def test_hard_link_broken_in_source_is_broken_in_store(setup, inkind_run):
    write(setup.src / "a", "shared")
    os.link(setup.src / "a", setup.src / "b")
    inkind_run(setup.config)
    (setup.src / "b").unlink()
    write(setup.src / "b", "shared")
    os.utime(setup.src / "b", ns=(1, os.stat(setup.src / "a").st_mtime_ns))
    inkind_run(setup.config, full=True)
    assert tree_diff(setup.src, setup.data) == []


def test_block_digests_that_do_not_describe_the_stored_file_are_not_trusted(setup, inkind_run):
    """A stale user.inkind.blocks (its content hash is not the file's) is
    ignored: the stored copy is read back and compared, and the digests
    are written anew."""
    import xattr

    big = setup.src / "big.bin"
    big.write_bytes(os.urandom(70 << 20))
    inkind_run(setup.config)
    stored = setup.data / "big.bin"
    value = xattr.get(stored, "user.inkind.blocks")
    assert len(value) == 16 + 18 * 16  # the content hash, then 18 blocks of 4 MiB
    assert value[:16].hex() == xattr.get(stored, "user.inkind.xxh3").decode()
    stale = bytes(16) + value[16:]
    xattr.set(stored, "user.inkind.blocks", stale)
    with open(big, "r+b") as f:
        f.seek(5 << 20)
        f.write(os.urandom(4096))
    rchar = _rchar()
    s = stats_of(inkind_run(setup.config, verify_after=False))
    assert _rchar() - rchar >= 2 * (70 << 20)  # source and stored copy, whole
    assert inkind_run(setup.config, "verify").exit_status == 0
    assert s.bytes_written == 4096  # the one changed 4 KiB piece
    assert stored.read_bytes() == big.read_bytes()
    fresh = xattr.get(stored, "user.inkind.blocks")
    assert fresh[:16].hex() == xattr.get(stored, "user.inkind.xxh3").decode() and fresh != stale
