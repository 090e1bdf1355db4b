"""The ``lvm`` source: each selected logical volume is read from a snapshot
and kept as ``NAME/<vg>-<lv>.img`` (the device-mapper name, so two volume
groups never collide).

Classic volumes get a temporary classic snapshot per run. Thin volumes keep
one *base* thin snapshot between runs: the next run takes a new snapshot,
asks the pool's metadata (``thin_delta``) which blocks differ from the
base, and reads only those. The new snapshot then becomes the base.
"""

from __future__ import annotations

import bisect
import fnmatch
import logging
import math
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inkind import ConfigError, RunContext, SourceError, lvm
from inkind.blockcopy import BlockCopy, CopyResult, merge_spans
from inkind.blockdev import OpenSource, open_source, udev_ids
from inkind.lvm import Volume
from inkind.rawimage import RawImageSource
from inkind.store.files import is_temp_name
from inkind.store.paths import list_dir, open_beneath
from inkind_lvm.options import LvmOptions

log = logging.getLogger("inkind")

MIN_SAMPLE = 4  # pool chunks re-read after a delta-driven run, at least
_SKIPPED_TYPES = "tsSTev"  # pools, snapshots, pool data/metadata, virtual


def image_file(vol: Volume) -> str:
    return f"{lvm.dm_name(vol.vg, vol.lv)}.img"


def snapshot_prefix(source: str, vol: Volume) -> str:
    """``inkind-<source>-<lv>-``: two sources may back up one volume without
    taking each other's snapshots for leftovers."""
    return f"inkind-{re.sub(r'[^A-Za-z0-9+_.-]', '_', source)}-{vol.lv}-"


def backed_up(vol: Volume) -> bool:
    """A volume a glob may select: not internal, not a pool or snapshot,
    not one of inkind's own snapshots."""
    return not (
        vol.hidden or vol.attr[:1] in _SKIPPED_TYPES or lvm.TAG in vol.tags or "inkind_history" in vol.tags
    )


