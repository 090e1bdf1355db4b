"""The ``files`` source type: options, backup, scrub and restore."""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inkind import ConfigError, RunContext, Source, SourceError, SourceWarning
from inkind.errors import NotStored
from inkind.source import Finding
from inkind.store import is_temp_name, set_mtime
from inkind.store.entries import entries_problem, record_entries
from inkind.store.paths import DIR_FLAGS, list_dir, open_beneath
from inkind.store.xattrs import acl_alias_filter
from inkind.verify import verify_tree
from inkind_files.mirror import ADDED, Bounds, Key, Mirror, key_text

if TYPE_CHECKING:
    import pathspec

log = logging.getLogger("inkind")


@dataclass
class FilesOptions:
    """``[sources.NAME]`` keys of a files source."""

    path: Path
    exclude: list[str] = field(default_factory=list)
    one_file_system: bool = True
    exclude_caches: bool = True

    def check(self, where: str) -> None:
        if not self.exclude:
            return
        try:
            _gitignore(self.exclude)
        except Exception as e:
            raise ConfigError(f"config: {where}.exclude: bad pattern: {e}") from None


def _gitignore(patterns: list[str]) -> pathspec.GitIgnoreSpec:
    """The patterns compiled; pathspec loads only for a source that excludes
    something, not at every start of inkind."""
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(patterns)


def exclude_matcher(patterns: list[str]) -> Callable[[str, bool], bool]:
    """gitignore-style matching of paths relative to the source root."""
    if not patterns:
        return lambda path, is_dir: False
    spec = _gitignore(patterns)

    def excluded(path: str, is_dir: bool) -> bool:
        return spec.match_file(path + "/" if is_dir else path)

    return excluded


class FilesSource(Source):
    """A directory tree, mirrored as a directory tree (restore: rsync)."""

    type_name = "files"
    Options = FilesOptions

    def _mirror(self, run: RunContext) -> Mirror:
        if os.geteuid() != 0:
            run.state.plugin["fake_super"] = True
        else:
            run.state.plugin.pop("fake_super", None)
        return Mirror(
            run,
            str(self.options.path),
            excluded=exclude_matcher(self.options.exclude),
            one_file_system=self.options.one_file_system,
            exclude_caches=self.options.exclude_caches,
        )

    def backup(self, run: RunContext) -> None:
        if not self.options.path.is_dir():
            raise SourceError(f"source path {self.options.path}: not a directory or missing")
        self._mirror(run).backup()

    def verify(self, run: RunContext) -> list[Finding]:
        """Every file against its checksum, every directory against its
        recorded entries (differences are recoverable while a walk is
        unfinished: the next backup completes it)."""
        return verify_tree(run, unfinished=_walk_unfinished(run))

    def scrub(self, run: RunContext) -> None:
        """Walk the store; check each sampled file against its checksum and
        against the source file at the same path, and each directory against
        its recorded entries (an entry gone from the store is named and
        brought back from the source)."""
        mirror = self._mirror(run)
        try:
            src_root = os.open(self.options.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise SourceError(f"source path {self.options.path}: {e.strerror}") from None
        mirror.root_dev = os.fstat(src_root).st_dev
        mirror._next_save = float("inf")  # a scrub keeps no resume pointer
        check_entries = not _walk_unfinished(run)
        stack: list[tuple[int, int | None, tuple[bytes, ...]]] = [(os.dup(run.data_fd), src_root, ())]
        with run.progress("scrub") as progress:
            mirror.progress = progress
            while stack:
                dst, src, prefix = stack.pop()
                try:
                    names = sorted(list_dir(dst), key=os.fsencode)
                    if check_entries:
                        names = _check_entries(run, mirror, src, dst, prefix, names)
                    for name in names:
                        if is_temp_name(name):
                            continue
                        key = (*prefix, os.fsencode(name))
                        st = os.stat(name, dir_fd=dst, follow_symlinks=False)
                        if stat.S_ISDIR(st.st_mode):
                            stack.append((os.open(name, DIR_FLAGS, dir_fd=dst), _open_dir(src, name), key))
                        elif stat.S_ISREG(st.st_mode) and run.should_scrub():
                            progress.advance()
                            try:
                                mirror.scrub(src, dst, name, key)
                            except SourceWarning as w:
                                run.skip(w)
                finally:
                    os.close(dst)
                    if src is not None:
                        os.close(src)
        mirror.raise_corruption()

    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        argv = ["rsync", "-aHAXS", "--numeric-ids", "--filter=-x user.inkind.*", *acl_alias_filter(data_dir)]
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
        return [argv]


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


def _walk_unfinished(run: RunContext) -> bool:
    """Whether a backup walk was started and not completed (killed,
    interrupted or failed): stored directories it left mid-way may differ
    from their user.inkind.entries until the next backup completes."""
    return run.state.left_running or run.state.partial


def _check_entries(
    run: RunContext, mirror: Mirror, src: int | None, dst: int, prefix: Key, names: list[str]
) -> list[str]:
    """Compare one stored directory with its ``user.inkind.entries``.

    A difference is corruption: named (with each entry the source has and
    the store lacks, which is brought back from the source, as scrub
    rebuilds a corrupt file), and the directory's entries are recorded
    anew. Returns the directory's names afterwards.
    """
    problem = entries_problem(dst, names)
    if problem is None:
        return names
    rel = "/".join([run.name, key_text(prefix)]) if prefix else run.name
    run.stats.objects_corrupt += 1
    log.error("%s: corruption: %s: %s: deleted or added outside inkind", run.name, rel, problem)
    if src is None:
        mirror.corrupt.append(rel)
        return names
    have = set(names)
    was_partial = run.state.partial
    run.state.mark_partial()  # a kill while entries come back leaves them to the next backup
    restored = []
    for name in sorted(os.listdir(src), key=os.fsencode):
        if name in have or is_temp_name(name):
            continue
        key = (*prefix, os.fsencode(name))
        try:
            if mirror.entry(src, dst, name, key, Bounds()) == ADDED:
                restored.append(f"{run.name}/{key_text(key)}")
        except SourceWarning as w:
            run.skip(w)
    for r in restored:
        log.error("%s: corruption: %s: missing from the store; brought back from the source", run.name, r)
    run.stats.objects_repaired += len(restored)
    mirror.corrupt += restored or [rel]
    names = sorted(list_dir(dst), key=os.fsencode)
    record_entries(dst, names, run.stats)
    # The deletion and the repair touched the stored directory (as scrub's
    # file repair does, it gets the source directory's mtime back).
    set_mtime(dst, os.fstat(src).st_mtime_ns, stats=run.stats)
    if not was_partial:
        run.state.clear_partial()
    return names


def _open_dir(parent: int | None, name: str) -> int | None:
    if parent is None:
        return None
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None
