"""BlockCopy: what a source holds to keep one stored image equal to a
device or file, and to scrub and verify it (the engine's front)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from inkind.engines.blockcopy import check as checks
from inkind.engines.blockcopy.copy import CopyRequest, CopyResult, copy_image
from inkind.engines.blockcopy.stored import StoredImage
from inkind.source import Finding
from inkind.store.paths import PathLike
from inkind.ui import Progress, null_progress


class BlockCopy(StoredImage):
    """Keep the image ``image_rel`` (below the store root) equal to a source.

    ``BlockCopy(root_fd, "NAME/disk.img", block_size, stats, label=...)``;
    ``label`` names the source in messages (a path or volume name).
    """

    made_new = False  # the last copy made the image: all of it was just written from the source

    # size: the copy's public keyword options, bundled into one CopyRequest at once
    def copy(
        self,
        src_fd: int,
        size: int,
        *,
        full: bool = False,
        ranges: Iterable[tuple[int, int]] | None = None,
        skip_holes: bool = False,
        check: Callable[[], None] | None = None,
        progress: Progress = null_progress,
        adopt: PathLike | None = None,
    ) -> CopyResult:
        """Bring the image up to date with ``size`` bytes of ``src_fd``.

        Incremental: each block's hash is compared with the manifest. With
        ``full``, or when the manifest is missing or stale, each block is
        compared with the stored image itself and the manifest is rebuilt.
        ``ranges`` (byte ranges known to hold every change since the last
        run, e.g. from a thin-pool delta) limits the reads to those blocks;
        it is ignored when the manifest cannot be trusted or the size
        changed. With ``skip_holes``, blocks that lie wholly in what the
        source reports as holes (SEEK_DATA: a sparse image file) are taken as
        zeros without reading them (the list of data spans is asked for
        once, before reading: see :func:`~.ranges.data_block_spans`).
        ``check`` runs after the last read and before the image is
        committed: raising there (e.g. the snapshot read from filled up)
        discards the update. Raises SourceError if the source cannot be read
        whole or changes size meanwhile; the previous image and manifest
        then stay. ``adopt``: the path of ``src_fd``'s file when it is a
        copy this run made on the store's filesystem and needs no more (a
        scratch file): a new image takes that file as it is instead of
        writing its blocks again (see :class:`~inkind.store.image.UpdateImage`),
        so the path may be gone afterwards (renamed into the image, or
        removed with an update that failed).
        """
        request = CopyRequest(src_fd, size, full, ranges, skip_holes, check, progress, adopt)
        result = copy_image(self, request)
        self.made_new = result.old_size is None and result.changed
        return result

    def scrub(
        self, src_fd: int | None, pick: Callable[[int], bool], progress: Progress = null_progress
    ) -> int:
        """Check the blocks ``pick(index)`` chooses: stored block against the
        manifest (a mismatch is corruption), then against the source (a
        mismatch is a change the last backup missed: repaired and counted).

        Without a fresh manifest there is nothing to check against; the next
        backup rebuilds it. Nor is there anything to check right after a
        copy that made the image: each of its blocks was just written from
        the source (as the files source scrubs only the files it keeps).
        Returns how many blocks were repaired.
        """
        if self.made_new:
            return 0
        return checks.scrub(self, src_fd, pick, progress)

    def differing(self, src_fd: int, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """The byte ranges among ``ranges`` where source and image differ,
        read from both (a sample, to test what a change record says)."""
        return checks.differing(self, src_fd, ranges)

    def verify(self) -> list[Finding]:
        """Check the image against its ``user.inkind.xxh3`` and its manifest,
        reading it once. A stale manifest, or an update pending in a journal,
        is recoverable: the next run fixes it."""
        return checks.verify(self)
