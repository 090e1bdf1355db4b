"""The ops of a remote side as Python methods: each sends one request and
returns what streams its replies (no round trip per file or block), checked
as they arrive (transfers.py, listing.py); every failure is one line naming
the host (connection.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from inkind.remote import transfers as t
from inkind.remote.bootstrap import BOOT
from inkind.remote.connection import Connection
from inkind.remote.errors import RemoteError, RemoteOSError
from inkind.remote.listing import MAX_SIZE, MAX_TARGET, Listing, RemoteEntry, RemoteStat
from inkind.remote.ssh import SshTarget
from inkind.remote.wire import (
    BLOCK_HASHES,
    DIGEST,
    ENTRIES,
    JSON,
    MAX_JSON,
    MAX_KNOWN,
    FrameError,
    block_digest,
    to_bytes,
    to_text,
)
from inkind.stats import Stats

__all__ = ["BLOCK_SIZE", "MAX_SPANS", "Channel", "RemoteError", "RemoteOSError", "RemoteTemp", "open_channel"]

BLOCK_SIZE = 4 << 20
PAGE = 4000  # entries of a listing a caller of scan_pages holds at a time
BATCH_JSON = MAX_JSON // 2  # a request of many paths or blocks is split at this size
MAX_SPANS = BATCH_JSON // 24  # (first, count) block runs one ``hashes`` request may ask for


@dataclass(frozen=True)
class RemoteTemp:
    """A temp file the remote side made (``sqlite_backup``): read it, then
    ``Channel.remove`` it (the remote side also removes it when it ends)."""

    path: bytes
    size: int


class Channel(Connection):
    """One remote side over a pipe and its ops; use as a context manager:
    ``with Channel(argv, host, run.stats) as ch: for e in ch.scan(root): ...``."""

    def scan(
        self,
        root: bytes,
        *,
        one_file_system: bool = True,
        exclude_caches: bool = True,
        exclude: Sequence[tuple[str, bool]] = (),
    ) -> Iterator[RemoteEntry]:
        """The tree under ``root``: the root first (key ``()``), then
        depth-first, each directory's names in byte order. ``exclude``:
        (regex, excludes) pairs from listing.gitignore_rules."""
        self._begin(**_scan_request(root, one_file_system, exclude_caches, exclude))
        return self._pend(self._whole(root))

    def scan_pages(  # size: scan's options and the page size
        self,
        root: bytes,
        *,
        page: int = PAGE,
        one_file_system: bool = True,
        exclude_caches: bool = True,
        exclude: Sequence[tuple[str, bool]] = (),
    ) -> Iterator[list[RemoteEntry]]:
        """The listing of :meth:`scan`, ``page`` entries at a time. While
        the caller works on a page the walk on the host waits, so the
        channel is free for other ops (reading the files the page showed
        changed); asking for the next page goes on with the walk."""
        if page < 1:
            raise ValueError("page must be at least 1")
        self._begin(**_scan_request(root, one_file_system, exclude_caches, exclude), page=page)
        return self._pages(root, page)

    def _pages(self, root: bytes, page: int) -> Iterator[list[RemoteEntry]]:
        listing = Listing()
        while True:
            entries: list[RemoteEntry] = []
            with self._guard():
                for entry in self._entries(root, listing):
                    entries.append(entry)
                    if len(entries) > page:  # a page is held whole: its size is the server's
                        raise FrameError(f"a page of more than the {page} entries asked")
            yield entries
            if listing.done:
                return
            self._begin(op="scan_more", page=page)

    def _whole(self, root: bytes) -> Iterator[RemoteEntry]:
        listing = Listing()
        yield from self._entries(root, listing)
        if not listing.done:
            raise FrameError("a page end in a listing asked for whole")

    def _entries(self, root: bytes, listing: Listing) -> Iterator[RemoteEntry]:
        """The entries up to the end of the page or of the listing (then
        ``listing.done``)."""
        while True:
            kind, obj = self.recv()
            if kind == ENTRIES:
                yield from listing.decode(obj)
                continue
            if kind != JSON:
                raise FrameError(f"a frame of kind {kind} in a listing")
            self.check(obj, root)
            ends = obj.get("end") is True
            if (
                ends == (obj.get("page_end") is True)
                or obj.get("entries") != listing.count
                or not listing.started
            ):
                raise FrameError(f"a listing that ends wrong: {str(obj)[:200]}")
            listing.done = ends
            return

    def read(self, path: bytes, ranges: t.Ranges | None = None) -> t.RemoteFile:
        """One file (or block device): iterate ``.chunks()``, then look at
        ``.after``/``.changed``. RemoteOSError if it cannot be opened."""
        files = self.read_files([(path, ranges)])
        rf = next(files)
        if rf.error is not None and rf.before is None:
            raise RemoteOSError(self.host, path, rf.error, rf.errno)
        return rf

    def read_files(
        self, files: Iterable[bytes | tuple[bytes, t.Ranges | None]], compress: bool = True
    ) -> Iterator[t.RemoteFile]:
        """Many files with no round trip each: one RemoteFile per path, in
        order; consume each one's chunks before the next (or they are
        dropped). ``ranges``: (offset, length) pairs, None for all of it."""
        wanted = [(f, None) if isinstance(f, bytes) else (f[0], t.normal_ranges(f[1])) for f in files]
        self._settle()
        return self._pend(self._files(wanted, compress))

    def _files(self, wanted: list, compress: bool) -> Iterator[t.RemoteFile]:
        for batch in _batches(wanted, lambda f: len(f[0]) * 6 + 40 + 44 * len(f[1] or ())):
            self._send(op="read", files=[[to_text(p), r] for p, r in batch], compress=compress)
            for i, (path, ranges) in enumerate(batch):
                msg = self.message()
                if msg.get("file") != i:
                    self.check(msg, path)
                    raise FrameError(f"a reply out of place in a read: {str(msg)[:200]}")
                rf = t.RemoteFile(path)
                if "error" in msg:
                    rf.error, rf.errno = str(msg["error"])[:500], t.want_int(msg, "errno", 1 << 16)
                    yield rf
                    continue
                rf.before, rf.size = t.want_stat(msg), t.want_int(msg, "size")
                rf.stream = self._guarded(t.file_chunks(self, rf, i, ranges))
                yield rf
                for _ in rf.stream:
                    pass
            self._end(self.message(), b"")

    def _end(self, msg: dict, path: bytes) -> None:
        self.check(msg, path)
        if msg.get("end") is not True:
            raise self.fail(f"an op that ends wrong: {str(msg)[:200]}")

    def hashes(
        self,
        path: bytes,
        block_size: int = BLOCK_SIZE,
        spans: t.Ranges | None = None,
        hash: str | None = None,
        known: bytes | None = None,
    ) -> t.BlockHashes:
        """One digest per block of a file or device (holes and zero blocks
        flagged, not hashed): iterate the result, then ``.after``.
        ``spans``: (first, count) runs of block indices, in order, to hash
        those blocks only (what a thin-pool delta names). ``hash``: the
        block hash (wire.BLOCK_HASHES; default the host's block_hash).
        ``known``: a digest for every block (DIGEST bytes each, in that
        hash): a block with data whose digest differs comes with its data
        (``BlockHash.data``), in the same stream."""
        wanted = t.block_spans(spans)
        if wanted is not None and len(wanted) > MAX_SPANS:
            raise ValueError(f"{len(wanted)} block spans are over what one request holds")
        hash = self._hash(hash)
        bs = t.check_block_size(block_size)
        if known is not None and (len(known) % DIGEST or not 0 < len(known) <= MAX_KNOWN):
            raise ValueError(f"known digests of {len(known)} bytes")
        count = len(known) if known is not None else 0
        request = {"op": "hashes", "path": to_text(path), "block_size": bs, "spans": wanted, "hash": hash}
        self._begin(known or b"", **request, known=count)
        with self._guard():
            head = self.message()
            self.check(head, path)
            if head.get("block_size") != block_size:
                raise FrameError(f"hashes of another block size: {head.get('block_size')!r}")
            bh = t.BlockHashes(path, t.want_stat(head), size=t.want_int(head, "size"), block_size=block_size)
            bh.spans, bh.hash, bh.with_data = wanted, hash, known is not None
        bh.stream = self._pend(t.hash_records(self, bh))
        return bh

    def blocks(
        self,
        path: bytes,
        indices: Iterable[int],
        block_size: int = BLOCK_SIZE,
        compress: bool = True,
        hash: str | None = None,
    ) -> t.BlockStream:
        """The data of the listed blocks, each checked against the digest it
        comes with (``hash`` as :meth:`hashes`'); iterate the result for one
        Block per index, in order."""
        t.check_block_size(block_size)
        hash = self._hash(hash)
        wanted = [int(i) for i in indices]
        if any(not 0 <= i <= MAX_SIZE // block_size for i in wanted):
            raise ValueError("block index out of range")
        bs = t.BlockStream(path)
        batches = list(_batches(wanted, lambda i: 12)) or [[]]

        request = {"op": "blocks", "path": to_text(path), "block_size": block_size, "compress": compress}
        request["hash"] = hash

        def start(batch: list[int], first: bool) -> None:
            if not first:
                self._send(**request, indices=batch)
            head = self.message()
            self.check(head, path)
            st, bs.size = t.want_stat(head), t.want_int(head, "size")
            bs.before = bs.before or st

        def stream() -> Iterator[t.Block]:
            for n, batch in enumerate(batches):
                if n:
                    start(batch, False)
                yield from t.block_frames(self, bs, batch, block_size, block_digest(hash))
                end = self.message()
                self._end(end, path)
                bs.after = t.want_stat(end)

        self._begin(**request, indices=batches[0])
        with self._guard():
            start(batches[0], True)
        bs.stream = self._pend(stream())
        return bs

    def _hash(self, name: str | None) -> str:
        if name is None:
            return self.block_hash
        if name not in BLOCK_HASHES:
            raise ValueError(f"unknown block hash {name!r}")
        return name

    def run(
        self, argv: Sequence[str], env: dict[str, str] | None = None, compress: bool = True
    ) -> t.RemoteProcess:
        """A command on the host (stdin /dev/null): iterate its stdout, then
        ``.status`` and ``.stderr``. RemoteOSError if it cannot start."""
        rp = t.RemoteProcess([str(a) for a in argv])
        self._begin(op="run", argv=rp.argv, env=env or {}, compress=compress)
        with self._guard():
            msg = self.message()
            self.check(msg, rp.argv[0].encode())
            rp.pid = t.want_int(msg, "pid", 1 << 32)
        rp.stream = self._pend(t.process_output(self, rp))
        return rp

    def sqlite_backup(
        self, path: bytes, directory: bytes | None = None, busy_timeout: float = 60.0
    ) -> RemoteTemp:
        """A consistent copy of a live SQLite database, made on the host
        with the backup API into a temp file in ``directory`` (/var/tmp)."""
        self._begin(
            op="sqlite_backup",
            path=to_text(path),
            dir=to_text(directory) if directory else None,
            busy_timeout=busy_timeout,
        )
        return self._temp(path, b".inkind-sqlite-", "a sqlite copy")

    def temp_dir(self, directory: bytes | None = None) -> RemoteTemp:
        """An empty directory (0700) on the host for a tool's output files,
        in ``directory`` (/var/tmp); ``remove`` removes it with its files."""
        self._begin(op="temp_dir", dir=to_text(directory) if directory else None)
        return self._temp(directory or b"/var/tmp", b".inkind-dump-", "a temp directory")

    def _temp(self, path: bytes, prefix: bytes, what: str) -> RemoteTemp:
        with self._guard():
            msg = self.message()
            self._end(msg, path)
            tmp = msg.get("path")
            if not isinstance(tmp, str):
                raise FrameError(f"{what} without its path")
            raw = to_bytes(tmp)
            if not raw.startswith(b"/") or b"\0" in raw or not raw.rsplit(b"/", 1)[1].startswith(prefix):
                raise FrameError(f"{what} at a strange path: {raw[:300]!r}")
            return RemoteTemp(raw, t.want_int(msg, "size"))

    def which(self, name: str, directory: bytes | None = None) -> str | None:
        """Where the program ``name`` is on the host: ``directory/name`` if
        it is executable there, else ``name`` looked up on the remote
        side's PATH; None when it is not found."""
        self._begin(op="which", name=name, dir=to_text(directory) if directory is not None else None)
        with self._guard():
            msg = self.message()
            self._end(msg, name.encode())
            found = msg.get("path")
            if found is not None and (
                not isinstance(found, str) or not 0 < len(found) <= MAX_TARGET or "\0" in found
            ):
                raise FrameError(f"a strange path for {name}: {str(found)[:300]!r}")
            return found

    def stat(self, path: bytes) -> RemoteStat:
        """The stat of ``path`` on the host (symlinks followed, as an open
        follows them); RemoteOSError if there is none."""
        self._begin(op="stat", path=to_text(path))
        with self._guard():
            msg = self.message()
            self._end(msg, path)
            return t.want_stat(msg)

    def remove(self, temp: RemoteTemp) -> None:
        """Remove a temp file the remote side made (it removes nothing else)."""
        self._begin(op="remove", path=to_text(temp.path))
        with self._guard():
            self._end(self.message(), temp.path)


def open_channel(target: SshTarget, stats: Stats) -> Channel:
    """The remote side started on ``target`` over ssh (a context manager:
    one connection per source run)."""
    argv = target.argv([target.remote_python, "-c", BOOT])
    return Channel(
        argv, target.host, stats=stats, python=target.remote_python, describe=target.describe_failure
    )


def _scan_request(
    root: bytes, one_file_system: bool, exclude_caches: bool, exclude: Sequence[tuple[str, bool]]
) -> dict[str, object]:
    return {
        "op": "scan",
        "path": to_text(root),
        "one_file_system": one_file_system,
        "exclude_caches": exclude_caches,
        "exclude": [list(r) for r in exclude],
    }


def _batches(items: list, cost) -> Iterator[list]:
    """``items`` in runs whose JSON stays under BATCH_JSON."""
    batch, size = [], 0
    for item in items:
        c = cost(item)
        if batch and size + c > BATCH_JSON:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += c
    if batch:
        yield batch
