"""What the sources that store raw images (image, lvm) share: the block
size option, the block-copy engine per image, verify, and the dd/cp
restore. Each such source keeps ``NAME/<image>.img`` files only."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import stat
from abc import abstractmethod
from pathlib import Path
from typing import Any

from inkind.engines.blockcopy.copy import CopyResult
from inkind.engines.blockcopy.engine import BlockCopy
from inkind.errors import ConfigError
from inkind.remote.ssh import SshTarget, pipeline
from inkind.source import Finding, RunContext, Source
from inkind.store.files import is_temp_name
from inkind.store.journal import pending_journals
from inkind.store.paths import list_dir, open_at, open_beneath
from inkind.store.xattrs import XAttrs
from inkind.ui import fields, human_bytes
from inkind.verify import check_file, existing

log = logging.getLogger("inkind")

MIN_BLOCK = 64 << 10
MAX_BLOCK = 64 << 20
DEFAULT_BLOCK = 4 << 20
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: int | str) -> int | None:
    """``4194304``, ``"4M"``, ``"4MiB"`` or ``"64k"`` in bytes; None if not a size."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    return int(m.group(1)) * _UNITS[m.group(2).lower()] if m else None


def check_block_size(value: int | str, where: str) -> int:
    """The ``block_size`` option in bytes, or a ConfigError naming ``where``."""
    size = parse_size(value)
    if size is None or size & (size - 1) or not MIN_BLOCK <= size <= MAX_BLOCK:
        raise ConfigError(
            f"config: {where}.block_size: must be a power of two from 64 KiB to 64 MiB "
            f'(e.g. 4194304 or "4M"), got {value!r}'
        )
    return size


class RawImageSource(Source):
    """Base of sources whose stored objects are raw images."""

    def block_size(self) -> int:
        return int(self.options.block_size)

    def engine(self, run: RunContext, image_file: str, label: str) -> BlockCopy:
        return BlockCopy(run.root_fd, f"{run.name}/{image_file}", self.block_size(), run.stats, label=label)

    def verify(self, run: RunContext) -> list[Finding]:
        """Each image against its xxh3 and its manifest; journals and temps
        are recoverable."""
        findings = [
            Finding(j, "pending journal; the next run replays it", True)
            for j in pending_journals(run.root_fd, run.name)
        ]
        for name in sorted(list_dir(run.data_fd)):
            rel = f"{run.name}/{name}"
            st = os.stat(name, dir_fd=run.data_fd, follow_symlinks=False)
            if is_temp_name(name):
                findings.append(Finding(rel, "leftover temp; the next run removes it", True))
            elif stat.S_ISREG(st.st_mode):
                run.stats.objects_seen += 1
                if name.endswith(".img"):
                    findings += self.engine(run, name, rel).verify()
                else:
                    fd = open_at(run.data_fd, name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    try:
                        found = check_file(fd, rel, st.st_size)
                    finally:
                        os.close(fd)
                    findings += [found] if found else []
        return findings

    def stored_objects(self, run: RunContext) -> list[str]:
        """Each stored image, its block manifest and, for an image read
        from another host, its digests."""
        out = []
        for name in sorted(list_dir(run.data_fd)):
            if not is_temp_name(name) and stat.S_ISREG(
                os.stat(name, dir_fd=run.data_fd, follow_symlinks=False).st_mode
            ):
                engine = self.engine(run, name, name)
                out += existing(run.root_fd, [engine.image_rel, engine.manifest_rel, engine.digests_rel])
        return out

    def remove_strays(self, run: RunContext, keep: set[str]) -> None:
        """A full pass removes the images (and manifests) this source no
        longer produces: its ``name`` or its selection changed."""
        for name in list_dir(run.data_fd):
            if name.endswith(".img") and name not in keep and not is_temp_name(name):
                log.info("%s: removing %s (no longer produced by this source)", run.name, name)
                self.engine(run, name, name).remove()

    def account(self, run: RunContext, result: CopyResult, what: str) -> None:
        """Count and log one image's copy; a suspect image schedules a full pass."""
        if result.changed:
            run.stats.objects_changed += 1
        else:
            run.stats.objects_unchanged += 1
        if result.old_size is not None and result.old_size != result.size:
            how = "grew" if result.size > result.old_size else "shrank"
            log.info(
                "%s: %s %s from %s to %s; image resized",
                run.name,
                what,
                how,
                human_bytes(result.old_size),
                human_bytes(result.size),
                extra=fields(old_size=result.old_size, size=result.size),
            )
        if result.suspect:
            run.state.data["full_pending"] = True
        log.info(
            "%s: %s: %d of %d block(s) read, %d changed%s",
            run.name,
            what,
            result.blocks_read,
            result.blocks,
            result.blocks_changed,
            f" ({result.mode} update)" if result.mode else "",
            extra=fields(
                blocks=result.blocks,
                blocks_read=result.blocks_read,
                blocks_changed=result.blocks_changed,
                mode=result.mode,
            ),
        )

    def describe(self, run: RunContext, engine: BlockCopy, desc: dict[str, Any]) -> None:
        """``user.inkind.source`` on the image: what it is an image of (JSON)."""
        fd = open_beneath(run.root_fd, engine.image_rel, os.O_RDONLY)
        try:
            XAttrs(fd, stats=run.stats)["source"] = json.dumps(desc, sort_keys=True)
        finally:
            os.close(fd)

    @abstractmethod
    def image_for_restore(self, path: str | None, state: dict[str, Any]) -> str:
        """The stored image file that ``restore`` with ``path`` means."""

    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        src = str(data_dir / self.image_for_restore(path, state))
        via, dest = self.restore_target(dest)
        if via is not None:
            return [pipeline(remote_dd(src, via, dest))]
        try:
            is_device = stat.S_ISBLK(os.stat(dest).st_mode)
        except OSError:
            is_device = False
        if is_device:
            return [["dd", f"if={src}", f"of={dest}", "bs=4M", "conv=sparse,fsync", "status=progress"]]
        return [["cp", "--sparse=always", src, dest]]


def remote_dd(image: str, via: SshTarget, dest: str) -> str:
    """The pipeline that writes ``image`` to ``dest`` on ``via``'s host (a
    device or a file; zero blocks are skipped, so a file stays sparse),
    as one shell line: dd reads here, ssh carries, dd writes there."""
    write = (["sudo", "-n"] if via.remote_sudo else []) + ["dd", f"of={dest}", "bs=4M", "conv=sparse,fsync"]
    ssh = shlex.join([*via.ssh_command, "--", via.host, shlex.join(write)])
    return f"{shlex.join(['dd', f'if={image}', 'bs=4M', 'status=progress'])} | {ssh}"
