"""Snapshots as copies of the store tree made by ``cp``: reflink copies
(every file shares its extents with the store) or hard-link trees
(rsnapshot's way: every file *is* the store's file until the host replaces
it by rename).

A copy is built under a temp name and renamed into place, so a copy cut
short is never listed; the next listing removes it.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import ClassVar

from inkind import (
    Snapshot,
    SnapshotProvider,
    half_made_name,
    is_half_made,
    is_id,
    reflinks_work,
    run_storage_tool,
)


def remove_tree(path: Path) -> None:
    """rmtree that also gets through directories a source stored without
    write permission (non-root runs keep modes as the source had them)."""

    def unlock_parent(func, p, _exc) -> None:
        parent = os.path.dirname(p)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        func(p)

    # onexc arrived in 3.12 and onerror is deprecated there.
    key = "onexc" if sys.version_info >= (3, 12) else "onerror"
    shutil.rmtree(path, **{key: unlock_parent})  # outside the store: a snapshot in the snapshot folder


class CopyTree(SnapshotProvider):
    """A directory per snapshot in ``snapshot_dir``, made by ``cp``."""

    cp_args: ClassVar[list[str]]

    def _copy(self, tmp: Path) -> None:
        """Copy the store into ``tmp``: each top-level entry but the one that
        holds the snapshot folder (the snapshots are no part of the store
        they record), then the store directory's own owner, mode, xattrs
        and times."""
        os.mkdir(tmp, 0o700)  # outside the store: the half-made snapshot in the snapshot folder
        skip = self.inner_entry
        entries = sorted(str(self.store / n) for n in os.listdir(self.store) if n != skip)
        if entries:
            run_storage_tool(
                ["cp", *self.cp_args, "-t", str(tmp), "--", *entries], f"{self.name} copy of {self.store}"
            )
        st = os.stat(self.store)
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        shutil.copystat(self.store, tmp)

    def create(self, sid: str) -> Snapshot:
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        final = self.snapshot_dir / sid
        tmp = self.snapshot_dir / half_made_name(sid)
        try:
            self._copy(tmp)
            os.rename(tmp, final)  # outside the store: the snapshot folder
            dfd = os.open(self.snapshot_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except BaseException:
            if tmp.exists():
                remove_tree(tmp)
            raise
        return Snapshot(sid, final, str(final))

    def list(self) -> list[Snapshot]:
        if not self.snapshot_dir.is_dir():
            return []
        found = []
        for e in os.scandir(self.snapshot_dir):
            if is_half_made(e.name):
                remove_tree(Path(e.path))
            elif is_id(e.name) and e.is_dir(follow_symlinks=False):
                found.append(Snapshot(e.name, Path(e.path), e.path))
        return sorted(found, key=lambda s: s.time)

    def write_paths(self) -> list[Path]:
        """The store and the folder as one tree: cp links (or clones) from
        one into the other, and link() works within one mount only, while
        systemd binds each of a unit's ReadWritePaths as a mount of its own."""
        return [Path(os.path.commonpath([self.store.absolute(), self.snapshot_dir.absolute()]))]

    def delete(self, snap: Snapshot) -> None:
        remove_tree(Path(snap.handle))


class Reflink(CopyTree):
    """XFS (reflink=1) or btrfs without subvolumes: data shared, metadata
    copied, so a snapshot costs a walk of the tree and its inodes."""

    name = "reflink"
    snapshot_dir_on = "filesystem"  # clones share extents within one filesystem
    cp_args = ["-a", "--reflink=always"]

    @classmethod
    def detect(cls, store: Path) -> bool:
        try:
            return reflinks_work(store)
        except OSError:
            return False


class Hardlink(CopyTree):
    """Any POSIX filesystem: unchanged files are hard links to the store's.

    Works because the host replaces a changed file by rename and never
    changes a shared inode in place: images with more than one link are
    copied before an update, and files whose metadata alone changed are
    copied before the change (see docs/history.md for the cost)."""

    name = "hardlink"
    snapshot_dir_on = "mount"  # link() works within one mount only
    cp_args = ["-a", "--link"]

    @classmethod
    def detect(cls, store: Path) -> bool:
        return True

    def exclusive_bytes(self, snap: Snapshot) -> int | None:
        """The blocks deleting this snapshot frees: its directories (every
        copy has its own), and each inode all of whose links are in it. An
        inode that is also the store's entry at the same path is shared
        (the common case), so only the others are counted link by link."""
        total = os.lstat(snap.handle).st_blocks * 512
        inodes: dict[int, list[int]] = {}  # inode -> [links seen here, st_nlink, bytes]
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(os.path.join(snap.handle, rel)) as it:
                for e in it:
                    st = e.stat(follow_symlinks=False)
                    path = os.path.join(rel, e.name)
                    if stat.S_ISDIR(st.st_mode):
                        total += st.st_blocks * 512
                        stack.append(path)
                    elif st.st_nlink == 1:
                        total += st.st_blocks * 512
                    elif not _same_inode(st, self.store / path):
                        inodes.setdefault(st.st_ino, [0, st.st_nlink, st.st_blocks * 512])[0] += 1
        return total + sum(size for here, nlink, size in inodes.values() if here == nlink)


def _same_inode(st: os.stat_result, path: Path) -> bool:
    try:
        other = os.lstat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
