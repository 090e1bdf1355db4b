"""The ``files`` source type: options, backup, scrub and restore."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

from inkind import ConfigError, RunContext, Source, SourceError, SourceWarning
from inkind.store import is_temp_name
from inkind.store.paths import DIR_FLAGS
from inkind_files.mirror import Mirror


@dataclass
class FilesOptions:
    """``[sources.NAME]`` keys of a files source."""

    path: Path
    exclude: list[str] = field(default_factory=list)
    one_file_system: bool = True
    exclude_caches: bool = True

    def check(self, where: str) -> None:
        try:
            pathspec.GitIgnoreSpec.from_lines(self.exclude)
        except Exception as e:
            raise ConfigError(f"config: {where}.exclude: bad pattern: {e}") from None


def exclude_matcher(patterns: list[str]) -> Callable[[str, bool], bool]:
    """gitignore-style matching of paths relative to the source root."""
    if not patterns:
        return lambda path, is_dir: False
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)

    def excluded(path: str, is_dir: bool) -> bool:
        return spec.match_file(path + "/" if is_dir else path)

    return excluded


class FilesSource(Source):
    """A directory tree, mirrored as a directory tree (restore: rsync)."""

    type_name = "files"
    Options = FilesOptions
    supports_dry_run = True

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

    def scrub(self, run: RunContext) -> None:
        """Walk the store; check each sampled file against its checksum and
        against the source file at the same path."""
        mirror = self._mirror(run)
        try:
            src_root = os.open(self.options.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise SourceError(f"source path {self.options.path}: {e.strerror}") from None
        stack: list[tuple[int, int | None, tuple[bytes, ...]]] = [(os.dup(run.data_fd), src_root, ())]
        with run.progress("scrub") as progress:
            while stack:
                dst, src, prefix = stack.pop()
                try:
                    for name in sorted(os.listdir(dst), key=os.fsencode):
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
                                run.warn(str(w))
                finally:
                    os.close(dst)
                    if src is not None:
                        os.close(src)
        mirror.raise_corruption()

    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        argv = ["rsync", "-aHAXS", "--numeric-ids", "--filter=-x user.inkind.*"]
        if state.get("fake_super"):
            # The sending side reads user.rsync.%stat; the receiving side
            # (root) applies owners, modes and device nodes for real.
            argv += ["--fake-super", "-M--super"]
        if path:
            rel = path.strip("/")
            if not rel or ".." in rel.split("/"):
                raise ConfigError(f"restore: path '{path}' must name something below the source root")
            argv += ["--relative", f"{data_dir}/./{rel}", dest.rstrip("/") + "/"]
        else:
            argv += [f"{data_dir}/", dest.rstrip("/") + "/"]
        return [argv]


def _open_dir(parent: int | None, name: str) -> int | None:
    if parent is None:
        return None
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None
