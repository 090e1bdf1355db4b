"""The frames both ends speak, and their limits: the first part of the
remote side (bootstrap.py sends wire, walk and agent as one source text).

Standard library only and Python 3.9 syntax: it runs on the backed-up host.
The server imports this same module to read and write frames, so the two
ends cannot drift apart.

A frame is a 4-byte big-endian payload length, a kind byte and the payload.
Every request is one JSON frame (a ``hashes`` request may announce DATA
frames of known digests that follow it); its replies stream (entries,
data, hashes) and end with one JSON message holding ``end`` or ``error``.
"""

from __future__ import annotations

import json
import os
import struct
import zlib

PROTOCOL = 1
MIN_PYTHON = (3, 9)
JSON, DATA, ENTRIES, HASHES = 1, 2, 3, 4  # frame kinds
COMPRESSED = 0x80  # flag on a kind: the payload is zlib data
HEADER = struct.Struct(">IB")
MAX_JSON = 1 << 20  # a JSON message (requests and replies)
MAX_BLOCK = 8 << 20  # the largest block or chunk of data one frame carries
MAX_FRAME = MAX_BLOCK + 4096  # any other frame, after decompression too
CHUNK = 1 << 20  # what a read sends per frame
PROBE_MIN, PROBE_MAX = 1 << 10, 1 << 16  # the start of a payload compressed to see whether all of it pays
OFFSET = struct.Struct(">Q")  # before data: its offset, or its block index
DIGEST = 16  # the block digest's size (stdlib has no xxh3: see block_digest)
BLOCK_HASHES = ("sha256-128", "blake2b-128")  # what a block digest may be made with
MAX_KNOWN = DIGEST << 22  # the known digests a hashes request may send (4 Mi blocks)
HASH = struct.Struct(">B16s")  # one block's kind and digest
BLOCK_DATA, BLOCK_HOLE, BLOCK_ZERO = 0, 1, 2
# One scan entry: depth, flags, name length, then lstat: mode uid gid size
# mtime_ns ctime_ns ino dev nlink rdev blocks; then the lengths of the
# symlink target, the xattr count, errno and the error text. Then name,
# target, each xattr (XATTR, name, value) and the error text.
ENTRY = struct.Struct(">HBHIIIqqqQQQQqHHHH")
XATTR = struct.Struct(">BI")
F_NOSTAT, F_ERROR, F_OTHER_FS = 1, 2, 4  # entry flags
MAX_XATTRS = 4 << 20  # per entry, names and values
BATCH = 256 << 10  # entries and hashes are sent in frames of about this size
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
KINDS = (JSON, DATA, ENTRIES, HASHES)
STAT_ATTRS = ("st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_ctime_ns")
STAT_ATTRS += ("st_ino", "st_dev", "st_nlink", "st_rdev", "st_blocks")


class FrameError(Exception):
    """The byte stream breaks the protocol (a bad or oversized frame)."""


class TruncatedFrame(FrameError):
    """The byte stream ended inside a frame (the other end went away)."""


def to_bytes(text: str) -> bytes:
    """A path or name from a JSON message (strings carry bytes as UTF-8 with
    surrogate escapes, the same on both ends whatever the locale)."""
    return text.encode("utf-8", "surrogateescape")


def to_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def read_frame(read):
    """The next frame from ``read(n)`` as (kind, dict or bytes); None at a
    clean end. A length over its kind's limit is refused before anything
    is read or allocated; compressed payloads inflate to the limit only."""
    header = read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise TruncatedFrame("truncated frame header")
    length, kind = HEADER.unpack(header)
    base = kind & ~COMPRESSED
    if base not in KINDS:
        raise FrameError(f"unknown frame kind {kind}")
    limit = MAX_JSON if base == JSON else MAX_FRAME
    if length > limit:
        raise FrameError(f"a frame of {length} bytes, over the limit of {limit}")
    payload = read(length) if length else b""
    if len(payload) != length:
        raise TruncatedFrame(f"truncated frame: {len(payload)} of {length} bytes")
    if kind & COMPRESSED:
        payload = inflate(payload, limit)
    return base, (decode_json(payload) if base == JSON else payload)


