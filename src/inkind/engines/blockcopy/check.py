"""Scrub and verify of a stored image: its blocks against the manifest, the
image against its own checksum, and, in a scrub, the source against both.

A mismatch between a fresh manifest and the image is damage to one of the
two; reading the whole image against its checksum tells which, and a sound
image rewrites its manifest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import NoReturn

import xxhash

from inkind.engines.blockcopy.copy import CopyRequest, copy_image
from inkind.engines.blockcopy.digest import hash_stored
from inkind.engines.blockcopy.manifest import ImageState, Manifest, ManifestWriter, image_state
from inkind.engines.blockcopy.ranges import image_blocks
from inkind.engines.blockcopy.readahead import PIECE, page_buffer, source_size
from inkind.engines.blockcopy.stored import StoredImage
from inkind.errors import CorruptionError
from inkind.source import Finding
from inkind.store.checksum import BLOCKS_KEY
from inkind.store.paths import open_beneath
from inkind.store.xattrs import XAttrs
from inkind.ui import Progress, null_progress

log = logging.getLogger("inkind")


class _ImageDamaged(Exception):
    """The image does not match its own checksum."""


def scrub(
    target: StoredImage, src_fd: int | None, pick: Callable[[int], bool], progress: Progress = null_progress
) -> int:
    """Check the blocks ``pick(index)`` chooses (see :meth:`BlockCopy.scrub`);
    returns how many blocks were repaired."""
    img_fd = target.open_image()
    if img_fd < 0:
        return 0
    try:
        state = image_state(img_fd)
        manifest = target.fresh_manifest(state)
        if manifest is None:
            _scrub_whole(target, img_fd, state)
            return 0
        size = manifest.image.size
        if src_fd is not None and source_size(src_fd) != size:
            log.info("%s: source size changed since the backup; scrubbing the store only", target.image_rel)
            src_fd = None
        try:
            bad, stale = _scrub_blocks(target, img_fd, manifest, src_fd, pick, progress)
            if bad:
                _blame(target, img_fd, state, manifest, bad)
        finally:
            manifest.close()
    finally:
        os.close(img_fd)
    if stale:
        assert src_fd is not None
        result = copy_image(target, CopyRequest(src_fd, size, ranges=stale))
        target.stats.objects_repaired += result.blocks_changed
        return result.blocks_changed
    return 0


def _scrub_blocks(
    target: StoredImage,
    img_fd: int,
    manifest: Manifest,
    src_fd: int | None,
    pick: Callable[[int], bool],
    progress: Progress,
) -> tuple[list[int], list[tuple[int, int]]]:
    """Offsets of stored blocks that disagree with the manifest, and the
    spans where the source differs from both (changes to copy)."""
    bs, size = target.block_size, manifest.image.size
    scratch = page_buffer(min(PIECE, bs))
    buf = page_buffer(bs) if src_fd is not None else None
    bad: list[int] = []
    stale: list[tuple[int, int]] = []
    for i in range(manifest.blocks):
        if not pick(i):
            continue
        offset = i * bs
        length = min(bs, size - offset)
        target.stats.objects_scrubbed += 1
        progress.advance()
        want = manifest.digest(i)
        if hash_stored(img_fd, offset, length, scratch) != want:
            bad.append(offset)
        elif buf is not None and target.read_source(src_fd, buf[:length], offset, size) != want:
            stale.append((offset, length))
    return bad, stale


def differing(target: StoredImage, src_fd: int, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The byte (offset, length) ``ranges`` whose source and stored bytes
    differ (what lies past the image's end reads as zeros). Each range is
    read from both and counted as one scrubbed object."""
    found = []
    img_fd = open_beneath(target.root_fd, target.image_rel, os.O_RDONLY)
    try:
        for offset, length in ranges:
            source = os.pread(src_fd, length, offset)
            stored = os.pread(img_fd, length, offset).ljust(length, b"\0")
            target.stats.bytes_read += length
            target.stats.objects_scrubbed += 1
            if source != stored:
                found.append((offset, length))
    finally:
        os.close(img_fd)
    return found


def _scrub_whole(target: StoredImage, img_fd: int, state: ImageState) -> None:
    """No fresh manifest (a killed run, or a change outside inkind): no
    block can be checked on its own, so the whole image is checked
    against its checksum, unless an update is pending in a journal
    (recoverable: the next run replays it). A malformed manifest is
    damage: rewritten from a sound image, and named."""
    if not state.xxh3 or XAttrs(img_fd).get("dirty") is not None:
        log.info(
            "%s: no fresh block manifest and no settled checksum; left to the next backup", target.image_rel
        )
        return
    log.info("%s: no fresh block manifest; checking the whole image against its checksum", target.image_rel)
    target.stats.objects_scrubbed += 1
    malformed = _manifest_malformed(target)
    if malformed and _rewrite_manifest(target, img_fd, state):
        raise CorruptionError(
            target.manifest_rel, "malformed (truncated or overwritten): rewritten from the image"
        )
    if _hash_image(target, img_fd, state, lambda _offset, _digest: None):
        if malformed:  # a sound image whose checksum is over blocks of another size
            raise CorruptionError(
                target.manifest_rel, "malformed (truncated or overwritten); the next backup rebuilds it"
            )
        return
    name = BLOCKS_KEY if state.blocks else "xxh3"
    raise CorruptionError(target.image_rel, f"content does not match user.inkind.{name}")


