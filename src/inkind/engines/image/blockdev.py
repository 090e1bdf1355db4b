"""Block devices and image files as backup sources: opening one, its size,
whether it is in use, and what udev knows about it (image and lvm sources)."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from inkind.engines.blockcopy.readahead import source_size
from inkind.errors import SourceError


@dataclass
class OpenSource:
    """An opened source: a block device or a regular file."""

    path: Path
    fd: int
    size: int
    is_device: bool
    rdev: int

    def close(self) -> None:
        os.close(self.fd)


def open_source(path: Path) -> OpenSource:
    """Open ``path`` for reading, or raise one clear SourceError. What it
    is comes first, from a stat: opening a fifo would wait for a writer,
    and opening a character device can act on it (a watchdog starts its
    countdown)."""
    try:
        _check_kind(path, os.stat(path))
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SourceError(f"source {path}: does not exist") from None
    except OSError as e:
        raise SourceError(f"source {path}: cannot open: {e.strerror}") from None
    st = os.fstat(fd)
    try:
        _check_kind(path, st)  # replaced since the stat
    except SourceError:
        os.close(fd)
        raise
    try:
        os.pread(fd, 1, 0)
        size = source_size(fd)
    except OSError as e:
        os.close(fd)
        raise SourceError(f"source {path}: cannot read: {e.strerror}") from None
    return OpenSource(path, fd, size, stat.S_ISBLK(st.st_mode), st.st_rdev)


def _check_kind(path: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(
            f"source {path}: is a directory (the image source backs up a block device or an image file)"
        )
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise SourceError(f"source {path}: is neither a block device nor a regular file")


def _sysfs_devs(rdev: int) -> list[int]:
    """The device and its partitions (the partitions of a disk are in use
    when they are mounted)."""
    base = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")
    devs = [rdev]
    try:
        for child in base.iterdir():
            dev = child / "dev"
            if (child / "partition").exists() and dev.exists():
                major, minor = dev.read_text().split(":")
                devs.append(os.makedev(int(major), int(minor)))
    except OSError:
        pass
    return devs


def in_use(rdev: int) -> list[str]:
    """Where the block device (or one of its partitions) is mounted or held
    (device-mapper, md, ...): reasons it may change while it is read."""
    devs = set(_sysfs_devs(rdev))
    uses = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        try:
            sep = fields.index("-")
            major, minor = fields[2].split(":")
        except ValueError:
            continue
        dev = os.makedev(int(major), int(minor))
        mount_source = fields[sep + 2] if len(fields) > sep + 2 else ""
        if dev not in devs and mount_source.startswith("/dev/"):
            # btrfs reports an anonymous device number: go by the device path.
            try:
                dev = os.stat(mount_source).st_rdev
            except OSError:
                continue
        if dev in devs:
            uses.append(f"mounted at {fields[4]}")
    for d in devs:
        holders = Path(f"/sys/dev/block/{os.major(d)}:{os.minor(d)}/holders")
        with contextlib.suppress(OSError):
            uses += [f"held by {h.name}" for h in sorted(holders.iterdir())]
    return sorted(set(uses))


def udev_ids(path: Path, keys: tuple[str, ...] = ("ID_FS_UUID", "ID_SERIAL")) -> dict[str, str]:
    """What udev knows of a block device among ``keys`` (ID_FS_UUID and
    ID_SERIAL unless told; without udev, e.g. in a container, nothing)."""
    try:
        import pyudev
    except ImportError:
        return {}
    try:
        props = pyudev.Devices.from_device_file(pyudev.Context(), str(path)).properties
        return {key: props[key] for key in keys if key in props}
    except (pyudev.DeviceNotFoundError, OSError, ValueError):
        return {}


@dataclass
class Device:
    """One block device the kernel knows (``inkind devices``)."""

    path: str
    kind: str  # disk, part, loop, dm, ...
    size: int
    fstype: str = ""
    uuid: str = ""
    volume: str = ""  # vg/lv when udev says it is a logical volume


def block_devices(sys_block: Path = Path("/sys/class/block")) -> list[Device]:
    """Every block device in sysfs, with udev's filesystem type and UUID and,
    for device-mapper devices of LVM, DM_VG_NAME/DM_LV_NAME."""
    found = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else []:
        try:
            size = int((entry / "size").read_text()) * 512
        except (OSError, ValueError):
            continue
        if (entry / "partition").exists():
            kind = "part"
        elif entry.name.startswith(("loop", "dm-", "md", "nbd", "zram", "sr")):
            kind = entry.name.split("-")[0].rstrip("0123456789") or entry.name
        else:
            kind = "disk"
        if size == 0:
            continue  # an unused loop or zram device, an empty drive
        path = f"/dev/{entry.name}"
        ids = udev_ids(Path(path), ("ID_FS_TYPE", "ID_FS_UUID", "DM_VG_NAME", "DM_LV_NAME"))
        volume = f"{ids['DM_VG_NAME']}/{ids['DM_LV_NAME']}" if ids.get("DM_LV_NAME") else ""
        found.append(Device(path, kind, size, ids.get("ID_FS_TYPE", ""), ids.get("ID_FS_UUID", ""), volume))
    return found
