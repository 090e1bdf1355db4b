"""The ``scan`` op of the remote side: a tree listed in bulk, depth-first,
many entries to a frame. Standard library only, Python 3.9 syntax (it runs
on the backed-up host, sent after wire.py; see bootstrap.py)."""

from __future__ import annotations

import errno
import io
import os
import queue
import re
import stat
import threading

from inkind.remote.wire import (
    BATCH,
    ENTRIES,
    ENTRY,
    F_ERROR,
    F_NOSTAT,
    F_OTHER_FS,
    MAX_XATTRS,
    OPEN_FLAGS,
    XATTR,
    Writer,
    stat_fields,
    to_bytes,
    to_text,
)

CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def xattrs_of(path: bytes) -> list:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENOSYS):
            return []
        raise
    found, total = [], 0
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.ENODATA:  # removed meanwhile
                continue
            raise
        found.append((os.fsencode(name), value))
        total += len(name) + len(value)
        if total > MAX_XATTRS:
            raise OSError(errno.E2BIG, "xattrs over 4 MiB")
    return found


class Scan:
    """The ``scan`` op: the tree under a root, depth-first, each directory's
    names sorted as bytes, every entry with its lstat, symlink target and
    xattrs; excluded entries and CACHEDIR.TAG directories left out, other
    filesystems not entered (with ``one_file_system``)."""

    def __init__(self, w: Writer, req: dict):
        self.w, self.root = w, to_bytes(req["path"])
        self.one_fs = bool(req.get("one_file_system", True))
        self.caches = bool(req.get("exclude_caches", True))
        self.rules = [(re.compile(p), bool(inc)) for p, inc in req.get("exclude") or []]
        self.parts, self.size, self.count = [], 0, 0
        self.stack: list = []
        self.paged = 0  # entries sent up to the last page's end

    def start(self) -> None:
        st = os.lstat(self.root)
        self.dev = st.st_dev
        self.stack = [(1, self.root, b"", self.listing(self.root, 0, b"", st))]

    def proceed(self, page: int) -> bool:
        """Send entries until ``page`` more have gone (0: no limit), then
        a page end, or the listing's end; whether the walk is done. Between
        pages the walk waits, its place kept, while the server runs other
        ops (``scan_more`` goes on)."""
        stop = self.paged + page if page > 0 else -1
        stack = self.stack
        while stack:
            if self.count == stop:
                self.flush()
                self.w.json(page_end=True, entries=self.count)
                self.paged = self.count
                return False
            depth, path, rel, names = stack[-1]
            if not names:
                stack.pop()
                continue
            name = names.pop()
            sub = path + b"/" + name
            entered = self.entry(depth, name, sub, rel + name)
            if entered is not None:
                stack.append((depth + 1, sub, rel + name + b"/", entered))
        self.flush()
        self.w.json(end=True, entries=self.count)
        return True

    def entry(self, depth: int, name: bytes, path: bytes, rel: bytes):
        """Send one entry; the names below it (reversed) if it is a directory
        to enter, else None."""
        try:
            st = os.lstat(path)
        except OSError as e:
            self.add(depth, F_NOSTAT | F_ERROR, name, None, e)
            return None
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.rules and self.excluded(to_text(rel) + ("/" if is_dir else "")):
            return None
        if is_dir and self.caches and cache_tagged(path):
            return None
        if is_dir and self.one_fs and st.st_dev != self.dev:
            self.add(depth, F_OTHER_FS, name, st, None, path)
            return None
        return self.listing(path, depth, name, st)

    def listing(self, path: bytes, depth: int, name: bytes, st):
        """Send the entry; for a directory, its names (reversed, so the walk
        pops them in order) or the error that kept it from being listed."""
        names = None
        err = None
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(path) as it:
                    names = sorted((e.name for e in it), reverse=True)
            except OSError as e:
                err = OSError(e.errno, "cannot list: " + (e.strerror or ""))
        self.add(depth, F_ERROR if err else 0, name, st, err, path)
        return names

    def add(self, depth: int, flags: int, name: bytes, st, err, path: bytes = b"") -> None:
        target, xattrs = b"", []
        if st is not None:
            try:
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(path)
                xattrs = xattrs_of(path)
            except OSError as e:
                flags, err = flags | F_ERROR, err or e
        text = b"" if err is None else (err.strerror or str(err)).encode("utf-8", "replace")[:1000]
        fields = stat_fields(st) if st is not None else [0] * 11
        errno_ = (err.errno or 0) & 0xFFFF if err is not None else 0
        head = ENTRY.pack(depth, flags, len(name), *fields, len(target), len(xattrs), errno_, len(text))
        parts = [head, name, target]
        for k, v in xattrs:
            parts += [XATTR.pack(len(k), len(v)), k, v]
        parts.append(text)
        chunk = b"".join(parts)
        self.parts.append(chunk)
        self.size += len(chunk)
        self.count += 1
        if self.size >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.w.send(ENTRIES, b"".join(self.parts), compress=True)
            self.parts, self.size = [], 0

    def excluded(self, path: str) -> bool:
        """gitignore semantics as pathspec's GitIgnoreSpec has them: the last
        pattern matching as a file wins, else the last matching as a
        directory; ``include`` means the pattern excludes."""
        result, priority = False, 0
        for rx, include in reversed(self.rules):
            m = rx.search(path)
            if m:
                p = 1 if m.groupdict().get("ps_d") else 2
                if p > priority:
                    result, priority = include, p
                if p == 2:
                    break
        return result


