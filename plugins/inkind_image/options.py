"""``[sources.NAME]`` keys of an image source, checked when the config loads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from inkind import ConfigError

MIN_BLOCK = 64 << 10
MAX_BLOCK = 64 << 20
DEFAULT_BLOCK = 4 << 20
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_IMAGE_SUFFIXES = (".img", ".raw", ".bin", ".iso")


def parse_size(value: int | str) -> int | None:
    """``4194304``, ``"4M"``, ``"4MiB"`` or ``"64k"`` in bytes; None if not a size."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    return int(m.group(1)) * _UNITS[m.group(2).lower()] if m else None


def default_name(path: Path) -> str:
    """``/dev/sdb`` -> ``sdb``, ``/srv/vm1.img`` -> ``vm1``."""
    name = path.name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class ImageOptions:
    """``path``: the device or image file; ``block_size``: the change-detection
    granularity (a power of two, 64 KiB to 64 MiB); ``name``: the stored
    image is ``NAME/<name>.img`` (default: from the path)."""

    path: Path
    block_size: int | str = DEFAULT_BLOCK
    name: str = ""

    def check(self, where: str) -> None:
        size = parse_size(self.block_size)
        if size is None or size & (size - 1) or not MIN_BLOCK <= size <= MAX_BLOCK:
            raise ConfigError(
                f"config: {where}.block_size: must be a power of two from 64 KiB to 64 MiB "
                f'(e.g. 4194304 or "4M"), got {self.block_size!r}'
            )
        self.block_size = size
        if not self.name:
            self.name = default_name(self.path)
        if not self.name or "/" in self.name or "\0" in self.name or self.name.startswith("."):
            raise ConfigError(f"config: {where}.name: must be a plain file name, got {self.name!r}")

    @property
    def image_file(self) -> str:
        return f"{self.name}.img"
