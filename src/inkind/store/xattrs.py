"""A mapping over one file's extended attributes that writes only changes."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

import xattr

from inkind.stats import Stats
from inkind.store.paths import PathLike
from inkind.storefs import Filesystem

INKIND_NS = "user.inkind."

NOT_FOUND = {errno.ENODATA}


class XAttrs(MutableMapping[str, bytes]):
    """The xattrs of one file under one namespace (default ``user.inkind.``).

    Keys are given without the namespace. Symlinks are never followed.
    Assigning the value an attribute already has performs no write, and every
    write or removal is counted in ``stats.xattrs_written``.

    >>> x = XAttrs("/srv/backup/home/notes.txt")
    >>> x["xxh3"] = "0f1e..."     # written only if different
    """

    def __init__(
        self,
        target: PathLike | int,
        *,
        namespace: str = INKIND_NS,
        stats: Stats | None = None,
    ):
        self.target = target
        self.namespace = namespace
        self.stats = stats

    def _full(self, key: str) -> str:
        return self.namespace + key

    def _io_kwargs(self) -> dict:
        return {} if isinstance(self.target, int) else {"nofollow": True}

    def __getitem__(self, key: str) -> bytes:
        try:
            return xattr.get(self.target, self._full(key), **self._io_kwargs())
        except OSError as e:
            if e.errno in NOT_FOUND:
                raise KeyError(key) from None
            raise

    def __setitem__(self, key: str, value: bytes | str) -> None:
        data = value.encode() if isinstance(value, str) else bytes(value)
        if self.get(key) == data:
            return
        xattr.set(self.target, self._full(key), data, **self._io_kwargs())
        if self.stats is not None:
            self.stats.xattrs_written += 1

    def __delitem__(self, key: str) -> None:
        try:
            xattr.remove(self.target, self._full(key), **self._io_kwargs())
        except OSError as e:
            if e.errno in NOT_FOUND:
                raise KeyError(key) from None
            raise
        if self.stats is not None:
            self.stats.xattrs_written += 1

    def __iter__(self) -> Iterator[str]:
        prefix = self.namespace.encode()
        for raw in xattr.list(self.target, **self._io_kwargs()):
            if raw.startswith(prefix):
                yield raw[len(prefix) :].decode("utf-8", "surrogateescape")

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def text(self, key: str) -> str | None:
        """The value of ``key`` decoded as UTF-8, or None when absent."""
        raw = self.get(key)
        return None if raw is None else raw.decode("utf-8", "replace")

    def sync(self, wanted: dict[str, bytes], *, keep: Callable[[str], bool] = lambda k: False) -> int:
        """Make the namespace hold exactly ``wanted``, plus the keys ``keep``
        accepts. Returns how many attributes were written or removed."""
        changes = 0
        for key in list(self):
            if key not in wanted and not keep(key):
                del self[key]
                changes += 1
        for key, value in wanted.items():
            if self.get(key) != value:
                self[key] = value
                changes += 1
        return changes


# XFS lists a file's POSIX ACLs a second time, to root, under these names:
# the same ACL in XFS's own encoding. The ACL travels as system.posix_acl_*;
# copying these too would plant stray trusted.* xattrs on other filesystems.
ACL_ALIASES = frozenset({"trusted.SGI_ACL_FILE", "trusted.SGI_ACL_DEFAULT"})
ACL_ALIAS_FILTER = "--filter=-x trusted.SGI_ACL_*"


def acl_alias_filter(path: PathLike) -> list[str]:
    """The rsync filter that leaves the aliases out of a restore from
    ``path``, where its filesystem has them (XFS); else nothing. A path not
    there yet (a snapshot the printed commands mount first) keeps the
    filter: no store holds the aliases, so it is never wrong, only noise."""
    try:
        fstype = Filesystem.of(Path(os.fsdecode(path))).type
    except FileNotFoundError:
        return [ACL_ALIAS_FILTER]
    return [ACL_ALIAS_FILTER] if fstype == "xfs" else []


def xattr_items(target: PathLike | int) -> list[tuple[str, bytes]]:
    """All readable xattrs of ``target`` (never following a symlink), but
    the filesystem's aliases of its ACLs (:data:`ACL_ALIASES`)."""
    kwargs = {} if isinstance(target, int) else {"nofollow": True}
    try:
        pairs = xattr.get_all(target, **kwargs)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return []
        raise
    named = ((k.decode("utf-8", "surrogateescape"), v) for k, v in pairs)
    return [(k, v) for k, v in named if k not in ACL_ALIASES]
