"""Every LVM and device-mapper command inkind runs, and the parsing of what
they print: ``lvs``, ``lvcreate``, ``lvremove``, ``dmsetup`` and
``thin_delta``.

One module on purpose: the ``lvm`` source and the ``lvm`` history provider
both go through it, and tests put fake executables first on PATH that
emulate these commands over image files (a machine without device-mapper
cannot run LVM itself). Failures are one :class:`LvmError` line naming the
command and the last line it printed.

The commands are :class:`Commands` methods over a *runner*, the one thing
that differs between machines: :func:`run` here (the module-level
functions are this machine's, ``LOCAL``), or :func:`channel_runner` on a
source's host through its remote channel, so a remote lvm source parses
and decides exactly as a local one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inkind.errors import SourceError
from inkind.remote.errors import RemoteError, RemoteOSError

if TYPE_CHECKING:
    from inkind.remote.channel import Channel

log = logging.getLogger("inkind")

SECTOR = 512
TAG = "inkind"
FIELDS = (
    "vg_name",
    "lv_name",
    "lv_attr",
    "lv_size",
    "pool_lv",
    "thin_id",
    "lv_uuid",
    "lv_path",
    "lv_dm_path",
    "origin",
    "lv_tags",
    "chunk_size",
    "metadata_lv",
    "data_percent",
)


# What lvs or thin_delta may print over a channel: the whole output is
# parsed at once, so a host cannot make the server hold more than this.
MAX_OUTPUT = 64 << 20
_INSTALL = "install lvm2 / thin-provisioning-tools"

Runner = Callable[[list[str], str], str]
"""``runner(argv, what)``: run a command, return its stdout; its failure is
one LvmError line starting with ``what``."""


class LvmError(SourceError):
    """An LVM or device-mapper command failed, or printed what does not parse."""


def run(argv: list[str], what: str) -> str:
    """Run one command on this machine; its failure is one LvmError line."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LvmError(f"{what}: command not found: {argv[0]} ({_INSTALL})") from None
    if done.returncode:
        raise LvmError(_exited(what, argv[0], done.returncode, done.stderr or done.stdout))
    return done.stdout


def _exited(what: str, program: str, status: int, output: str) -> str:
    detail = output.strip().splitlines()
    tail = f": {detail[-1].strip()}" if detail else ""
    return f"{what}: {program} exited {status}{tail}"


def channel_runner(channel: Channel) -> Runner:
    """A runner for the commands of ``channel``'s host (the remote side's
    ``run`` op, under its sudo and PATH). Every failure is an LvmError
    naming the host, a dead connection too: a snapshot's removal in a
    ``finally`` then logs it, and the next run removes the leftover."""
    where = f"host {channel.host}"

    def run_there(argv: list[str], what: str) -> str:
        try:
            rp = channel.run(argv)
            out = bytearray()
            for chunk in rp:
                out += chunk
                if len(out) > MAX_OUTPUT:
                    raise channel.fail(f"{what}: {argv[0]} printed more than {MAX_OUTPUT} bytes")
        except RemoteOSError as e:
            if e.errno == errno.ENOENT:
                raise LvmError(f"{where}: {what}: command not found there: {argv[0]} ({_INSTALL})") from None
            raise LvmError(str(e)) from None
        except RemoteError as e:
            raise LvmError(f"{e} ({what})") from None
        if rp.status:
            raise LvmError(
                f"{where}: {_exited(what, argv[0], rp.status, rp.stderr or out.decode('utf-8', 'replace'))}"
            )
        return out.decode("utf-8", "replace")

    return run_there


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name of ``vg/lv``: dashes inside each name doubled,
    one dash between (``my-vg``/``pool`` gives ``my--vg-pool``)."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


@dataclass(frozen=True)
class Volume:
    """One row of ``lvs`` (sizes in bytes)."""

    vg: str
    lv: str
    attr: str
    size: int
    pool: str
    thin_id: int | None
    uuid: str
    path: str
    dm_path: str
    origin: str
    tags: tuple[str, ...]
    chunk_size: int
    metadata_lv: str
    data_percent: float

    @property
    def full_name(self) -> str:
        return f"{self.vg}/{self.lv}"

    @property
    def device(self) -> str:
        """The path to read the volume from."""
        return self.path or self.dm_path or f"/dev/mapper/{dm_name(self.vg, self.lv)}"

    @property
    def hidden(self) -> bool:
        """Internal volumes (``[pool_tmeta]``) that ``lvs -a`` shows in brackets."""
        return self.lv.startswith("[")

    @property
    def is_thin(self) -> bool:
        return bool(self.pool)

    @property
    def is_pool(self) -> bool:
        return self.attr[:1] == "t"

    @property
    def invalid(self) -> bool:
        """A classic snapshot that filled up (``lv_attr`` state I or S)."""
        return self.attr[4:5] in ("I", "S")


def _int(text: str) -> int:
    return int(text) if text.strip() else 0


def parse_lvs(out: str) -> list[Volume]:
    """The rows of ``lvs --reportformat json --units b --nosuffix``."""
    try:
        rows = json.loads(out)["report"][0]["lv"]
        return [
            Volume(
                vg=r["vg_name"],
                lv=r["lv_name"],
                attr=r.get("lv_attr", ""),
                size=_int(r.get("lv_size", "")),
                pool=r.get("pool_lv", "").strip("[]"),
                thin_id=int(r["thin_id"]) if r.get("thin_id", "").strip() else None,
                uuid=r.get("lv_uuid", ""),
                path=r.get("lv_path", ""),
                dm_path=r.get("lv_dm_path", ""),
                origin=r.get("origin", "").strip("[]"),
                tags=tuple(t for t in r.get("lv_tags", "").split(",") if t),
                chunk_size=_int(r.get("chunk_size", "")),
                metadata_lv=r.get("metadata_lv", ""),
                data_percent=float(r.get("data_percent") or 0),
            )
            for r in rows
        ]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise LvmError("lvs: printed a report that does not parse") from None


