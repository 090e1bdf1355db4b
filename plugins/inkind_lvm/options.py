"""The ``lvm`` source's configuration keys."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from inkind import DEFAULT_BLOCK, ConfigError, check_block_size, lvm

# lvcreate's -L size (units k..e) or -l extents, with a % of ORIGIN, VG, FREE or PVS.
_SNAPSHOT_SIZE = re.compile(r"^(\d+(\.\d+)?[bskmgtpe]?|\d+%(ORIGIN|VG|FREE|PVS))$", re.IGNORECASE)
_PATTERN = re.compile(r"^[A-Za-z0-9+_.\-*?\[\]]+/[A-Za-z0-9+_.\-*?\[\]]+$")


@dataclass
class LvmOptions:
    """``volume`` ("vg/lv") or ``volumes`` (globs such as "vg/*");
    ``snapshot_size`` of classic snapshots (lvcreate -L or -l);
    ``keep_base_snapshot``: keep one thin snapshot per thin volume so the
    next run reads only what changed; ``block_size`` as for ``image``."""

    volume: str = ""
    volumes: list[str] = field(default_factory=list)
    snapshot_size: str = "10%ORIGIN"
    keep_base_snapshot: bool = True
    block_size: int | str = DEFAULT_BLOCK

    def check(self, where: str) -> None:
        self.block_size = check_block_size(self.block_size, where)
        if bool(self.volume) == bool(self.volumes):
            raise ConfigError(
                f'config: {where}: set exactly one of volume = "vg/lv" or volumes = ["vg/*", ...]'
            )
        key = "volume" if self.volume else "volumes"
        for pattern in self.patterns:
            if not _PATTERN.match(pattern):
                raise ConfigError(f'config: {where}.{key}: {pattern!r} is not "vg/lv" (globs allowed)')
        if not _SNAPSHOT_SIZE.match(self.snapshot_size):
            raise ConfigError(
                f'config: {where}.snapshot_size: {self.snapshot_size!r} is not an lvcreate size such as "10%ORIGIN" or "2G"'
            )

    @property
    def patterns(self) -> list[str]:
        return [self.volume] if self.volume else list(self.volumes)

    def matches(self, vol: lvm.Volume) -> bool:
        return any(fnmatch.fnmatchcase(vol.full_name, p) for p in self.patterns)
