"""A stored entry's owner, mode, xattrs (ACLs among them) and mtime, made
the source's; as non-root, rsync's fake-super stand-ins (see fakesuper).

Every change goes through the store primitives (set_owner, set_mode,
set_mtime, XAttrs.sync, unshare), so each is compared first, counted and
dry in a dry run.
"""

from __future__ import annotations

import errno
import os
import stat

import xattr

from inkind.engines.tree import fakesuper
from inkind.source import RunContext
from inkind.store.image import unshare
from inkind.store.meta import set_mode, set_mtime, set_owner
from inkind.store.paths import fd_path, lstat_at
from inkind.store.xattrs import XAttrs, xattr_items

# Where a stored entry's xattrs come from: the source entry's own fd, its
# (directory fd, name), the xattrs a remote listing gave (names as str), or
# None (the source has none to give).
XattrsFrom = int | tuple[int, str] | dict[str, bytes] | None

_OWN = "user.inkind."


def _own(name: str) -> bool:
    return name.startswith(_OWN)


class Metadata:
    """Gives stored entries the metadata of their source entries."""

    def __init__(self, run: RunContext):
        self.run = run
        self.stats = run.stats
        self.as_root = os.geteuid() == 0

    def apply(
        self,
        dst: int,
        name: str | None,
        st: os.stat_result,
        *,
        xattrs_from: XattrsFrom,
        new: bool,
        dst_st: os.stat_result | None = None,
    ) -> None:
        """Give a stored entry the source's owner, mode, xattrs and mtime.

        ``dst``/``name`` name the stored entry (``name`` None: ``dst`` is the
        entry's own fd). Owner and mode are compared on every run, xattrs
        for new or rewritten entries, those whose mtime differs, and in a
        full pass; mtime last.
        """
        if not new and dst_st is not None and self.already(dst_st, st):
            return
        cur = dst_st or self._stat(dst, name)
        xattrs = None
        # A stored entry of another mtime was changed, or left unfinished by
        # an interrupted walk (a directory gets its xattrs and mtime last):
        # its xattrs are compared too.
        if new or self.run.full or cur.st_mtime_ns != st.st_mtime_ns:
            xattrs = self.wanted_xattrs(st, xattrs_from)
        if not new and name is not None and self._shared_with_history(cur, st, xattrs, dst, name):
            cur = unshare(dst, name, stats=self.stats)
        if xattrs is not None and self._sync_xattrs(dst, name, xattrs):
            cur = self._stat(dst, name)  # an ACL may have changed the mode
        self._set_stat(dst, name, st, cur)

    def apply_fresh(self, fd: int, st: os.stat_result, xattrs_from: XattrsFrom) -> None:
        """Give a temp file this run has just made and filled the source's
        metadata. It holds no xattrs but inkind's own, so the source's are
        written without listing or comparing the temp's first."""
        wanted = self.wanted_xattrs(st, xattrs_from)
        if wanted:
            self._sync_xattrs(fd, None, wanted, fresh=True)
        self._set_stat(fd, None, st, os.fstat(fd))

    def fresh_mode(self, st: os.stat_result) -> int:
        """The permission bits a new stored file is made with: those it is
        to have (set-id and sticky bits are set after the owner)."""
        return (st.st_mode if self.as_root else fakesuper.stored_mode(st)) & 0o777

    def _set_stat(self, dst: int, name: str | None, st: os.stat_result, cur: os.stat_result) -> None:
        """Owner, mode and mtime, each only where it differs (mtime last)."""
        target: int | str = dst if name is None else name
        dir_fd = None if name is None else dst
        if self.as_root:
            if set_owner(target, st.st_uid, st.st_gid, dir_fd=dir_fd, stats=self.stats, st=cur):
                cur = self._stat(dst, name)
            if not stat.S_ISLNK(st.st_mode):
                set_mode(target, st.st_mode, dir_fd=dir_fd, stats=self.stats, st=cur)
        else:
            set_mode(target, fakesuper.stored_mode(st), dir_fd=dir_fd, stats=self.stats, st=cur)
        set_mtime(target, st.st_mtime_ns, dir_fd=dir_fd, stats=self.stats, st=cur)

    def already(self, cur: os.stat_result, st: os.stat_result) -> bool:
        """Whether a stored entry that was not rewritten has the source's
        owner, mode and mtime already, outside a full pass (which compares
        xattrs too) and a dry run (whose overlay may hold newer values):
        the common case of a no-change run, decided without a call into
        the primitives."""
        if self.run.full or self.run.dry_run or cur.st_mtime_ns != st.st_mtime_ns:
            return False
        if not self.as_root:
            return (cur.st_mode & 0o7777) == (fakesuper.stored_mode(st) & 0o7777)
        if (cur.st_uid, cur.st_gid) != (st.st_uid, st.st_gid):
            return False
        return stat.S_ISLNK(st.st_mode) or (cur.st_mode & 0o7777) == (st.st_mode & 0o7777)

    @staticmethod
    def _stat(dst: int, name: str | None) -> os.stat_result:
        return os.fstat(dst) if name is None else lstat_at(dst, name)

    def fake_matches(self, dst: int, name: str, st: os.stat_result) -> bool:
        """Non-root: whether the stored stand-in records ``st`` already."""
        got = XAttrs(fd_path(dst, name), namespace="").get(fakesuper.STAT_XATTR)
        return got == fakesuper.encode(st)

    def _shared_with_history(
        self, cur: os.stat_result, st: os.stat_result, xattrs: dict[str, bytes] | None, dst: int, name: str
    ) -> bool:
        """Whether the stored file's inode has links the source does not
        explain (a hard-link history, a hand-made link) and its metadata is
        about to change: then it must get an inode of its own first."""
        if not stat.S_ISREG(cur.st_mode) or cur.st_nlink <= st.st_nlink:
            return False
        mode = st.st_mode if self.as_root else fakesuper.stored_mode(st)
        if cur.st_mtime_ns != st.st_mtime_ns or (cur.st_mode & 0o7777) != (mode & 0o7777):
            return True
        if self.as_root and (cur.st_uid, cur.st_gid) != (st.st_uid, st.st_gid):
            return True
        if xattrs is None:
            return False
        have = {k: v for k, v in xattr_items(fd_path(dst, name)) if not _own(k)}
        return have != xattrs

    def wanted_xattrs(self, st: os.stat_result, xattrs_from: XattrsFrom) -> dict[str, bytes]:
        """The xattrs the stored entry should carry (inkind's own aside)."""
        wanted: dict[str, bytes] = {}
        if isinstance(xattrs_from, int):
            wanted = dict(_source_xattrs(xattrs_from))
        elif isinstance(xattrs_from, dict):
            wanted = {k: v for k, v in xattrs_from.items() if not _own(k)}
        elif xattrs_from is not None:
            wanted = dict(_source_xattrs(fd_path(*xattrs_from)))
        if not self.as_root:
            wanted = {k: v for k, v in wanted.items() if k.startswith("user.")}
            wanted[fakesuper.STAT_XATTR] = fakesuper.encode(st)
        if stat.S_ISLNK(st.st_mode) and self.as_root:
            wanted = {k: v for k, v in wanted.items() if not k.startswith("user.")}
        return wanted

    def _sync_xattrs(
        self, dst: int, name: str | None, wanted: dict[str, bytes], *, fresh: bool = False
    ) -> int:
        """Make the stored entry's xattrs ``wanted`` (inkind's own kept);
        ``fresh``: it has none of those yet. Returns how many were written."""
        dst_item: int | bytes = dst if name is None else fd_path(dst, name)
        xattrs = XAttrs(dst_item, namespace="", stats=self.stats)
        try:
            if not fresh:
                return xattrs.sync(wanted, keep=_own)
            for key, value in wanted.items():
                xattrs.put(key, value)
            return len(wanted)
        except OSError as err:
            if err.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
            self.run.warn(f"{self.run.name}: cannot set xattrs: {err.strerror}")
            return 0


def _source_xattrs(item: int | bytes) -> list[tuple[str, bytes]]:
    """A source entry's xattrs (inkind's own left out), by fd or by path
    (never following a symlink); none where it has or allows none."""
    kwargs = {} if isinstance(item, int) else {"nofollow": True}
    try:
        pairs = xattr.get_all(item, **kwargs)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EPERM, errno.ENOENT):
            return []
        raise
    return [(k.decode("utf-8", "surrogateescape"), v) for k, v in pairs if not k.startswith(b"user.inkind.")]