class LvmSource(RawImageSource):
    """LVM logical volumes, each kept as a raw image (restore: dd)."""

    type_name = "lvm"
    Options = LvmOptions

    # --- selection -------------------------------------------------------

    def select(self, volumes: list[Volume]) -> list[Volume]:
        """The configured volumes, or a SourceError naming the pattern that
        matched nothing."""
        chosen = [v for v in volumes if backed_up(v) and self.options.matches(v)]
        for pattern in self.options.patterns:
            if not any(fnmatch.fnmatchcase(v.full_name, pattern) for v in chosen):
                raise SourceError(f"lvm: no logical volume matches {pattern!r}")
        return chosen

    # --- backup -----------------------------------------------------------

    def backup(self, run: RunContext) -> None:
        volumes = lvm.list_volumes()
        chosen = self.select(volumes)
        records: dict[str, Any] = run.state.plugin.setdefault("volumes", {})
        run.state.plugin["block_size"] = self.block_size()
        self._forget_unselected(run, records, chosen, volumes)
        release_left_reservation(run, volumes)
        failures = []
        for vol in chosen:
            run.stats.objects_seen += 1
            record = records.setdefault(vol.full_name, {})
            try:
                self._backup_volume(run, vol, volumes, record)
            except SourceError as e:
                failures.append(str(e) if vol.full_name in str(e) else f"{vol.full_name}: {e}")
        if run.full:
            self._remove_strays(run, {image_file(v) for v in chosen})
        if failures:
            kept = "the previous image of each is kept"
            raise SourceError(f"{'; '.join(failures)} ({kept})" if len(failures) > 1 else failures[0])

    def _backup_volume(
        self, run: RunContext, vol: Volume, volumes: list[Volume], record: dict[str, Any]
    ) -> None:
        engine = self.engine(run, image_file(vol), vol.full_name)
        engine.sweep_manifest_temps()
        base = self._recorded_base(vol.vg, record, volumes)
        self._remove_stale(run.name, vol, volumes, base)
        name = snapshot_prefix(run.name, vol) + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        lvm.create_snapshot(vol, name, None if vol.is_thin else self.options.snapshot_size)
        keep = False
        try:
            snap = lvm.find(lvm.list_volumes(), vol.vg, name)
            if snap is None:
                raise lvm.LvmError(
                    f"{vol.full_name}: snapshot {vol.vg}/{name} was created but lvs does not list it"
                )
            cross_check(snap)
            if vol.is_thin:
                keep = self._thin(run, engine, vol, snap, base, record, volumes)
            else:
                self._classic(run, engine, vol, snap)
            record.update(image=engine.image_rel.rpartition("/")[2], size=snap.size, uuid=vol.uuid)
        finally:
            if not keep:
                _remove_quietly(vol.vg, name)

    def _classic(self, run: RunContext, engine: BlockCopy, vol: Volume, snap: Volume) -> None:
        def still_valid() -> None:
            now = lvm.find(lvm.list_volumes(), snap.vg, snap.lv)
            if now is None or now.invalid:
                raise SourceError(
                    f"{vol.full_name}: snapshot {snap.full_name} filled up while it was read "
                    f"(snapshot_size = {self.options.snapshot_size!r} was too small for the writes meanwhile); "
                    "its image is discarded and the previous one kept"
                )

        src = open_source(Path(snap.device))
        try:
            try:
                result = self._copy(run, engine, src, vol, check=still_valid)
            except SourceError:
                still_valid()  # a full snapshot fails reads: say why
                raise
            self.account(run, result, vol.full_name)
            self._describe(run, engine, vol, src, thin=False)
            if run.scrub_fraction > 0:
                engine.scrub(src.fd, run.pick_block)
        finally:
            src.close()

    def _thin(
        self,
        run: RunContext,
        engine: BlockCopy,
        vol: Volume,
        snap: Volume,
        base: Volume | None,
        record: dict[str, Any],
        volumes: list[Volume],
    ) -> bool:
        """Copy a thin snapshot; returns whether it is kept as the new base."""
        delta = None
        if base is not None and not run.full and base.thin_id is not None and snap.thin_id is not None:
            delta = pool_delta(run, vol, base.thin_id, snap.thin_id, volumes)
        elif base is None and not run.full:
            log.info("%s: %s: no base snapshot; reading the whole volume", run.name, vol.full_name)
        src = open_source(Path(snap.device))
        try:
            ranges = delta.byte_ranges(src.size) if delta is not None else None
            result = self._copy(run, engine, src, vol, ranges=ranges)
            self.account(run, result, vol.full_name)
            self._describe(run, engine, vol, src, thin=True)
            self._recheck(run, engine, vol, src, result, delta)
        finally:
            src.close()
        if run.dry_run:  # the recorded base stays the next run's; this snapshot goes
            return False
        old = record.pop("base", None)
        if self.options.keep_base_snapshot:
            record["base"] = {"name": snap.lv, "thin_id": snap.thin_id, "uuid": snap.uuid}
        run.state.save()  # the new base is on record before the old one goes
        if old and base is not None:
            _remove_quietly(vol.vg, base.lv)
        return self.options.keep_base_snapshot

    def _copy(
        self, run: RunContext, engine: BlockCopy, src: OpenSource, vol: Volume, **kw: Any
    ) -> CopyResult:
        with run.progress(f"read {vol.full_name}", total=src.size, unit="bytes") as progress:
            return engine.copy(src.fd, src.size, full=run.full, progress=progress, **kw)

    def _recheck(
        self,
        run: RunContext,
        engine: BlockCopy,
        vol: Volume,
        src: OpenSource,
        result: CopyResult,
        delta: lvm.Delta | None,
    ) -> None:
        """After a delta-driven copy, compare a sample of the pool chunks the
        delta called unchanged with the store: one that differs means the
        delta cannot be trusted, so it is repaired and the next run is a
        full pass. Then scrub as usual."""
        if result.ranged and delta is not None:
            missed = self._missed_chunks(run, engine, src, result.size, delta)
            if missed:
                repair = engine.copy(src.fd, result.size, ranges=missed)
                run.stats.objects_repaired += repair.blocks_changed
                run.state.data["full_pending"] = True
                run.warn(
                    f"{vol.full_name}: thin_delta missed a change in {len(missed)} sampled chunk(s); "
                    "repaired, and the next run is a full pass"
                )
        if run.scrub_fraction > 0:
            engine.scrub(src.fd, run.pick_block)

    def _missed_chunks(
        self, run: RunContext, engine: BlockCopy, src: OpenSource, size: int, delta: lvm.Delta
    ) -> list[tuple[int, int]]:
        """Byte ranges of sampled unchanged chunks whose source and stored
        bytes differ. The sample follows the scrub fraction, MIN_SAMPLE at
        least, drawn without listing every chunk (a volume may have many)."""
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
        missed = []
        img_fd = open_beneath(run.root_fd, engine.image_rel, os.O_RDONLY)
        try:
            for c in sorted(picked):
                offset = c * unit
                length = min(unit, size - offset)
                source = os.pread(src.fd, length, offset)
                stored = os.pread(img_fd, length, offset).ljust(length, b"\0")
                run.stats.bytes_read += length
                run.stats.objects_scrubbed += 1
                if source != stored:
                    missed.append((offset, length))
        finally:
            os.close(img_fd)
        return missed

    def _describe(
        self, run: RunContext, engine: BlockCopy, vol: Volume, src: OpenSource, *, thin: bool
    ) -> None:
        desc: dict[str, Any] = {
            "volume": vol.full_name,
            "lv_uuid": vol.uuid,
            "kind": "thin volume" if thin else "logical volume",
            "size": src.size,
            "block_size": self.block_size(),
        }
        self.describe(run, engine, desc)

    # --- snapshots kept or left behind ---------------------------------------

    def _recorded_base(self, vg: str, record: dict[str, Any], volumes: list[Volume]) -> Volume | None:
        """The base snapshot on record, if it still exists as recorded."""
        want = record.get("base") or {}
        found = lvm.find(volumes, vg, want.get("name", ""))
        if found is None or found.uuid != want.get("uuid") or found.thin_id != want.get("thin_id"):
            if want:
                log.info("base snapshot %s is gone; reading the whole volume", want.get("name"))
            return None
        return found

    def _remove_stale(self, source: str, vol: Volume, volumes: list[Volume], base: Volume | None) -> None:
        """Snapshots of this volume that a killed run left: tagged, named
        and of this origin, and not the recorded base."""
        for v in volumes:
            if (
                v.vg == vol.vg
                and v.origin == vol.lv
                and lvm.TAG in v.tags
                and v.lv.startswith(snapshot_prefix(source, vol))
                and (base is None or v.lv != base.lv)
            ):
                log.info("%s: removing %s, left by an interrupted run", vol.full_name, v.full_name)
                lvm.remove(v.vg, v.lv)

    def _forget_unselected(
        self, run: RunContext, records: dict[str, Any], chosen: list[Volume], volumes: list[Volume]
    ) -> None:
        """Volumes no longer configured: their base snapshots go (they hold
        pool space); their images stay until a full pass."""
        if run.dry_run:  # the base snapshots stay for the real run to decide
            return
        selected = {v.full_name for v in chosen}
        for full_name in [k for k in records if k not in selected]:
            base = (records.pop(full_name) or {}).get("base") or {}
            vg = full_name.partition("/")[0]
            found = lvm.find(volumes, vg, base.get("name", ""))
            if found is not None and found.uuid == base.get("uuid"):
                log.info("%s: %s is no longer selected; removing its base snapshot", run.name, full_name)
                _remove_quietly(vg, found.lv)

    def _remove_strays(self, run: RunContext, keep: set[str]) -> None:
        for name in list_dir(run.data_fd):
            if name.endswith(".img") and name not in keep and not is_temp_name(name):
                log.info("%s: removing %s (no longer produced by this source)", run.name, name)
                self.engine(run, name, name).remove()

    # --- scrub and restore --------------------------------------------------

    def scrub(self, run: RunContext) -> None:
        """Sampled blocks against the manifest, then against the thin base
        snapshot (exactly what the image holds); classic volumes keep no
        snapshot, so only the store is checked."""
        records: dict[str, Any] = run.state.plugin.get("volumes", {})
        try:
            volumes = lvm.list_volumes()
        except lvm.LvmError as e:
            run.warn(f"{e}; checking the store only")
            volumes = []
        for full_name, record in sorted(records.items()):
            if not record.get("image"):
                continue
            engine = self.engine(run, record["image"], full_name)
            base = self._recorded_base(full_name.partition("/")[0], record, volumes) if volumes else None
            src = open_source(Path(base.device)) if base is not None else None
            try:
                engine.scrub(src.fd if src else None, run.pick_block)
            finally:
                if src is not None:
                    src.close()

    def covers(self, device: str, volume: str | None) -> bool:
        return volume is not None and any(fnmatch.fnmatchcase(volume, p) for p in self.options.patterns)

    def image_for_restore(self, path: str | None, state: dict[str, Any]) -> str:
        records = state.get("volumes", {})
        images = {k: r["image"] for k, r in records.items() if r.get("image")}
        if not images:
            raise ConfigError("restore: nothing stored yet for this source")
        if path:
            want = path.strip("/")
            for full_name, image in images.items():
                if want in (full_name, image, image.removesuffix(".img")):
                    return image
            raise ConfigError(f"restore: volume {path!r} is not stored (stored: {', '.join(sorted(images))})")
        if len(images) > 1:
            raise ConfigError(f"restore: name a volume to restore ({', '.join(sorted(images))})")
        return next(iter(images.values()))


