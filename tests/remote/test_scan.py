"""``scan`` through a Channel to a real remote side (local pipes): the tree
as os.lstat sees it, names as bytes, xattrs, holes, the exclude patterns
as pathspec matches them."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pathspec
import pytest
from remote_helpers import HOST

from inkind.remote.channel import RemoteOSError
from inkind.remote.listing import gitignore_rules
from inkind.testing import needs_root

CACHEDIR_TAG = b"Signature: 8a477f597d28d172789f06886806bc55\n"


def local_walk(root: bytes, key: tuple[bytes, ...] = ()) -> list[tuple[tuple[bytes, ...], os.stat_result]]:
    """What the scan must give: depth-first, names sorted as bytes."""
    path = os.path.join(root, *key) if key else root
    st = os.lstat(path)
    out = [(key, st)]
    if stat.S_ISDIR(st.st_mode):
        for name in sorted(os.listdir(path)):
            out += local_walk(root, (*key, name))
    return out


def xattrs(path: bytes) -> dict[bytes, bytes]:
    return {
        os.fsencode(n): os.getxattr(path, n, follow_symlinks=False)
        for n in os.listxattr(path, follow_symlinks=False)
    }


def awkward_tree(src: Path) -> None:
    (src / "d" / "e").mkdir(parents=True)
    (src / "a").write_bytes(b"hello")
    (src / "d" / "e" / "deep").write_bytes(b"x" * 5000)
    os.symlink("a", src / "link")
    os.symlink("/nowhere/at/all", src / "dangling")
    os.mkfifo(src / "fifo")
    with open(src / "holes", "wb") as f:
        f.truncate(10 << 20)
        f.seek(5 << 20)
        f.write(b"data in the middle")
    raw = os.fsencode(src)
    for name in (b"caf\xe9", b"\xff\xfe-not-utf8", b"n" * 255, b"with\nnewline", b"-", b"Z", b"a b"):
        with open(raw + b"/" + name, "wb") as f:
            f.write(name)
    os.setxattr(src / "a", "user.inkind-test", b"\x00\xffbinary")
    os.setxattr(src / "d", "user.dir", b"on a directory")
    os.setxattr(src, "user.root", b"on the root")
    os.link(src / "a", src / "d" / "hardlink")


def test_scan_gives_the_tree_as_lstat_sees_it(channel, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    awkward_tree(src)
    root = os.fsencode(src)
    got = list(channel.scan(root))
    want = local_walk(root)
    assert [e.key for e in got] == [k for k, _ in want]
    for e, (key, st) in zip(got, want, strict=True):
        path = os.path.join(root, *key) if key else root
        assert e.error is None and not e.other_fs
        for field in (
            "mode",
            "uid",
            "gid",
            "size",
            "mtime_ns",
            "ctime_ns",
            "ino",
            "dev",
            "nlink",
            "rdev",
            "blocks",
        ):
            assert getattr(e.stat, f"st_{field}") == getattr(st, f"st_{field}"), (key, field)
        assert e.xattrs == xattrs(path), key
        assert e.target == (os.readlink(path) if stat.S_ISLNK(st.st_mode) else None)
    by_key = {e.key: e for e in got}
    assert by_key[(b"a",)].xattrs[b"user.inkind-test"] == b"\x00\xffbinary"
    assert by_key[()].xattrs[b"user.root"] == b"on the root"
    assert by_key[(b"link",)].target == b"a"
    assert stat.S_ISFIFO(by_key[(b"fifo",)].stat.st_mode)
    assert by_key[(b"holes",)].stat.st_blocks * 512 < 1 << 20  # sparse, as on the host
    assert (b"caf\xe9",) in by_key and (b"n" * 255,) in by_key
    assert by_key[(b"d", b"hardlink")].stat.st_ino == by_key[(b"a",)].stat.st_ino
    assert channel.stats.bytes_received > 0


def test_a_missing_root_is_one_error_naming_host_and_path(channel, tmp_path):
    with pytest.raises(
        RemoteOSError, match=f"^host {HOST}: {tmp_path}/nope: No such file or directory$"
    ) as e:
        list(channel.scan(os.fsencode(tmp_path / "nope")))
    assert e.value.errno == 2
    assert [e.key for e in channel.scan(os.fsencode(tmp_path))] == [()]  # the channel goes on


def test_a_big_tree_streams_in_many_frames(channel, tmp_path):
    for d in range(20):
        sub = tmp_path / f"dir{d:02}"
        sub.mkdir()
        for f in range(300):
            (sub / f"file-with-a-longer-name-{f:04}").write_bytes(b"")
    before = channel.stats.bytes_received
    keys = [e.key for e in channel.scan(os.fsencode(tmp_path))]
    assert len(keys) == 1 + 20 + 20 * 300
    assert keys == sorted(keys)
    assert (
        channel.stats.bytes_received - before < 6000 * 30
    )  # compressed: well under the 100 bytes an entry packs to


PATTERNS = ["*.log", "!keep.log", "build/", "/top-only", "deep/**/x", "*.tmp", "!important.tmp", "cache*/"]


def test_excludes_match_as_pathspec_matches(channel, tmp_path):
    for rel in (
        "a.log",
        "keep.log",
        "sub/b.log",
        "sub/keep.log",
        "build/out",
        "sub/build/out",
        "build.txt",
        "top-only",
        "sub/top-only",
        "deep/1/2/x",
        "deep/x",
        "deep/y",
        "z.tmp",
        "important.tmp",
        "cachedir/f",
        "cache.txt",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    spec = pathspec.GitIgnoreSpec.from_lines(PATTERNS)
    want: list[tuple[bytes, ...]] = []
    left_out: list[tuple[bytes, ...]] = []
    for key, st in local_walk(os.fsencode(tmp_path)):
        text = os.fsdecode(b"/".join(key))
        if any(key[: len(k)] == k for k in left_out):
            continue  # below an excluded directory: never looked at
        if key and spec.match_file(text + "/" if stat.S_ISDIR(st.st_mode) else text):
            left_out.append(key)
            continue
        want.append(key)
    got = [e.key for e in channel.scan(os.fsencode(tmp_path), exclude=gitignore_rules(PATTERNS))]
    assert got == want
    assert (b"keep.log",) in got and (b"a.log",) not in got and (b"build",) not in got
    assert (b"sub", b"top-only") in got and (b"top-only",) not in got


def test_cache_directories_are_left_out(channel, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "CACHEDIR.TAG").write_bytes(CACHEDIR_TAG)
    (tmp_path / "cache" / "blob").write_bytes(b"x")
    (tmp_path / "notcache").mkdir()
    (tmp_path / "notcache" / "CACHEDIR.TAG").write_bytes(b"no signature")
    keys = [e.key for e in channel.scan(os.fsencode(tmp_path))]
    assert keys == [(), (b"notcache",), (b"notcache", b"CACHEDIR.TAG")]
    kept = [e.key for e in channel.scan(os.fsencode(tmp_path), exclude_caches=False)]
    assert (b"cache", b"blob") in kept


@pytest.mark.root
@needs_root
def test_other_filesystems_are_listed_not_entered(channel, tmp_path):
    (tmp_path / "mnt").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp_path / "mnt")], check=True)
    try:
        (tmp_path / "mnt" / "inside").write_bytes(b"x")
        got = {e.key: e for e in channel.scan(os.fsencode(tmp_path))}
        assert got[(b"mnt",)].other_fs and (b"mnt", b"inside") not in got
        assert (b"mnt", b"inside") in {
            e.key for e in channel.scan(os.fsencode(tmp_path), one_file_system=False)
        }
    finally:
        subprocess.run(["umount", str(tmp_path / "mnt")], check=True)


@pytest.mark.root
@needs_root
def test_devices_come_with_their_rdev(channel, tmp_path):
    os.mknod(tmp_path / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    got = {e.key: e for e in channel.scan(os.fsencode(tmp_path))}
    assert got[(b"null",)].stat.st_rdev == os.makedev(1, 3)


def test_pages_give_the_listing_and_free_the_channel_between_them(channel, tmp_path):
    for d in range(5):
        sub = tmp_path / f"dir{d}"
        sub.mkdir()
        for f in range(30):
            (sub / f"f{f:02}").write_bytes(b"%d" % f)
    root = os.fsencode(tmp_path)
    whole = [e.key for e in channel.scan(root)]
    pages = []
    for page in channel.scan_pages(root, page=40):
        pages.append([e.key for e in page])
        # Between pages the channel serves other ops; the walk goes on after.
        last = os.path.join(root, *page[-1].key)
        if len(page[-1].key) == 2:
            rf = channel.read(last)
            assert b"".join(bytes(d) for _, d in rf.chunks()) == Path(os.fsdecode(last)).read_bytes()
            assert channel.stat(last).st_size == rf.size
    assert [len(p) for p in pages] == [40, 40, 40, 36]
    assert [k for p in pages for k in p] == whole


def test_a_new_scan_takes_the_place_of_a_paused_one(channel, tmp_path):
    for f in range(10):
        (tmp_path / f"f{f}").write_bytes(b"")
    root = os.fsencode(tmp_path)
    pages = channel.scan_pages(root, page=4)
    assert len(next(pages)) == 4
    assert len(list(channel.scan(root))) == 11
    with pytest.raises(
        RemoteOSError, match=f"^host {HOST}: .*: scan_more: ValueError: no scan paused to go on with$"
    ):
        next(pages)
