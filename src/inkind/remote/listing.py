"""The server's side of ``scan``: entry frames decoded and checked, so a
broken or hostile remote side cannot name a path outside the tree it was
asked for (no ``/``, ``.``, ``..``, NUL or names over 255 bytes; each
directory's names strictly sorted, so none twice) nor make the server hold
more than one frame and one path."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from inkind.remote.wire import ENTRY, F_ERROR, F_NOSTAT, F_OTHER_FS, XATTR, FrameError

MAX_NAME = 255  # NAME_MAX
MAX_TARGET = 4095  # PATH_MAX less its NUL
MAX_DEPTH = 2048  # a path of PATH_MAX holds at most this many names
MAX_SIZE = 1 << 60  # a size or offset claimed beyond this is refused
FILE_TYPES = frozenset(
    (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK)
)


@dataclass(frozen=True, slots=True)
class RemoteStat:
    """lstat or fstat on the host; the names os.stat_result has, so code
    that reads a stat reads either."""

    st_mode: int
    st_uid: int
    st_gid: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_ino: int
    st_dev: int
    st_nlink: int
    st_rdev: int
    st_blocks: int


def checked_stat(fields: Sequence[object]) -> RemoteStat:
    """A stat from the wire, its numbers within what a kernel reports."""
    if len(fields) != 11 or any(type(v) is not int for v in fields):
        raise FrameError(f"a malformed stat: {list(fields)[:12]!r}")
    st = RemoteStat(*fields)  # type: ignore[arg-type]
    if stat.S_IFMT(st.st_mode) not in FILE_TYPES or st.st_mode >> 16:
        raise FrameError(f"an unknown file mode {st.st_mode:o}")
    if not (0 <= st.st_size <= MAX_SIZE and 0 <= st.st_blocks <= MAX_SIZE):
        raise FrameError(f"a size beyond limits: {st.st_size}")
    if min(st.st_uid, st.st_gid, st.st_ino, st.st_dev, st.st_nlink, st.st_rdev) < 0:
        raise FrameError("a negative stat field")
    return st


@dataclass(slots=True)
class RemoteEntry:
    """One entry of a remote tree: its key (names from the root, as bytes;
    the root's is ``()``), its lstat (None when that failed: see
    ``error``), symlink target, xattrs, and what went wrong reading it
    (``error``, ``errno``: a vanished entry, an unreadable directory).
    ``other_fs``: a directory on another filesystem, not entered."""

    key: tuple[bytes, ...]
    stat: RemoteStat | None
    target: bytes | None = None
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    error: str | None = None
    errno: int = 0
    other_fs: bool = False

    @property
    def name(self) -> bytes:
        return self.key[-1] if self.key else b""


def check_name(name: bytes) -> None:
    if not name or len(name) > MAX_NAME or b"/" in name or b"\0" in name or name in (b".", b".."):
        raise FrameError(f"a bad name in the listing: {name[:300]!r}")


class Listing:
    """Decodes the ENTRIES frames of one scan, in order."""

    def __init__(self) -> None:
        self.chain: list[bytes] = []  # the directories the walk is in
        self.last: list[bytes] = []  # the last name at each depth, within its directory
        self.started = False
        self.done = False  # the listing's end came (not only a page's)
        self.count = 0

    def decode(self, payload: bytes) -> list[RemoteEntry]:
        out = []
        pos, end = 0, len(payload)
        unpack, head = ENTRY.unpack_from, ENTRY.size
        while pos < end:
            if end - pos < head:
                raise FrameError("a truncated entry")
            f = unpack(payload, pos)
            depth, flags, name_len, target_len, nx, err_len = f[0], f[1], f[2], f[14], f[15], f[17]
            pos += head
            name = payload[pos : pos + name_len]
            target = payload[pos + name_len : pos + name_len + target_len]
            pos += name_len + target_len
            if pos > end:
                raise FrameError("a truncated entry")
            xattrs, pos = _xattrs(payload, pos, nx) if nx else ({}, pos)
            text, pos = _take(payload, pos, err_len) if err_len else (b"", pos)
            st = None if flags & F_NOSTAT else _struct_stat(f)
            is_link = st is not None and stat.S_ISLNK(st.st_mode)
            if target and (not is_link or len(target) > MAX_TARGET or b"\0" in target):
                raise FrameError(f"a bad symlink target for {name[:300]!r}")
            entered = st is not None and stat.S_ISDIR(st.st_mode) and not flags & F_OTHER_FS
            entry = RemoteEntry(
                self.place(depth, name, entered),
                st,
                target if is_link and not flags & F_ERROR else None,
                xattrs,
            )
            if flags & F_ERROR:
                entry.error, entry.errno = text.decode("utf-8", "replace") or "error", f[16]
            if flags & F_OTHER_FS:
                entry.other_fs = True
            out.append(entry)
        self.count += len(out)
        return out

    def place(self, depth: int, name: bytes, entered: bool) -> tuple[bytes, ...]:
        """The key of an entry at ``depth`` (its parents are the directories
        the walk is in), after checking its name and order."""
        if not self.started:
            if depth != 0 or name:
                raise FrameError("a listing that does not start with its root")
            self.started = True
            return ()
        if not 1 <= depth <= len(self.chain) + 1 or depth > MAX_DEPTH:
            raise FrameError(f"an entry at depth {depth} outside the walk")
        check_name(name)
        del self.chain[depth - 1 :]
        del self.last[depth:]
        if len(self.last) == depth and name <= self.last[depth - 1]:
            raise FrameError(f"an entry out of order or twice: {name[:300]!r}")
        self.last[depth - 1 :] = [name]
        key = (*self.chain, name)
        if entered:
            self.chain.append(name)
        return key


def _struct_stat(f: tuple) -> RemoteStat:
    """The stat of an unpacked ENTRY: the struct made every field an int of
    its width; what is left to check is the mode and the sizes."""
    mode, size, blocks = f[3], f[6], f[13]
    if stat.S_IFMT(mode) not in FILE_TYPES or mode >> 16:
        raise FrameError(f"an unknown file mode {mode:o}")
    if not (0 <= size <= MAX_SIZE and 0 <= blocks <= MAX_SIZE):
        raise FrameError(f"a size beyond limits: {size}")
    return RemoteStat(*f[3:14])


def _take(payload: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(payload):
        raise FrameError("a truncated entry")
    return payload[pos : pos + n], pos + n


def _xattrs(payload: bytes, pos: int, count: int) -> tuple[dict[bytes, bytes], int]:
    found: dict[bytes, bytes] = {}
    for _ in range(count):
        if pos + XATTR.size > len(payload):
            raise FrameError("a truncated entry")
        name_len, value_len = XATTR.unpack_from(payload, pos)
        name, pos = _take(payload, pos + XATTR.size, name_len)
        value, pos = _take(payload, pos, value_len)
        if not name or b"\0" in name or name in found:
            raise FrameError(f"a bad or repeated xattr name {name[:300]!r}")
        found[name] = value
    return found, pos


def gitignore_rules(patterns: Sequence[str]) -> list[tuple[str, bool]]:
    """gitignore patterns as the scan op takes them: each compiled pattern's
    regex and whether it excludes (pathspec compiles; the remote side
    matches with ``re``, as pathspec's GitIgnoreSpec does)."""
    import pathspec  # only a source that excludes something loads it

    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    return [
        (p.regex.pattern, bool(p.include))
        for p in spec.patterns
        if p.include is not None and p.regex is not None
    ]
