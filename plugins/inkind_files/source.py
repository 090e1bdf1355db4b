"""The ``files`` source type: its options and exclude patterns; the tree
engine (inkind.TreeMirror) does the backup, scrub and verify."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import inkind
from inkind import (
    ConfigError,
    Finding,
    RunContext,
    Source,
    TreeMirror,
    TreeSelection,
    rsync_restore_command,
    verify_mirror,
)

if TYPE_CHECKING:
    import pathspec


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


def exclude_matcher(patterns: list[str]) -> Callable[[str, bool], bool] | None:
    """gitignore-style matching of paths relative to the source root (None
    when nothing is excluded)."""
    if not patterns:
        return None
    spec = _gitignore(patterns)

    def excluded(path: str, is_dir: bool) -> bool:
        return spec.match_file(path + "/" if is_dir else path)

    return excluded


class FilesSource(Source):
    """A directory tree, mirrored as a directory tree (restore: rsync)."""

    type_name = "files"
    Options = FilesOptions
    reads_remote_host = True

    def _selection(self) -> TreeSelection:
        return TreeSelection(
            excluded=exclude_matcher(self.options.exclude),
            patterns=self.options.exclude,
            one_file_system=self.options.one_file_system,
            exclude_caches=self.options.exclude_caches,
        )

    def _mirror(self, run: RunContext) -> TreeMirror | inkind.RemoteTreeMirror:
        """The tree engine for a local tree, or for one on another host
        (``inkind.RemoteTreeMirror`` is imported only then)."""
        if self.remote is None:
            return TreeMirror(run, self.options.path, self._selection())
        return inkind.RemoteTreeMirror(run, self.remote, self.options.path, self._selection())

    def backup(self, run: RunContext) -> None:
        self._mirror(run).backup()

    def verify(self, run: RunContext) -> list[Finding]:
        return verify_mirror(run)

    def scrub(self, run: RunContext) -> None:
        self._mirror(run).scrub()

    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        via, to = self.restore_target(dest)
        return [rsync_restore_command(data_dir, to, path, state, via=via)]
