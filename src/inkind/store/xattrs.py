"""A mapping over one file's extended attributes that writes only changes."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

import xattr

from inkind.stats import Stats
from inkind.store import dryrun
from inkind.store.paths import PathLike
from inkind.storefs import Filesystem

INKIND_NS = "user.inkind."

NOT_FOUND = {errno.ENODATA}


class XAttrs(MutableMapping[str, bytes]):
    """The xattrs of one file under one namespace (default ``user.inkind.``).

    Keys are given without the namespace. Symlinks are never followed.
    Assigning the value an attribute already has performs no write, and every
    write or removal is counted in ``stats.xattrs_written``. In a dry run
    writes go to the dry run's overlay, and reads see them.

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

    def _dry_layer(self) -> tuple[dict[str, bytes | None], bool] | None:
        """In a dry run: the overlay of the target's xattrs, and whether the
        target is a stand-in (it has none of its own)."""
        dry = dryrun.active()
        if dry is None:
            return None
        ino = dryrun.target_ino(self.target)
        return dry.xattr_layer(ino), ino in dry.fresh

    def __getitem__(self, key: str) -> bytes:
        full = self._full(key)
        dry = self._dry_layer()
        if dry is not None and (full in dry[0] or dry[1]):
            value = dry[0].get(full)
            if value is None:
                raise KeyError(key)
            return value
        try:
            return xattr.get(self.target, full, **self._io_kwargs())
        except OSError as e:
            if e.errno in NOT_FOUND:
                raise KeyError(key) from None
            raise

    def __setitem__(self, key: str, value: bytes | str) -> None:
        data = value.encode() if isinstance(value, str) else bytes(value)
        if self.get(key) != data:
            self.put(key, data)

    def put(self, key: str, value: bytes | str) -> None:
        """Write ``key`` without reading it first: for a file this run has
        just created, which cannot hold it yet (one syscall, not two)."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        dry = self._dry_layer()
        if dry is not None:
            dry[0][self._full(key)] = data
        else:
            xattr.set(self.target, self._full(key), data, **self._io_kwargs())
        if self.stats is not None:
            self.stats.xattrs_written += 1

    def __delitem__(self, key: str) -> None:
        dry = self._dry_layer()
        if dry is not None:
            self[key]  # KeyError when absent, as below
            dry[0][self._full(key)] = None
        else:
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
        dry = self._dry_layer()
        names = [] if dry is not None and dry[1] else xattr.list(self.target, **self._io_kwargs())
        if dry is not None:
            seen = {os.fsencode(n) for n in names}
            names = [n for n in names if dry[0].get(os.fsdecode(n), b"") is not None]
            names += [
                os.fsencode(k) for k, v in dry[0].items() if v is not None and os.fsencode(k) not in seen
            ]
        for raw in names:
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
        if dryrun.active() is not None:  # with what the dry run set
            x = XAttrs(target, namespace="")
            return [(k, x[k]) for k in list(x)]
        pairs = xattr.get_all(target, **kwargs)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return []
        raise
    named = ((k.decode("utf-8", "surrogateescape"), v) for k, v in pairs)
    return [(k, v) for k, v in named if k not in ACL_ALIASES]
