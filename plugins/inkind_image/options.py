"""``[sources.NAME]`` keys of an image source, checked when the config loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inkind import DEFAULT_BLOCK, ConfigError, check_block_size

_IMAGE_SUFFIXES = (".img", ".raw", ".bin", ".iso")


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
        self.block_size = check_block_size(self.block_size, where)
        if not self.name:
            self.name = default_name(self.path)
        if not self.name or "/" in self.name or "\0" in self.name or self.name.startswith("."):
            raise ConfigError(f"config: {where}.name: must be a plain file name, got {self.name!r}")

    @property
    def image_file(self) -> str:
        return f"{self.name}.img"