@dataclass(frozen=True)
class Delta:
    """What ``thin_delta`` found between two thin devices, in pool data
    blocks of ``block_sectors`` 512-byte sectors each."""

    block_sectors: int
    changed: list[tuple[int, int]]  # (begin, length): different or right_only
    discarded: list[tuple[int, int]]  # left_only: mapped before, unmapped now

    def byte_ranges(self, size: int) -> list[tuple[int, int]]:
        """Changed and discarded blocks as byte (offset, length) ranges,
        clipped to a volume of ``size`` bytes."""
        unit = self.block_sectors * SECTOR
        out = []
        for begin, length in sorted(self.changed + self.discarded):
            start = begin * unit
            stop = min(size, (begin + length) * unit)
            if start < stop:
                out.append((start, stop - start))
        return out


def parse_delta(text: str) -> Delta:
    """Parse ``thin_delta`` XML, flat (``<different begin length/>``) or
    verbose (``<different><range begin length/></different>``)."""
    import xml.etree.ElementTree as ET  # here: only an lvm thin run needs it, not every start

    if not text.strip():
        raise LvmError("thin_delta printed nothing")
    try:
        root = ET.fromstring(text)
        diff = root.find("diff")
        if root.tag != "superblock" or diff is None:
            raise ValueError("no superblock/diff element")
        sectors = int(root.attrib["data_block_size"])
        changed: list[tuple[int, int]] = []
        discarded: list[tuple[int, int]] = []
        into = {"different": changed, "right_only": changed, "left_only": discarded, "same": None}
        for element in diff:
            if element.tag not in into:
                raise ValueError(f"unknown element <{element.tag}>")
            target = into[element.tag]
            for r in [element] if "begin" in element.attrib else list(element):
                begin, length = int(r.attrib["begin"]), int(r.attrib["length"])
                if begin < 0 or length < 0:
                    raise ValueError("negative range")
                if target is not None:
                    target.append((begin, length))
    except (ET.ParseError, ValueError, KeyError) as e:
        raise LvmError(f"thin_delta printed XML that does not parse ({e})") from None
    if sectors <= 0:
        raise LvmError("thin_delta: data_block_size is not positive")
    return Delta(sectors, changed, discarded)


def find(volumes: list[Volume], vg: str, lv: str) -> Volume | None:
    return next((v for v in volumes if v.vg == vg and v.lv == lv), None)


class Commands:
    """The LVM commands of one machine, each run by ``runner``: :func:`run`
    for this one (``LOCAL``), :func:`channel_runner` for a source's host."""

    def __init__(self, runner: Runner = run):
        self.run = runner

    def list_volumes(self) -> list[Volume]:
        """Every logical volume, internal ones included."""
        argv = ["lvs", "--reportformat", "json", "-a", "-o", ",".join(FIELDS), "--units", "b", "--nosuffix"]
        return parse_lvs(self.run(argv, "list logical volumes"))

    def create_snapshot(
        self, origin: Volume, name: str, size: str | None, tag: str = TAG, *, active: bool = True
    ) -> None:
        """A read-only snapshot, ``active`` and without activation skip unless
        told (a snapshot to read now must be). ``size`` (e.g. ``"10%ORIGIN"``
        or ``"2G"``) makes a classic snapshot; None a thin one."""
        argv = ["lvcreate", "-s", *(["-kn", "-ay"] if active else []), "-pr", "--addtag", tag, "-n", name]
        if size is not None:
            argv += ["-l" if "%" in size else "-L", size]
        self.run([*argv, origin.full_name], f"snapshot {origin.full_name}")

    def remove(self, vg: str, lv: str) -> None:
        self.run(["lvremove", "-y", f"{vg}/{lv}"], f"remove {vg}/{lv}")

    def pool_message(self, pool: Volume, message: str) -> None:
        target = f"{dm_name(pool.vg, pool.lv)}-tpool"
        self.run(["dmsetup", "message", target, "0", message], f"thin pool {pool.full_name}: {message}")

    @contextlib.contextmanager
    def metadata_snapshot(self, pool: Volume, released: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Reserve the pool's metadata snapshot for ``thin_delta -m``; release
        it in all cases (a reserved one blocks the next reservation), calling
        ``released`` once that succeeded."""
        self.pool_message(pool, "reserve_metadata_snap")
        try:
            yield
        except BaseException:
            try:
                self.pool_message(pool, "release_metadata_snap")
                released()
            except LvmError as e:
                log.error("%s", e)
            raise
        self.pool_message(pool, "release_metadata_snap")
        released()

    def thin_delta(self, metadata_dev: str, snap1: int, snap2: int) -> Delta:
        """The blocks that differ between thin devices ``snap1`` and ``snap2``,
        read from the pool's reserved metadata snapshot."""
        out = self.run(
            ["thin_delta", "-m", "--snap1", str(snap1), "--snap2", str(snap2), metadata_dev],
            f"thin_delta between thin ids {snap1} and {snap2}",
        )
        return parse_delta(out)


# This machine's commands, as module functions (the history provider, the
# devices command and a local source use these).
LOCAL = Commands()
list_volumes = LOCAL.list_volumes
create_snapshot = LOCAL.create_snapshot
remove = LOCAL.remove
pool_message = LOCAL.pool_message
metadata_snapshot = LOCAL.metadata_snapshot
thin_delta = LOCAL.thin_delta