def inflate(payload: bytes, limit: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(payload, limit)
    except zlib.error as e:
        raise FrameError(f"bad compressed frame: {e}") from None
    if d.unconsumed_tail:
        raise FrameError(f"a compressed frame inflating over the limit of {limit}")
    if not d.eof or d.unused_data:
        raise FrameError("a truncated or padded compressed frame")
    return out


def decode_json(payload: bytes) -> dict:
    try:
        msg = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise FrameError(f"bad JSON message: {str(e)[:200]}") from None
    if not isinstance(msg, dict):
        raise FrameError("a JSON message that is not an object")
    return msg


def deflate(data: bytes, prefix: bytes = b""):
    """zlib level 1 of ``prefix + data`` when that saves a tenth. A probe
    of the start of ``data`` (a sixteenth of it, from PROBE_MIN up to
    PROBE_MAX) decides first, so incompressible data costs a fraction of
    the CPU: a tree of random small files 0.68 s instead of 1.70 s, a copy
    of /usr/share the same bytes on the wire for 5.4 s instead of 6.6 s
    (docs/remote.md, *Compression*)."""
    size = len(prefix) + len(data)
    if size < 512:
        return None
    probe = min(max(len(data) // 16, PROBE_MIN), PROBE_MAX)
    if len(data) > 2 * probe and len(zlib.compress(data[:probe], 1)) > probe * 0.9:
        return None
    packed = zlib.compress(prefix + data, 1)
    return packed if len(packed) < size * 0.9 else None


class Writer:
    """Frames onto a binary stream."""

    def __init__(self, out):
        self.out = out

    def send(self, kind: int, payload, prefix: bytes = b"", compress: bool = False) -> None:
        if compress:
            packed = deflate(payload, prefix)
            if packed is not None:
                kind, prefix, payload = kind | COMPRESSED, b"", packed
        self.out.write(HEADER.pack(len(prefix) + len(payload), kind) + prefix)
        self.out.write(payload)

    def json(self, **msg) -> None:
        self.send(JSON, json.dumps(msg, separators=(",", ":")).encode())

    def fail(self, e: OSError, **more) -> None:
        self.json(error=e.strerror or str(e), errno=e.errno or 0, **more)


def block_digest(name: str):
    """The function making a block's DIGEST-byte digest with the hash
    ``name`` (one of BLOCK_HASHES): SHA-256 or BLAKE2b, cut to 16 bytes."""
    import hashlib  # here: a local walk imports this module (via walk.cache_tagged); OpenSSL took 4 ms

    if name == "sha256-128":
        return lambda data: hashlib.sha256(data).digest()[:DIGEST]
    if name == "blake2b-128":
        return lambda data: hashlib.blake2b(data, digest_size=DIGEST).digest()
    raise ValueError(f"unknown block hash {str(name)[:40]!r}")


def preferred_hash(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The block hash this machine makes fastest: SHA-256 where the CPU has
    instructions for it (x86 SHA-NI, Arm's SHA2: about twice BLAKE2b's
    speed), BLAKE2b elsewhere (where it is about twice SHA-256's). Read from
    the CPU's flags, not timed, so a host keeps its choice from run to run."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):  # the first CPU's
                    words = value.split()
                    return "sha256-128" if "sha_ni" in words or "sha2" in words else "blake2b-128"
    except OSError:
        pass
    return "blake2b-128"


def stat_fields(st) -> list:
    """An lstat or fstat as sent: the STAT_ATTRS fields, in order."""
    return [
        st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
        st.st_ino, st.st_dev, st.st_nlink, st.st_rdev, st.st_blocks,
    ]  # fmt: skip
