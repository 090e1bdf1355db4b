"""Which logical volumes the ``lvm`` source backs up, what their images and
snapshots are named, and checks on the snapshot it reads."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from inkind import lvm, udev_ids

log = logging.getLogger("inkind")

_SKIPPED_TYPES = "tsSTev"  # pools, snapshots, pool data/metadata, virtual


def image_file(vol: lvm.Volume) -> str:
    return f"{lvm.dm_name(vol.vg, vol.lv)}.img"


def snapshot_prefix(source: str, vol: lvm.Volume) -> str:
    """``inkind-<source>-<lv>-``: two sources may back up one volume without
    taking each other's snapshots for leftovers."""
    return f"inkind-{re.sub(r'[^A-Za-z0-9+_.-]', '_', source)}-{vol.lv}-"


def backed_up(vol: lvm.Volume) -> bool:
    """A volume a glob may select: not internal, not a pool or snapshot,
    not one of inkind's own snapshots."""
    return not (
        vol.hidden or vol.attr[:1] in _SKIPPED_TYPES or lvm.TAG in vol.tags or "inkind_history" in vol.tags
    )


def remove_quietly(cmds: lvm.Commands, vg: str, lv: str) -> None:
    """Remove a snapshot in a ``finally``: a failure (a host whose
    connection was cut, too) is logged, and the next run removes the
    leftover by its tag and name."""
    try:
        cmds.remove(vg, lv)
    except lvm.LvmError as e:
        log.error("%s (the next run removes it)", e)


def cross_check(snap: lvm.Volume) -> None:
    """The device we are about to read is the snapshot lvs named: udev's
    DM_VG_NAME/DM_LV_NAME must agree (where udev knows the device)."""
    try:
        is_device = stat.S_ISBLK(os.stat(snap.device).st_mode)
    except OSError:
        return  # open_source names the problem
    if not is_device:
        return
    props = udev_ids(Path(snap.device), ("DM_VG_NAME", "DM_LV_NAME"))
    if props and (props.get("DM_VG_NAME"), props.get("DM_LV_NAME")) != (snap.vg, snap.lv):
        raise lvm.LvmError(
            f"{snap.device}: udev says it is {props.get('DM_VG_NAME')}/{props.get('DM_LV_NAME')}, "
            f"not {snap.full_name}; not reading it"
        )
