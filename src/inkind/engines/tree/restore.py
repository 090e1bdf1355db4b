"""Restoring a mirrored tree: the rsync command, and the check that a path
asked for is in the tree restored from."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from inkind.errors import ConfigError, NotStored
from inkind.remote.ssh import SshTarget
from inkind.store.paths import DIR_FLAGS, open_beneath
from inkind.store.xattrs import acl_alias_filter


def rsync_restore_command(
    data_dir: Path, dest: str, path: str | None, state: dict[str, Any], via: SshTarget | None = None
) -> list[str]:
    """The rsync command that restores ``data_dir`` (or ``path`` below it)
    to ``dest`` with owners, modes, links, ACLs and xattrs (inkind's own
    left behind); ``state`` is the source's plugin state, which says
    whether the tree was stored as rsync's fake-super stand-ins. With
    ``via``, ``dest`` is a path on that host, reached over its ssh command
    (and its rsync run under ``sudo -n`` with ``remote_sudo``)."""
    argv = ["rsync", "-aHAXS", "--numeric-ids", "--filter=-x user.inkind.*", *acl_alias_filter(data_dir)]
    if via is not None:
        argv += ["-e", via.rsh()] + (["--rsync-path=sudo -n rsync"] if via.remote_sudo else [])
        dest = f"{via.host}:{dest}"
    if state.get("fake_super"):
        # The sending side reads user.rsync.%stat; the receiving side
        # (root) applies owners, modes and device nodes for real.
        argv += ["--fake-super", "-M--super"]
    if path:
        rel = path.strip("/")
        if not rel or ".." in rel.split("/"):
            raise ConfigError(f"restore: path '{path}' must name something below the source root")
        _check_stored(data_dir, rel)
        argv += ["--relative", f"{data_dir}/./{rel}", dest.rstrip("/") + "/"]
    else:
        argv += [f"{data_dir}/", dest.rstrip("/") + "/"]
    return argv


def _check_stored(data_dir: Path, rel: str) -> None:
    """Raise NotStored unless ``rel`` is in the tree restored from (else
    rsync would end in a ``link_stat`` error). No symlink is followed on
    the way: a stored link points into the live system, not the store."""
    try:
        root = os.open(data_dir, DIR_FLAGS)
    except FileNotFoundError:
        return  # a snapshot to be mounted first: it cannot be looked into yet
    try:
        os.close(open_beneath(root, rel, os.O_PATH))
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        raise NotStored(f"'{rel}'") from None
    finally:
        os.close(root)
