"""The ``image`` source type: backup, scrub, verify and restore."""

from __future__ import annotations

import logging
import os
from typing import Any

import inkind
from inkind import (
    BlockCopy,
    ConfigError,
    OpenSource,
    RawImageSource,
    RunContext,
    SourceError,
    in_use,
    open_source,
    udev_ids,
)
from inkind_image.options import ImageOptions

log = logging.getLogger("inkind")


class ImageSource(RawImageSource):
    """A block device or image file, kept as ``NAME/<name>.img`` (restore: dd or cp)."""

    type_name = "image"
    Options = ImageOptions
    reads_remote_host = True

    def _engine(self, run: RunContext) -> BlockCopy:
        return self.engine(run, self.options.image_file, f"source {self.options.path}")

    def backup(self, run: RunContext) -> None:
        if self.remote is not None:
            self._backup_remote(run)
            return
        src = open_source(self.options.path)
        try:
            if src.is_device:
                self._warn_if_in_use(src)
            engine = self._engine(run)
            engine.sweep_manifest_temps()
            run.stats.objects_seen += 1
            with run.progress("read", total=src.size, unit="bytes") as progress:
                # A full pass reads the holes too: it does not take the
                # filesystem's word (SEEK_DATA) for what is zeros.
                result = engine.copy(
                    src.fd, src.size, full=run.full, skip_holes=not run.full, progress=progress
                )
            self.account(run, result, f"source {self.options.path}")
            run.state.plugin.update(
                image=self.options.image_file, size=result.size, block_size=self.options.block_size
            )
            self._describe(run, engine, src)
            if run.full:
                self.remove_strays(run, {self.options.image_file})
            if run.scrub_fraction > 0:
                with run.progress("scrub") as progress:
                    engine.scrub(src.fd, run.pick_block, progress)
        finally:
            src.close()

    def _backup_remote(self, run: RunContext) -> None:
        """The image on ``host``: only blocks whose digest changed cross."""
        assert self.remote is not None
        where = f"{self.remote.host}:{self.options.path}"
        engine = self.engine(run, self.options.image_file, f"source {where}")
        engine.sweep_manifest_temps()
        run.stats.objects_seen += 1
        # (inkind.NAME: the remote machinery is imported only for a remote image)
        with inkind.open_channel(self.remote, run.stats) as channel, run.progress("read") as progress:
            result = inkind.pull_image(channel, os.fsencode(self.options.path), engine, run, progress)
        self.account(run, result, f"source {where}")
        run.state.plugin.update(
            image=self.options.image_file, size=result.size, block_size=self.options.block_size
        )
        desc = {"host": self.remote.host, "path": str(self.options.path), "size": result.size}
        self.describe(run, engine, {**desc, "block_size": self.options.block_size})
        if run.full:
            self.remove_strays(run, {self.options.image_file})
        if run.scrub_fraction > 0:  # against the manifest: the source is on the host
            with run.progress("scrub") as progress:
                engine.scrub(None, run.pick_block, progress)

    def _warn_if_in_use(self, src: OpenSource) -> None:
        uses = in_use(src.rdev)
        if uses:
            log.warning(
                "source %s is %s: it may change while it is read, so the image may be "
                "inconsistent; back up a snapshot instead (the lvm source takes one for you)",
                src.path,
                ", ".join(uses),
            )

    def _describe(self, run: RunContext, engine: BlockCopy, src: OpenSource) -> None:
        desc: dict[str, Any] = {
            "path": str(src.path),
            "kind": "block device" if src.is_device else "file",
            "size": src.size,
            "block_size": self.options.block_size,
        }
        if src.is_device:
            desc.update({k.lower(): v for k, v in udev_ids(src.path).items()})
        self.describe(run, engine, desc)

    def scrub(self, run: RunContext) -> None:
        """Check sampled blocks against the manifest, then the source (a
        source on another host: the manifest only)."""
        if self.remote is not None:
            with run.progress("scrub") as progress:
                self._engine(run).scrub(None, run.pick_block, progress)
            return
        try:
            src: OpenSource | None = open_source(self.options.path)
        except SourceError as e:
            run.warn(f"{e}; checking the store only")
            src = None
        try:
            with run.progress("scrub") as progress:
                self._engine(run).scrub(src.fd if src else None, run.pick_block, progress)
        finally:
            if src is not None:
                src.close()

    def covers(self, device: str, volume: str | None) -> bool:
        return os.path.realpath(self.options.path) == os.path.realpath(device)

    def image_for_restore(self, path: str | None, state: dict[str, Any]) -> str:
        image = self.options.image_file
        if path and path.strip("/") not in (image, self.options.name):
            raise ConfigError(f"restore: this source stores one image, {image}; got path '{path}'")
        return image