class ScanAhead:
    """A paged scan walked one page ahead on a thread: while the server
    works on a page (and reads files over the same connection), the host
    walks the next one, so the two overlap instead of taking turns. Each
    page is framed into memory (a page of entries, a few MiB at most) and
    sent when ``scan_more`` asks for it."""

    def __init__(self, scan: Scan, page: int):
        self.pages = queue.Queue(maxsize=1)
        self.cancelled = False
        self.thread = threading.Thread(target=self.walk, args=(scan, page), daemon=True)
        self.thread.start()

    def walk(self, scan: Scan, page: int) -> None:
        done = False
        while not done and not self.cancelled:
            buf = io.BytesIO()
            scan.w = Writer(buf)
            error = None
            try:
                done = scan.proceed(page)
            except Exception as e:  # the op's error, told when this page is asked for
                done, error = True, e
            while not self.cancelled:
                try:
                    self.pages.put((buf.getvalue(), done, error), timeout=0.2)
                    break
                except queue.Full:
                    continue

    def send_next(self, out) -> bool:
        """Write the next page's frames to ``out``; whether it was the last."""
        data, done, error = self.pages.get()
        out.write(data)
        if error is not None:
            raise error
        return done

    def cancel(self) -> None:
        self.cancelled = True


def op_scan(w: Writer, req: dict, session) -> None:
    """A tree listed in bulk (walk.py); with ``page``, a page of that many
    entries at a time, the next walked ahead while the server works on
    this one (it asks for it with ``scan_more``; other ops run between
    pages; a new scan takes the place of a paused one)."""
    if session.scan is not None:
        session.scan.cancel()
        session.scan = None
    scan = Scan(w, req)
    scan.start()
    page = int(req.get("page") or 0)
    if page <= 0:
        scan.proceed(0)
        return
    ahead = ScanAhead(scan, page)
    if not ahead.send_next(w.out):
        session.scan = ahead


def op_scan_more(w: Writer, req: dict, session) -> None:
    ahead, session.scan = session.scan, None
    if ahead is None:
        raise ValueError("no scan paused to go on with")
    if not ahead.send_next(w.out):
        session.scan = ahead


def cache_tagged(path, dir_fd=None) -> bool:
    """Whether the directory ``path`` (below ``dir_fd``) carries a
    CACHEDIR.TAG with its signature; the tree walker asks the same."""
    try:
        fd = os.open(os.fsencode(path) + b"/CACHEDIR.TAG", OPEN_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        return os.read(fd, len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    finally:
        os.close(fd)
