"""Thin volumes: the pool's record of changed chunks (``thin_delta``, with
the metadata snapshot reserved around it), and the sample of chunks it
called unchanged that a run re-reads to test it."""

from __future__ import annotations

import bisect
import logging
import math

from inkind import RunContext, lvm, merge_spans

log = logging.getLogger("inkind")

MIN_SAMPLE = 4  # pool chunks re-read after a delta-driven run, at least


def release_left_reservation(run: RunContext, cmds: lvm.Commands, volumes: list[lvm.Volume]) -> None:
    """A run killed between reserving a pool's metadata snapshot and
    releasing it left the reservation (and a record of it): release it, or
    every later reservation fails as busy. Only our own record counts; a
    reservation made by another tool is never touched."""
    held = run.state.plugin.pop("reserved_metadata_snap", None)
    if not held:
        return
    vg, _, lv = held.partition("/")
    pool = lvm.find(volumes, vg, lv)
    if pool is not None:
        log.info("%s: releasing the metadata snapshot of %s left by an interrupted run", run.name, held)
        try:
            cmds.pool_message(pool, "release_metadata_snap")
        except lvm.LvmError as e:
            log.info("%s (already released)", e)
    run.state.save()


def pool_delta(  # size: the run, the machine's commands, the two thin ids of a volume, and lvs
    run: RunContext, cmds: lvm.Commands, vol: lvm.Volume, snap1: int, snap2: int, volumes: list[lvm.Volume]
) -> lvm.Delta:
    """thin_delta between two thin ids of ``vol``'s pool, with the pool's
    metadata snapshot reserved around it and released in all cases (and the
    reservation on record meanwhile, for a run that is killed)."""
    pool = lvm.find(volumes, vol.vg, vol.pool)
    if pool is None:
        raise lvm.LvmError(f"{vol.full_name}: its thin pool {vol.vg}/{vol.pool} is not in lvs output")
    meta = lvm.find(volumes, vol.vg, pool.metadata_lv) if pool.metadata_lv else None
    if meta is None:
        raise lvm.LvmError(f"{pool.full_name}: lvs names no metadata volume for this thin pool")
    run.state.plugin["reserved_metadata_snap"] = pool.full_name
    run.state.save()
    with cmds.metadata_snapshot(pool, released=lambda: run.state.plugin.pop("reserved_metadata_snap")):
        delta = cmds.thin_delta(meta.device, snap1, snap2)
    if pool.chunk_size and delta.block_sectors * lvm.SECTOR != pool.chunk_size:
        raise lvm.LvmError(
            f"{pool.full_name}: thin_delta's data block size ({delta.block_sectors * lvm.SECTOR} bytes) "
            f"is not the pool's chunk size ({pool.chunk_size} bytes)"
        )
    return delta


def unchanged_sample(run: RunContext, size: int, delta: lvm.Delta) -> list[tuple[int, int]]:
    """Byte (offset, length) ranges of pool chunks the delta called
    unchanged, sampled: the scrub fraction of them, MIN_SAMPLE at least,
    drawn without listing every chunk (a volume may have many)."""
    unit = delta.block_sectors * lvm.SECTOR
    chunks = -(-size // unit)
    touched = merge_spans((b, min(b + n, chunks)) for b, n in delta.changed + delta.discarded)
    starts = [first for first, _ in touched]
    unchanged = chunks - sum(stop - first for first, stop in touched)
    want = min(unchanged, max(MIN_SAMPLE, math.ceil(run.scrub_fraction * unchanged)))
    picked: set[int] = set()
    for _ in range(50 * want):
        if len(picked) >= want:
            break
        c = run.rng.randrange(chunks)
        k = bisect.bisect_right(starts, c) - 1
        if c not in picked and not (k >= 0 and c < touched[k][1]):
            picked.add(c)
    return [(c * unit, min(unit, size - c * unit)) for c in sorted(picked)]
