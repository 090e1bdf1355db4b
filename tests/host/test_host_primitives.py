"""Store primitives: compare first, write atomically, count exactly."""

import fcntl
import os
import subprocess
import sys

import pytest
import xxhash

from inkind import Stats, UpdateFile, XAttrs, discard, set_mtime, update_file, update_image
from inkind.store import files, set_mode, sweep_temps
from inkind.store.dryrun import dry_run
from inkind.store.image import Extent, UpdateImage
from inkind.store.journal import replay_journals
from inkind.store.paths import DIR_FLAGS, open_at


def temps(d):
    return [n for n in os.listdir(d) if n.startswith(".inkind-tmp-")]


def test_update_file_writes_only_when_content_differs(tmp_path):
    p = tmp_path / "f"
    s = Stats()
    assert update_file(p, b"hello", stats=s) is True
    assert (s.bytes_written, s.xattrs_written) == (5, 1)
    ino = p.stat().st_ino
    s = Stats()
    assert update_file(p, b"hello", stats=s) is False
    assert (s.bytes_written, s.xattrs_written) == (0, 0)
    assert p.stat().st_ino == ino
    s = Stats()
    assert update_file(p, b"hello, world", stats=s) is True
    assert s.bytes_written == 12 and p.stat().st_ino != ino
    assert p.read_bytes() == b"hello, world"
    assert XAttrs(p).text("xxh3") is not None


@pytest.mark.parametrize("new", [b"abc", b"abcdef-longer", b"xbcdef", b""])
def test_update_file_prefix_and_length_changes(tmp_path, new):
    p = tmp_path / "f"
    update_file(p, b"abcdef")
    s = Stats()
    with UpdateFile(p, stats=s) as f:
        for i in range(0, len(new), 2):
            f.write(new[i : i + 2])
    assert f.changed and p.read_bytes() == new
    assert s.bytes_written == len(new)
    assert temps(tmp_path) == []


def test_exception_leaves_old_file_and_no_temp(tmp_path):
    p = tmp_path / "f"
    update_file(p, b"old")
    with pytest.raises(RuntimeError), UpdateFile(p) as f:
        f.write(b"new content")
        raise RuntimeError("boom")
    assert p.read_bytes() == b"old" and temps(tmp_path) == []


def test_zero_runs_become_holes_and_before_commit_runs_only_on_replace(tmp_path):
    p = tmp_path / "sparse"
    calls = []
    data = b"x" + bytes(8 << 20) + b"y"
    with UpdateFile(p, before_commit=calls.append) as f:
        for i in range(0, len(data), 1 << 20):
            f.write(data[i : i + (1 << 20)])
    assert p.read_bytes() == data
    # Holes are found per write() call: the first 1 MiB chunk holds "x" and
    # is data; the seven all-zero chunks after it are not allocated.
    assert p.stat().st_blocks * 512 <= (1 << 20) + (64 << 10)
    assert len(calls) == 1
    update_file(p, data, before_commit=calls.append)
    assert len(calls) == 1


def test_missing_checksum_is_added_to_an_equal_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"same")
    s = Stats()
    assert update_file(p, b"same", stats=s) is False
    assert (s.bytes_written, s.xattrs_written) == (0, 1)


def no_checksum(p):
    os.removexattr(p, "user.inkind.xxh3")


def bad_copy(p):
    with open(p, "r+b") as f:
        f.write(b"J")  # (the recorded checksum stays)


@pytest.mark.parametrize(
    ("spoil", "data", "size", "reads", "written"),
    [
        (None, b"HELLO WORLD", 11, [], 11),  # same length, other checksum: not read
        (None, b"hello world", 11, [11], 0),  # same checksum: read, found equal
        (no_checksum, b"hello world", 11, [11], 0),  # none recorded: read
        (bad_copy, b"hello world", 11, [11], 11),  # bad bytes under a good checksum: replaced
        (None, b"hello", 5, [], 5),  # shorter: not read
        (None, b"HELLO WORLD", None, [11], 11),  # no size given: read, as always
        (None, b"HELLO WORLD", 12, [11], 11),  # a wrong size: read
    ],
)
def test_content_of_the_expected_size_is_compared_by_checksum_before_the_stored_copy_is_read(
    store, monkeypatch, spoil, data, size, reads, written
):
    p = store / "src" / "f"
    update_file(p, b"hello world")
    if spoil is not None:
        spoil(p)
    compared = []
    real = files.same_bytes
    monkeypatch.setattr(files, "same_bytes", lambda old, new: compared.append(len(old)) or real(old, new))
    s = Stats()
    with UpdateFile(p, stats=s, size=size) as f:
        f.write(data)
    assert compared == reads
    assert s.bytes_written == written and f.changed == (written > 0)
    assert p.read_bytes() == data
    assert XAttrs(p).text("xxh3") == xxhash.xxh3_128_hexdigest(data)
    assert temps(p.parent) == []


