"""History: snapshots of the whole store, taken after each backup and
pruned by a retention policy.

Providers (btrfs, lvm, zfs, reflink, hardlink, ...) come from plugins
through the ``inkind_snapshot_providers`` hook and are written against
:mod:`inkind.history.provider`; the rest of this package is the host's
side: ids, where snapshot folders are, taking, pruning and the policy.
"""
