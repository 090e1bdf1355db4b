"""The ``lvm`` source: each selected logical volume is read from a snapshot
and kept as ``NAME/<vg>-<lv>.img`` (the device-mapper name, so two volume
groups never collide).

Classic volumes get a temporary classic snapshot per run. Thin volumes keep
one *base* thin snapshot between runs: the next run takes a new snapshot,
asks the pool's metadata (``thin_delta``) which blocks differ from the
base, and reads only those. The new snapshot then becomes the base.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inkind import (
    BlockCopy,
    ConfigError,
    CopyResult,
    RawImageSource,
    RunContext,
    SourceError,
    lvm,
    open_source,
)
from inkind_lvm.options import LvmOptions
from inkind_lvm.reading import Machine, Snapshot, machine
from inkind_lvm.thin import pool_delta, release_left_reservation, unchanged_sample
from inkind_lvm.volumes import backed_up, image_file, remove_quietly, snapshot_prefix

log = logging.getLogger("inkind")


@dataclass
class VolumeRun:
    """One volume's backup in a run: the volume, its record in the state,
    the engine that keeps its image, lvs as the run began, and the machine
    the volume is on."""

    run: RunContext
    vol: lvm.Volume
    record: dict[str, Any]
    engine: BlockCopy
    volumes: list[lvm.Volume]
    machine: Machine


class LvmSource(RawImageSource):
    """LVM logical volumes, each kept as a raw image (restore: dd)."""

    type_name = "lvm"
    Options = LvmOptions
    reads_remote_host = True

    # --- selection -------------------------------------------------------

    def select(self, volumes: list[lvm.Volume]) -> list[lvm.Volume]:
        """The configured volumes, or a SourceError naming the pattern that
        matched nothing."""
        chosen = [v for v in volumes if backed_up(v) and self.options.matches(v)]
        where = f" on host {self.remote.host}" if self.remote is not None else ""
        for pattern in self.options.patterns:
            if not any(fnmatch.fnmatchcase(v.full_name, pattern) for v in chosen):
                raise SourceError(f"lvm: no logical volume{where} matches {pattern!r}")
        return chosen

    # --- backup -----------------------------------------------------------

    def backup(self, run: RunContext) -> None:
        with machine(self.remote, run) as m:
            self._backup(run, m)

    def _backup(self, run: RunContext, m: Machine) -> None:
        volumes = m.lvm.list_volumes()
        chosen = self.select(volumes)
        records: dict[str, Any] = run.state.plugin.setdefault("volumes", {})
        run.state.plugin["block_size"] = self.block_size()
        self._forget_unselected(run, m.lvm, records, chosen, volumes)
        release_left_reservation(run, m.lvm, volumes)
        failures = []
        for n, vol in enumerate(chosen):
            if m.channel is not None and m.channel.broken:  # no host to read the rest from
                failures.append(f"{', '.join(v.full_name for v in chosen[n:])}: not read")
                break
            run.stats.objects_seen += 1
            record = records.setdefault(vol.full_name, {})
            engine = self.engine(run, image_file(vol), self._label(vol))
            try:
                self._backup_volume(VolumeRun(run, vol, record, engine, volumes, m))
            except SourceError as e:
                failures.append(self._failure(vol, e))
        if run.full:
            self.remove_strays(run, {image_file(v) for v in chosen})
        if failures:
            kept = "the previous image of each is kept"
            raise SourceError(f"{'; '.join(failures)} ({kept})" if len(failures) > 1 else failures[0])

    def _failure(self, vol: lvm.Volume, e: SourceError) -> str:
        """One volume's failure as one line: the host first (if any), then
        the volume, then what happened."""
        host = f"host {self.remote.host}: " if self.remote is not None else ""
        text = str(e).removeprefix(host)
        return host + (text if vol.full_name in text else f"{vol.full_name}: {text}")

    def _label(self, vol: lvm.Volume) -> str:
        return f"{self.remote.host}:{vol.full_name}" if self.remote is not None else vol.full_name

    def _backup_volume(self, job: VolumeRun) -> None:
        run, vol, engine, cmds = job.run, job.vol, job.engine, job.machine.lvm
        engine.sweep_manifest_temps()
        base = self._recorded_base(vol.vg, job.record, job.volumes)
        self._remove_stale(run.name, cmds, vol, job.volumes, base)
        name = snapshot_prefix(run.name, vol) + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        cmds.create_snapshot(vol, name, None if vol.is_thin else self.options.snapshot_size)
        keep = False
        try:
            snap = lvm.find(cmds.list_volumes(), vol.vg, name)
            if snap is None:
                raise lvm.LvmError(
                    f"{vol.full_name}: snapshot {vol.vg}/{name} was created but lvs does not list it"
                )
            if vol.is_thin:
                keep = self._thin(job, snap, base)
            else:
                self._classic(job, snap)
            job.record.update(image=engine.image_rel.rpartition("/")[2], size=snap.size, uuid=vol.uuid)
        finally:
            if not keep:
                remove_quietly(cmds, vol.vg, name)

    def _classic(self, job: VolumeRun, snap: lvm.Volume) -> None:
        def still_valid() -> None:
            now = lvm.find(job.machine.lvm.list_volumes(), snap.vg, snap.lv)
            if now is None or now.invalid:
                raise SourceError(
                    f"{job.vol.full_name}: snapshot {snap.full_name} filled up while it was read "
                    f"(snapshot_size = {self.options.snapshot_size!r} was too small for the writes meanwhile); "
                    "its image is discarded and the previous one kept"
                )

        src = job.machine.open(snap)
        try:
            try:
                result = src.copy(job.run, job.engine, job.vol.full_name, check=still_valid)
            except SourceError:
                still_valid()  # a full snapshot fails reads: say why
                raise
            self.account(job.run, result, self._label(job.vol))
            self._describe(job, src.size, thin=False)
            if job.run.scrub_fraction > 0:
                job.engine.scrub(src.scrub_fd, job.run.pick_block)
        finally:
            src.close()

    def _thin(self, job: VolumeRun, snap: lvm.Volume, base: lvm.Volume | None) -> bool:
        """Copy a thin snapshot; returns whether it is kept as the new base."""
        run, vol, cmds = job.run, job.vol, job.machine.lvm
        delta = None
        if base is not None and not run.full and base.thin_id is not None and snap.thin_id is not None:
            delta = pool_delta(run, cmds, vol, base.thin_id, snap.thin_id, job.volumes)
        elif base is None and not run.full:
            log.info("%s: %s: no base snapshot; reading the whole volume", run.name, vol.full_name)
        src = job.machine.open(snap)
        try:
            ranges = delta.byte_ranges(src.size) if delta is not None else None
            result = src.copy(run, job.engine, vol.full_name, ranges=ranges)
            self.account(run, result, self._label(vol))
            self._describe(job, src.size, thin=True)
            self._recheck(job, src, result, delta)
        finally:
            src.close()
        if run.dry_run:  # the recorded base stays the next run's; this snapshot goes
            return False
        old = job.record.pop("base", None)
        if self.options.keep_base_snapshot:
            job.record["base"] = {"name": snap.lv, "thin_id": snap.thin_id, "uuid": snap.uuid}
        run.state.save()  # the new base is on record before the old one goes
        if old and base is not None:
            remove_quietly(cmds, vol.vg, base.lv)
        return self.options.keep_base_snapshot

    def _recheck(self, job: VolumeRun, src: Snapshot, result: CopyResult, delta: lvm.Delta | None) -> None:
        """After a delta-driven copy, compare a sample of the pool chunks the
        delta called unchanged with the store: one that differs means the
        delta cannot be trusted, so it is repaired and the next run is a
        full pass. Then scrub as usual."""
        run, engine = job.run, job.engine
        if result.ranged and delta is not None:
            missed = src.differing(engine, unchanged_sample(run, result.size, delta))
            if missed:
                repair = src.copy(run, engine, job.vol.full_name, ranges=missed)
                run.stats.objects_repaired += repair.blocks_changed
                run.state.data["full_pending"] = True
                unit = "chunk" if src.scrub_fd is not None else "block"  # a host's: hashed by block
                run.warn(
                    f"{job.vol.full_name}: thin_delta missed a change in {len(missed)} sampled {unit}(s); "
                    "repaired, and the next run is a full pass"
                )
        if run.scrub_fraction > 0:
            engine.scrub(src.scrub_fd, run.pick_block)

    def _describe(self, job: VolumeRun, size: int, *, thin: bool) -> None:
        desc: dict[str, Any] = {
            "volume": job.vol.full_name,
            "lv_uuid": job.vol.uuid,
            "kind": "thin volume" if thin else "logical volume",
            "size": size,
            "block_size": self.block_size(),
        }
        if self.remote is not None:
            desc["host"] = self.remote.host
        self.describe(job.run, job.engine, desc)

    # --- snapshots kept or left behind ---------------------------------------

    def _recorded_base(self, vg: str, record: dict[str, Any], volumes: list[lvm.Volume]) -> lvm.Volume | None:
        """The base snapshot on record, if it still exists as recorded."""
        want = record.get("base") or {}
        found = lvm.find(volumes, vg, want.get("name", ""))
        if found is None or found.uuid != want.get("uuid") or found.thin_id != want.get("thin_id"):
            if want:
                log.info("base snapshot %s is gone; reading the whole volume", want.get("name"))
            return None
        return found

    def _remove_stale(  # size: the source, the machine's commands, the volume, lvs and its base
        self,
        source: str,
        cmds: lvm.Commands,
        vol: lvm.Volume,
        volumes: list[lvm.Volume],
        base: lvm.Volume | None,
    ) -> None:
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
                cmds.remove(v.vg, v.lv)

    def _forget_unselected(  # size: the run, the machine's commands, the records, the chosen and lvs
        self,
        run: RunContext,
        cmds: lvm.Commands,
        records: dict[str, Any],
        chosen: list[lvm.Volume],
        volumes: list[lvm.Volume],
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
                remove_quietly(cmds, vg, found.lv)

    # --- scrub and restore --------------------------------------------------

    def scrub(self, run: RunContext) -> None:
        """Sampled blocks against the manifest, then against the thin base
        snapshot (exactly what the image holds); classic volumes keep no
        snapshot, so only the store is checked; volumes on a host too."""
        records: dict[str, Any] = run.state.plugin.get("volumes", {})
        volumes: list[lvm.Volume] = []
        try:
            if self.remote is None:
                volumes = lvm.list_volumes()
        except lvm.LvmError as e:
            run.warn(f"{e}; checking the store only")
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
