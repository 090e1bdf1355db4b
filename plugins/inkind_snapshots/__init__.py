"""Built-in plugin: history for the store, one provider per kind of storage.

Each provider is an ordinary ``inkind_snapshot_providers`` implementation; a
third-party plugin for other storage (a NAS API, Ceph RBD, ...) looks the
same. How to pick one, and what each costs: docs/history.md.
"""

import inkind


@inkind.hookimpl
def inkind_snapshot_providers() -> dict[str, str]:
    """Each imported only when a store names it, or "auto" asks it."""
    return {
        "btrfs": "inkind_snapshots.btrfs:Btrfs",
        "reflink": "inkind_snapshots.copies:Reflink",
        "hardlink": "inkind_snapshots.copies:Hardlink",
        "lvm": "inkind_snapshots.lvm:LvmThin",
        "zfs": "inkind_snapshots.zfs:Zfs",
    }
