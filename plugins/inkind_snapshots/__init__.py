"""Built-in plugin: history for the store, one provider per kind of storage.

Each provider is an ordinary ``inkind_snapshot_providers`` implementation; a
third-party plugin for other storage (a NAS API, Ceph RBD, ...) looks the
same. How to pick one, and what each costs: docs/history.md.
"""

import inkind
from inkind_snapshots.btrfs import Btrfs
from inkind_snapshots.copies import Hardlink, Reflink
from inkind_snapshots.lvm import LvmThin
from inkind_snapshots.zfs import Zfs


@inkind.hookimpl
def inkind_snapshot_providers() -> list[type]:
    return [Btrfs, Reflink, Hardlink, LvmThin, Zfs]
