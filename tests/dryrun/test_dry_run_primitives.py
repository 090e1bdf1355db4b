"""Every store primitive, called the same way in a dry run and in a real
one: the dry run leaves the store as it was and counts the same."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

from test_dry_run_every_type import listing

from inkind.engines.blockcopy.engine import BlockCopy
from inkind.stats import Stats
from inkind.store import XAttrs, set_mode, set_mtime, set_owner, sweep_temps, sync_store, update_file
from inkind.store.dryrun import dry_run
from inkind.store.entries import record_entries
from inkind.store.files import UpdateFile, sweep_tagged_temps
from inkind.store.image import Extent, update_image
from inkind.store.paths import DIR_FLAGS, list_dir, lstat_at, open_at
from inkind.store.tree import (
    exchange,
    link,
    make_dir,
    make_dirs,
    make_node,
    make_symlink,
    remove,
    remove_dir,
    rename,
    scratch_dir,
)

MiB = 1 << 20


def prepare(store: Path) -> None:
    """A store with something of each kind to compare with and change."""
    (store / "s" / "old" / "deep").mkdir(parents=True)
    (store / "s" / "same").write_bytes(b"same")
    (store / "s" / "differs").write_bytes(b"a" * 10000)
    (store / "s" / "doomed").write_bytes(b"x")
    (store / "s" / "old" / "deep" / "f").write_bytes(b"f")
    (store / "s" / ".inkind-tmp-0011223344556677").write_bytes(b"leftover")
    (store / "s" / "image.img").write_bytes(random.Random(1).randbytes(2 * MiB))
    (store / "s" / "shared.img").write_bytes(random.Random(2).randbytes(MiB))
    os.link(store / "s" / "shared.img", store / "shared-history.img")  # nlink 2: copied, not changed
    (store / "src.raw").write_bytes(random.Random(3).randbytes(2 * MiB))
    (store / ".inkind").mkdir(exist_ok=True)
    (store / ".inkind" / ".inkind-tmp-8899aabbccddeeff.s.json").write_bytes(b"{}")
    XAttrs(str(store / "s" / "same"))["xxh3"] = "stale"


def work(store: Path, root_fd: int, stats: Stats) -> list:
    """Call each primitive; return what the calls said (equal in both modes)."""
    said: list = []
    data = open_at(root_fd, "s", DIR_FLAGS)
    try:
        said.append(update_file("same", b"same", dir_fd=data, stats=stats))
        said.append(update_file("differs", b"a" * 5000 + b"b" * 5000, dir_fd=data, stats=stats))
        make_dir(data, "new")
        with UpdateFile("new/file", dir_fd=data, stats=stats) as f:
            f.write(b"\0" * 8192 + b"tail")
        said.append(f.changed)
        said.append(sorted(list_dir(data)))
        new = open_at(data, "new", DIR_FLAGS)
        file = open_at(new, "file", os.O_RDONLY)
        try:
            said.append(sorted(list_dir(new)))
            x = XAttrs(file, stats=stats)
            said.append(x.get("xxh3") is not None)
            x["note"] = b"1"
            x["note"] = b"1"  # the same again: no write
            del x["note"]
        finally:
            os.close(file)
            os.close(new)
        st = lstat_at(data, "same")
        said.append(set_mtime("same", st.st_mtime_ns + 1, dir_fd=data, stats=stats))
        said.append(set_mtime("same", st.st_mtime_ns + 1, dir_fd=data, stats=stats))  # now equal
        said.append(set_mode("same", 0o640, dir_fd=data, stats=stats))
        said.append(set_owner("same", 1234, 5678, dir_fd=data, stats=stats))
        make_dirs(data, "a/b/c")
        make_symlink("same", data, "link")
        make_node(data, "fifo", stat.S_IFIFO | 0o600)
        link(data, "same", data, "hardlink")
        rename(data, "hardlink", "renamed")
        exchange(data, "renamed", "doomed")
        remove(data, "renamed")
        remove(data, "old")
        c = open_at(data, "a", DIR_FLAGS)
        try:
            b = open_at(c, "b", DIR_FLAGS)
            remove_dir(b, "c")
            os.close(b)
        finally:
            os.close(c)
        said.append(sorted(list_dir(data)))
        said.append(stat.S_IFMT(lstat_at(data, "link").st_mode) == stat.S_IFLNK)
        said.append(record_entries(data, list_dir(data), stats))
        said.append(sweep_temps(data))
        sync_store(data)
        with scratch_dir(data, store / "s") as scratch:
            (scratch / "tool-output").write_bytes(b"out")
            said.append(scratch.is_dir())
        said.append(
            update_image(
                root_fd,
                "s/image.img",
                2 * MiB,
                [Extent(0, 4096, b"z" * 4096), Extent(MiB, 65536)],
                stats=stats,
            )
        )
        said.append(
            update_image(root_fd, "s/shared.img", MiB, [Extent(8192, 10, b"0123456789")], stats=stats)
        )
        said.append(update_image(root_fd, "s/fresh.img", MiB, [Extent(0, 3, b"new")], stats=stats))
        engine = BlockCopy(root_fd, "s/copied.img", 64 << 10, stats)
        src = os.open(store / "src.raw", os.O_RDONLY)
        try:
            result = engine.copy(src, os.fstat(src).st_size)
            said.append((result.blocks_changed, result.mode))
        finally:
            os.close(src)
        engine.remove()
        meta = open_at(root_fd, ".inkind", DIR_FLAGS)
        said.append(sweep_tagged_temps(meta, "s.json"))
        os.close(meta)
    finally:
        os.close(data)
    return said


def test_every_primitive_writes_nothing_in_a_dry_run_and_counts_as_a_real_one(inkind_store):
    prepare(inkind_store)
    root_fd = os.open(inkind_store, DIR_FLAGS)
    try:
        before = listing(inkind_store)
        would = Stats()
        with dry_run():
            dry_said = work(inkind_store, root_fd, would)
        assert listing(inkind_store) == before
        did = Stats()
        real_said = work(inkind_store, root_fd, did)
    finally:
        os.close(root_fd)
    assert dry_said == real_said
    would.duration_seconds = did.duration_seconds = 0
    assert would == did
    assert did.bytes_written and did.xattrs_written and did.mtimes_set and did.modes_set and did.owners_set
