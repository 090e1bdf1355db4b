"""The ``git`` source type."""

from __future__ import annotations

import glob
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

import inkind
from inkind import (
    CorruptionError,
    RunContext,
    SourceError,
    SourceWarning,
    UpdateFile,
    XAttrs,
    discard,
    hash_fd,
)

CHUNK = 1 << 20


@dataclass
class GitOptions:
    """``[sources.NAME]`` keys of a git source."""

    repositories: list[str]

    def check(self, where: str) -> None:
        if not self.repositories:
            raise inkind.ConfigError(f"config: {where}.repositories: name at least one repository")


def git(*args: str, cwd: Path | None = None) -> bytes:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        msg = e.stderr.decode(errors="replace").strip().splitlines()
        raise SourceWarning(f"git {args[0]}: {msg[-1] if msg else f'exit {e.returncode}'}") from None


class GitSource(inkind.Source):
    """Each repository as ``STORE/NAME/<repo>.bundle``."""

    type_name = "git"
    Options = GitOptions

    def repositories(self) -> dict[str, Path]:
        """Bundle name -> repository, for every path or glob match."""
        found: dict[str, Path] = {}
        for pattern in self.options.repositories:
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            for m in matches:
                repo = Path(m)
                if not repo.is_dir():
                    raise SourceError(f"repository {repo}: not a directory")
                found[f"{repo.name}.bundle"] = repo
        return found

    def backup(self, run: RunContext) -> None:
        repos = self.repositories()
        for bundle, repo in repos.items():
            run.stats.objects_seen += 1
            try:
                self.store_bundle(run, bundle, repo)
            except SourceWarning as w:
                run.warn(f"{repo}: {w}")
        if run.full:
            for name in os.listdir(run.data_dir):
                if name.endswith(".bundle") and name not in repos:
                    discard(run.data_fd, name, run.stats)
        self.scrub_sample(run, repos)

    def store_bundle(self, run: RunContext, bundle: str, repo: Path) -> None:
        """Rewrite the bundle only when the refs changed."""
        refs = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo)
        refs += git("symbolic-ref", "-q", "HEAD", cwd=repo) if refs else b""
        digest = xxhash.xxh3_128_hexdigest(refs)
        target = run.data_dir / bundle
        if target.exists() and XAttrs(target).text("refs") == digest and not run.full:
            run.stats.objects_unchanged += 1
            return
        if not refs:
            raise SourceWarning("has no refs yet; nothing to bundle")
        with run.scratch_dir() as tmp:
            made = tmp / bundle
            git("bundle", "create", "-q", str(made), "--all", cwd=repo)
            run.stats.bytes_read += made.stat().st_size
            with open(made, "rb") as src, UpdateFile(target, stats=run.stats) as f:
                while chunk := src.read(CHUNK):
                    f.write(chunk)
        XAttrs(target, stats=run.stats)["refs"] = digest
        if f.changed:
            run.stats.objects_changed += 1
        else:
            run.stats.objects_unchanged += 1

    def scrub(self, run: RunContext) -> None:
        self.scrub_sample(run, self.repositories())

    def scrub_sample(self, run: RunContext, repos: dict[str, Path]) -> None:
        """Check sampled bundles: own checksum, then ``git bundle verify``."""
        corrupt = []
        for name in sorted(os.listdir(run.data_dir)):
            if not name.endswith(".bundle") or not run.should_scrub():
                continue
            run.stats.objects_scrubbed += 1
            path = run.data_dir / name
            fd = os.open(path, os.O_RDONLY)
            try:
                got, _ = hash_fd(fd)
                want = XAttrs(fd).text("xxh3")
            finally:
                os.close(fd)
            if got != want:
                corrupt.append(f"{run.name}/{name}")
                continue
            with tempfile.TemporaryDirectory() as empty:
                git("init", "-q", empty)
                try:
                    git("bundle", "verify", "-q", str(path), cwd=Path(empty))
                except SourceWarning:
                    corrupt.append(f"{run.name}/{name}")
        if corrupt:
            raise CorruptionError(", ".join(corrupt), "bundle fails its checksum or git bundle verify")

    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        bundles = [path] if path else sorted(n for n in os.listdir(data_dir) if n.endswith(".bundle"))
        return [
            ["git", "clone", "-q", str(data_dir / b), f"{dest.rstrip('/')}/{b.removesuffix('.bundle')}"]
            for b in bundles
        ]