def test_xattrs_equal_value_is_not_written(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x")
    s = Stats()
    x = XAttrs(p, stats=s)
    x["k"] = "v"
    ctime = p.stat().st_ctime_ns
    x["k"] = b"v"
    assert s.xattrs_written == 1 and p.stat().st_ctime_ns == ctime
    assert dict(x) == {"k": b"v"} and x.text("k") == "v"
    del x["k"]
    assert s.xattrs_written == 2 and "k" not in x
    assert x.sync({"a": b"1", "b": b"2"}) == 2 and x.sync({"a": b"1", "b": b"2"}) == 0
    assert x.sync({"a": b"1"}) == 1 and dict(x) == {"a": b"1"}


def test_xattrs_never_follow_symlinks(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError):
        XAttrs(link)["k"] = "v"  # user xattrs cannot sit on a symlink
    assert XAttrs(target).get("k") is None


def test_set_mtime_and_mode_only_when_different(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x")
    s = Stats()
    assert set_mtime(p, 1_000_000_000_123, stats=s) is True
    ctime = p.stat().st_ctime_ns
    assert set_mtime(p, 1_000_000_000_123, stats=s) is False
    assert set_mode(p, 0o640, stats=s) is True and set_mode(p, 0o100640, stats=s) is False
    assert (s.mtimes_set, s.modes_set) == (1, 1)
    assert p.stat().st_mtime_ns == 1_000_000_000_123
    assert p.stat().st_ctime_ns >= ctime
    link = tmp_path / "l"
    link.symlink_to(p)
    set_mtime(link, 5_000_000_000, stats=s)
    assert p.stat().st_mtime_ns == 1_000_000_000_123 and os.lstat(link).st_mtime_ns == 5_000_000_000


def test_sweep_temps_removes_leftovers_only(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "keep").write_bytes(b"k")
    (tmp_path / ".inkind-tmp-0123").write_bytes(b"t")
    (tmp_path / "d" / ".inkind-tmp-4567").mkdir()
    (tmp_path / "escape").symlink_to("/")
    fd = os.open(tmp_path, DIR_FLAGS)
    try:
        assert sweep_temps(fd) == 2
    finally:
        os.close(fd)
    assert sorted(os.listdir(tmp_path)) == ["d", "escape", "keep"]


def _discard_all(root: int, stats: Stats) -> list[bool]:
    return [
        discard(root, "dump.sql", stats),
        discard(root, "db", stats),  # a directory, with all below it
        discard(root, "deep/er/manifest"),  # below the root; derived data: not counted
        discard(root, "dump.sql", stats),  # gone by now
        discard(root, "missing/x", stats),
        discard(root, "link", stats),  # the link itself, never its target
    ]


@pytest.mark.parametrize("dry", [False, True], ids=["real", "dry-run"])
def test_discard_removes_what_is_there_and_counts_stored_objects(tmp_path, dry):
    (tmp_path / "db" / "sub").mkdir(parents=True)
    (tmp_path / "db" / "sub" / "toc.dat").write_bytes(b"t")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "manifest").write_bytes(b"m")
    (tmp_path / "dump.sql").write_bytes(b"d")
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to("target")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    s = Stats()
    root = os.open(tmp_path, DIR_FLAGS)
    try:
        with dry_run(dry):
            assert _discard_all(root, s) == [True, True, True, False, False, True]
    finally:
        os.close(root)
    assert s.objects_deleted == 3
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == (before if dry else ["deep", "deep/er", "target"])


@pytest.fixture
def store(inkind_store):
    """A store on each store filesystem: update_image clones or journals."""
    (inkind_store / "src").mkdir()
    return inkind_store


def test_update_image_new_is_sparse_then_journal_in_place(store):
    size = 16 << 20
    s = Stats()
    mode = update_image(store, "src/disk.img", size, [Extent(4096, 4096, b"a" * 4096)], stats=s)
    img = store / "src" / "disk.img"
    assert mode == "new" and img.stat().st_size == size and img.stat().st_blocks * 512 <= 64 << 10
    ino = img.stat().st_ino
    s = Stats()
    mode = update_image(
        store, "src/disk.img", size, [Extent(8192, 4096, b"b" * 4096), Extent(4096, 4096, None)], stats=s
    )
    data = img.read_bytes()
    assert data[4096:8192] == bytes(4096) and data[8192:12288] == b"b" * 4096
    if mode == "journal":  # ext4 and other filesystems without reflinks
        # In place; 4 KiB of b"b" went into the journal zstd-compressed.
        assert img.stat().st_ino == ino and 0 < s.bytes_journaled < 100
        noise = os.urandom(4096)
        s = Stats()
        update_image(store, "src/disk.img", size, [Extent(0, 4096, noise)], stats=s)
        assert s.bytes_journaled == s.bytes_written == 4096  # incompressible: stored as is
        assert img.read_bytes()[:4096] == noise
    assert s.bytes_written == 4096
    assert XAttrs(img).get("dirty") is None
    assert os.listdir(store / ".inkind" / "journal" / "src") == [] if mode == "journal" else True


def test_update_image_copies_a_hardlinked_image(store):
    update_image(store, "src/disk.img", 1 << 20, [Extent(0, 3, b"old")])
    history = store.parent / "history.img"  # a hard link on the same filesystem
    os.link(store / "src" / "disk.img", history)
    mode = update_image(store, "src/disk.img", 1 << 20, [Extent(0, 3, b"new")])
    assert mode in ("copy", "clone")
    assert history.read_bytes()[:3] == b"old" and (store / "src" / "disk.img").read_bytes()[:3] == b"new"


def test_update_image_grows_and_shrinks(store):
    update_image(store, "src/d.img", 1 << 20, [Extent(0, 1, b"x")])
    update_image(store, "src/d.img", 3 << 20, [Extent((3 << 20) - 1, 1, b"z")])
    assert (store / "src" / "d.img").stat().st_size == 3 << 20
    update_image(store, "src/d.img", 100, [])
    assert (store / "src" / "d.img").read_bytes() == b"x" + bytes(99)


def test_exception_in_update_image_leaves_the_image(store):
    update_image(store, "src/d.img", 8192, [Extent(0, 5, b"first")])
    with pytest.raises(RuntimeError), UpdateImage(store, "src/d.img", 8192) as img:
        img.write(0, b"SECOND")
        raise RuntimeError("boom")
    assert (store / "src" / "d.img").read_bytes()[:5] == b"first"
    assert temps(store / "src") == []


KILL_AFTER_JOURNAL = """
import os, sys
from inkind.store import image, journal
def die(*a, **k):
    os.kill(os.getpid(), 9)
journal.apply_journal = die
image.update_image(sys.argv[1], "src/d.img", 8192, [image.Extent(0, 6, b"second")])
"""


def test_a_journal_left_by_a_killed_run_is_replayed(store):
    mode = update_image(store, "src/d.img", 8192, [Extent(0, 5, b"first")])
    mode = update_image(store, "src/d.img", 8192, [Extent(100, 1, b"!")])
    if mode != "journal":
        pytest.skip("this filesystem clones: no journal")
    r = subprocess.run([sys.executable, "-c", KILL_AFTER_JOURNAL, str(store)])
    assert r.returncode == -9
    assert (store / "src" / "d.img").read_bytes()[:6] == b"first\x00"  # untouched so far
    journals = os.listdir(store / ".inkind" / "journal" / "src")
    assert len(journals) == 1 and journals[0].endswith(".journal")
    s = Stats()
    assert replay_journals(store, "src", s) == 1
    img = store / "src" / "d.img"
    assert img.read_bytes()[:6] == b"second"
    assert XAttrs(img).get("dirty") is None
    from inkind.hashing import hash_bytes

    assert XAttrs(img).text("xxh3") == hash_bytes(img.read_bytes())
    assert os.listdir(store / ".inkind" / "journal" / "src") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as another user (CI runs as root)")
def test_a_read_open_leaves_atime_alone_and_falls_back_on_another_users_file(tmp_path):
    """O_NOATIME is the owner's (and root's): on another user's file it is
    refused with EPERM, and the read is made without it."""
    d = tmp_path / "d"
    d.mkdir(mode=0o755)
    (d / "f").write_text("x")
    (d / "f").chmod(0o644)
    dfd = os.open(d, DIR_FLAGS)
    try:
        fd = open_at(dfd, "f", os.O_RDONLY)
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NOATIME
        os.close(fd)
        os.seteuid(65534)
        try:
            with pytest.raises(PermissionError):
                os.open("f", os.O_RDONLY | os.O_NOATIME, dir_fd=dfd)
            fd = open_at(dfd, "f", os.O_RDONLY)
        finally:
            os.seteuid(0)
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NOATIME
        assert os.read(fd, 2) == b"x"
        os.close(fd)
        fd = open_at(dfd, "f", os.O_WRONLY)  # a write is not a read: no O_NOATIME
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NOATIME
        os.close(fd)
    finally:
        os.close(dfd)
