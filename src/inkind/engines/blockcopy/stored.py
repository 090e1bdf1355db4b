"""Where one stored image and its manifest live, and the source they copy.

The copy pass (:mod:`.copy`) and the checks (:mod:`.check`) work on a
:class:`StoredImage`; :class:`~.engine.BlockCopy` adds them as methods.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import xxhash

from inkind.engines.blockcopy.manifest import MANIFEST_DIR, ImageState, Manifest
from inkind.engines.blockcopy.readahead import ReadError, ShortRead, fill
from inkind.errors import SourceError
from inkind.stats import Stats
from inkind.store.files import sweep_temps
from inkind.store.paths import DIR_FLAGS, open_beneath
from inkind.store.tree import remove


@dataclass
class StoredImage:
    """The image ``image_rel`` (below the store root) and its manifest.

    ``label`` names the source in messages (a path or volume name).
    """

    root_fd: int
    image_rel: str
    block_size: int
    stats: Stats
    label: str = "source"

    @property
    def manifest_rel(self) -> str:
        return f"{MANIFEST_DIR}/{self.image_rel}.manifest"

    @property
    def digests_rel(self) -> str:
        """The BLAKE2b digests of an image read from another host
        (:mod:`inkind.engines.image.remote`)."""
        return f"{MANIFEST_DIR}/{self.image_rel}.remote"

    @property
    def partial_rel(self) -> str:
        """The blocks a first copy from another host fetched before it was
        cut short (:mod:`inkind.engines.image.partial`)."""
        return f"{MANIFEST_DIR}/{self.image_rel}.partial"

    def sweep_manifest_temps(self) -> None:
        """Remove manifest temps a killed run left (the caller holds the lock)."""
        parent = self.manifest_rel.rpartition("/")[0]
        with contextlib.suppress(FileNotFoundError):
            fd = open_beneath(self.root_fd, parent, DIR_FLAGS)
            try:
                sweep_temps(fd)
            finally:
                os.close(fd)

    def open_image(self) -> int:
        """The stored image, read-only; -1 if there is none yet."""
        try:
            return open_beneath(self.root_fd, self.image_rel, os.O_RDONLY)
        except FileNotFoundError:
            return -1

    def fresh_manifest(self, image: ImageState | None) -> Manifest | None:
        """The manifest if it describes exactly this version of the image."""
        m = Manifest.open(self.root_fd, self.manifest_rel)
        if m is not None and not m.fresh_for(self.block_size, image):
            m.close()
            m = None
        return m

    def read_source(self, fd: int, view: memoryview, offset: int, size: int) -> bytes:
        """Fill ``view`` from the source at ``offset``; its xxh3-128."""
        self.stats.bytes_read += len(view)
        try:
            fill(fd, view, offset)
        except (ShortRead, ReadError) as e:
            raise self.read_failed(e, size) from None
        return xxhash.xxh3_128_digest(view)

    def read_failed(self, e: ShortRead | ReadError, size: int) -> SourceError:
        """The one line that says the source could not be read whole."""
        if isinstance(e, ShortRead):
            return SourceError(
                f"{self.label}: ended at byte {e.offset} of {size} (shrunk or gone while being read); "
                "the previous image is kept"
            )
        return SourceError(
            f"{self.label}: read error at byte {e.offset}: {e.error.strerror}; the previous image is kept"
        )

    def remove(self) -> None:
        """Delete the image, its manifest, its remote digests and a partial
        first copy (counted as one deleted object)."""
        for rel in (self.image_rel, self.manifest_rel, self.digests_rel, self.partial_rel):
            self.remove_file(rel)
        self.stats.objects_deleted += 1

    def remove_file(self, rel: str) -> None:
        """Remove the file ``rel`` below the store root, if it is there."""
        parent, _, name = rel.rpartition("/")
        with contextlib.suppress(FileNotFoundError):
            dfd = open_beneath(self.root_fd, parent, DIR_FLAGS)
            try:
                remove(dfd, name)
            finally:
                os.close(dfd)