def _blame(
    target: StoredImage, img_fd: int, state: ImageState, manifest: Manifest, bad: list[int]
) -> NoReturn:
    """Stored blocks disagree with a fresh manifest: read the whole image
    to tell which of the two is damaged."""
    if _rewrite_manifest(target, img_fd, state):
        raise CorruptionError(
            target.manifest_rel,
            f"block hash at offset {bad[0]} did not match the image, which matches its checksum: "
            "rewritten from the image",
        )
    more = f" (and {len(bad) - 1} more block(s))" if len(bad) > 1 else ""
    undecided = _undecided(state, manifest)
    raise CorruptionError(
        target.image_rel, f"block at offset {bad[0]} does not match its manifest hash{more}{undecided}"
    )


def _undecided(state: ImageState, manifest: Manifest) -> str:
    """After an update by ranges, the image's checksum (``xxh3-blocks``)
    was built from the manifest's hashes of the blocks it did not read:
    if it still matches them, it cannot tell a damaged manifest from a
    damaged image. Say so, and how to settle it."""
    if state.blocks != manifest.block_size:
        return ""
    h = xxhash.xxh3_128()
    for i in range(manifest.blocks):
        h.update(manifest.digest(i))
    if h.digest() != state.xxh3:
        return ""
    return (
        f"; {BLOCKS_KEY} was built from that manifest, so the damage may be in either: "
        "`inkind backup --full` compares with the source and rewrites both"
    )


def _rewrite_manifest(target: StoredImage, img_fd: int, state: ImageState) -> bool:
    """Write the manifest anew from the image if the image matches its
    own checksum (it is sound, so the manifest was the damaged one);
    False, and nothing written, if it does not."""
    bs = target.block_size
    if (state.blocks or bs) != bs:
        return False
    try:
        with ManifestWriter(target.root_fd, target.manifest_rel, bs, state.size, target.stats) as w:
            if not _hash_image(target, img_fd, state, lambda _offset, digest: w.add(digest)):
                raise _ImageDamaged
            w.finish(state)
    except _ImageDamaged:
        return False
    target.stats.objects_repaired += 1
    return True


def _manifest_malformed(target: StoredImage) -> bool:
    """The manifest file exists but is not a manifest. Written through a
    temp and a rename, it is never left half-written by inkind."""
    manifest = Manifest.open(target.root_fd, target.manifest_rel)
    if manifest is not None:
        manifest.close()
        return False
    try:
        os.close(open_beneath(target.root_fd, target.manifest_rel, os.O_RDONLY))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _hash_image(
    target: StoredImage, fd: int, state: ImageState, on_block: Callable[[int, bytes], None]
) -> bool:
    """Read the image once, hand each block's digest to ``on_block``
    (blocks of the checksum's size), and say whether the image matches
    its own checksum (``user.inkind.xxh3`` or ``xxh3-blocks``)."""
    bs = state.blocks or target.block_size
    whole = xxhash.xxh3_128()
    scratch = page_buffer(min(PIECE, bs))
    for offset, length in image_blocks(state.size, bs):
        digest = hash_stored(fd, offset, length, scratch, *([] if state.blocks else [whole]))
        if state.blocks:
            whole.update(digest)
        on_block(offset, digest)
    return bool(state.xxh3) and whole.digest() == state.xxh3


def verify(target: StoredImage) -> list[Finding]:
    """Check the image against its checksum and its manifest (see
    :meth:`BlockCopy.verify`)."""
    fd = open_beneath(target.root_fd, target.image_rel, os.O_RDONLY)
    try:
        x = XAttrs(fd)
        if x.get("dirty") is not None:
            return [Finding(target.image_rel, "update pending in a journal; the next run replays it", True)]
        state = image_state(fd)
        manifest = target.fresh_manifest(state)
        try:
            return _verify(target, fd, state, manifest)
        finally:
            if manifest is not None:
                manifest.close()
    finally:
        os.close(fd)


def _verify(target: StoredImage, fd: int, state: ImageState, manifest: Manifest | None) -> list[Finding]:
    findings = []
    if manifest is None and _manifest_malformed(target):
        findings.append(
            Finding(target.manifest_rel, "malformed (truncated or overwritten); a scrub rewrites it")
        )
    elif manifest is None:
        findings.append(Finding(target.manifest_rel, "missing or stale; the next run rebuilds it", True))
    bs = target.block_size
    comparable = manifest is not None and (state.blocks or bs) == bs
    bad: list[int] = []

    def compare(offset: int, digest: bytes) -> None:
        if comparable and digest != manifest.digest(offset // bs):
            bad.append(offset)

    sound = _hash_image(target, fd, state, compare)
    name = BLOCKS_KEY if state.blocks else "xxh3"
    if not state.xxh3:
        findings.append(Finding(target.image_rel, "no user.inkind.xxh3 checksum"))
    elif not sound:
        where = f" (first bad block at offset {bad[0]})" if bad else ""
        undecided = _undecided(state, manifest) if bad and manifest is not None else ""
        findings.append(
            Finding(target.image_rel, f"content does not match user.inkind.{name}{where}{undecided}")
        )
    elif bad:
        # A fresh manifest names this very version of the image, and the
        # image matches its checksum: only damage makes them disagree.
        findings.append(
            Finding(
                target.manifest_rel,
                f"block hash at offset {bad[0]} does not match the image, which matches its checksum "
                "(a scrub rewrites it from the image)",
            )
        )
    return findings