def _remove_quietly(vg: str, lv: str) -> None:
    """Remove a snapshot in a ``finally``: a failure is logged, and the next
    run removes the leftover by its tag and name."""
    try:
        lvm.remove(vg, lv)
    except lvm.LvmError as e:
        log.error("%s (the next run removes it)", e)


def cross_check(snap: Volume) -> None:
    """The device we are about to read is the snapshot lvs named: udev's
    DM_VG_NAME/DM_LV_NAME must agree (where udev knows the device)."""
    try:
        is_device = stat.S_ISBLK(os.stat(snap.device).st_mode)
    except OSError:
        return  # open_source names the problem
    if not is_device:
        return
    props = udev_ids(Path(snap.device), ("DM_VG_NAME", "DM_LV_NAME"))
    if props and (props.get("DM_VG_NAME"), props.get("DM_LV_NAME")) != (snap.vg, snap.lv):
        raise lvm.LvmError(
            f"{snap.device}: udev says it is {props.get('DM_VG_NAME')}/{props.get('DM_LV_NAME')}, "
            f"not {snap.full_name}; not reading it"
        )


def release_left_reservation(run: RunContext, volumes: list[Volume]) -> None:
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
            lvm.pool_message(pool, "release_metadata_snap")
        except lvm.LvmError as e:
            log.info("%s (already released)", e)
    run.state.save()


def pool_delta(run: RunContext, vol: Volume, snap1: int, snap2: int, volumes: list[Volume]) -> lvm.Delta:
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
    with lvm.metadata_snapshot(pool, released=lambda: run.state.plugin.pop("reserved_metadata_snap")):
        delta = lvm.thin_delta(meta.device, snap1, snap2)
    if pool.chunk_size and delta.block_sectors * lvm.SECTOR != pool.chunk_size:
        raise lvm.LvmError(
            f"{pool.full_name}: thin_delta's data block size ({delta.block_sectors * lvm.SECTOR} bytes) "
            f"is not the pool's chunk size ({pool.chunk_size} bytes)"
        )
    return delta
