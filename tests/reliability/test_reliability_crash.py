"""SIGKILL at random moments: every stored object stays old or new, verify
sees only recoverable leftovers, and the next run converges."""

import json
import os
import random
import sqlite3
from pathlib import Path

import pytest
from harness import (
    KillReport,
    backup_killed_at,
    check_old_or_new,
    delays,
    inkind,
    pending_journal,
    stored_files,
    timed_backup,
    verify_is_recoverable,
)

from inkind.store.xattrs import XAttrs
from inkind.testing import render_config, tree_diff

pytestmark = pytest.mark.slow

RESULTS = Path(os.environ.get("INKIND_RELIABILITY_OUT", "/tmp/inkind-reliability.json"))


def record(name: str, report: KillReport) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[name] = report.as_dict()
    RESULTS.write_text(json.dumps(data, indent=2))


def snapshot_files(src: Path) -> dict[str, bytes]:
    return {rel: p.read_bytes() for rel, p in stored_files(src).items()}


def mutate_tree(src: Path, rng: random.Random) -> None:
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for p in rng.sample(files, len(files) // 4):
        if p.name == "big.bin":
            with open(p, "r+b") as f:
                for _ in range(6):
                    f.seek(rng.randrange(0, (72 << 20) - 65536))
                    f.write(rng.randbytes(65536))
        else:
            p.write_bytes(rng.randbytes(rng.randrange(0, 30000)))
    (src / f"new-{rng.randrange(10**9)}").write_bytes(rng.randbytes(100))


def test_files_source_survives_kills(tmp_path, inkind_store, kill_points):
    rng = random.Random(7)
    src = tmp_path / "src"
    for i in range(600):
        p = src / f"d{i % 12}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.randrange(0, 30000)))
    with open(src / "big.bin", "wb") as f:
        f.write(rng.randbytes(72 << 20))
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"home": {"type": "files", "path": src}}))
    timed_backup(cfg)
    mutate_tree(src, rng)
    longest = timed_backup(cfg)  # an incremental run: the kind that gets killed
    report = KillReport()
    for delay in delays(rng, kill_points, longest):
        old = snapshot_files(inkind_store / "home")
        mutate_tree(src, rng)
        new = snapshot_files(src)
        status = backup_killed_at(cfg, delay)
        if status is None:
            report.kills += 1
        else:
            report.finished += 1
        check_old_or_new(inkind_store / "home", old, new, inkind_store, "home", report)
        report.leftovers += verify_is_recoverable(cfg)
        r = inkind("-c", cfg, "backup")
        assert r.returncode == 0, r.stderr
        assert tree_diff(src, inkind_store / "home") == []
    record("files", report)
    assert report.lost == []


def test_image_source_survives_kills(tmp_path, inkind_store, kill_points):
    rng = random.Random(11)
    image = tmp_path / "disk.raw"
    size = 96 << 20
    with open(image, "wb") as f:
        f.write(rng.randbytes(size))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        render_config(inkind_store, {"vm": {"type": "image", "path": image, "block_size": 1 << 20}})
    )
    timed_backup(cfg)
    longest = timed_backup(cfg)  # an incremental run: the kind that gets killed
    report = KillReport()
    stored = inkind_store / "vm"
    for delay in delays(rng, kill_points, longest):
        old = {rel: p.read_bytes() for rel, p in stored_files(stored).items()}
        with open(image, "r+b") as f:
            for _ in range(12):
                f.seek(rng.randrange(0, size - 4096))
                f.write(rng.randbytes(4096))
        new_content = image.read_bytes()
        new = {rel: new_content for rel in old}
        status = backup_killed_at(cfg, delay)
        report.kills += status is None
        report.finished += status is not None
        check_old_or_new(stored, old, new, inkind_store, "vm", report)
        report.leftovers += verify_is_recoverable(cfg)
        r = inkind("-c", cfg, "backup")
        assert r.returncode == 0, r.stderr
        (img,) = stored_files(stored).values()
        assert img.read_bytes() == new_content
    assert inkind("-c", cfg, "verify").returncode == 0
    record("image", report)
    assert report.lost == []


def dump(path: Path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_sqlite_source_survives_kills(tmp_path, inkind_store, kill_points):
    rng = random.Random(13)
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("create table t (id integer primary key, v blob)")
    con.executemany("insert into t (v) values (?)", [(rng.randbytes(2000),) for _ in range(20000)])
    con.commit()
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"app": {"type": "sqlite", "path": db}}))
    longest = timed_backup(cfg)
    report = KillReport()
    stored = inkind_store / "app" / "app.db"
    for delay in delays(rng, kill_points, longest):
        old = dump(stored)
        con.executemany(
            "update t set v = ? where id = ?",
            [(rng.randbytes(2000), rng.randrange(1, 20000)) for _ in range(300)],
        )
        con.commit()
        new = list(con.iterdump())
        status = backup_killed_at(cfg, delay)
        report.kills += status is None
        report.finished += status is not None
        if stored.exists() and dump(stored) not in (old, new):
            if not (XAttrs(stored).get("dirty") is not None and pending_journal(inkind_store, "app")):
                report.lost.append("app.db")
            else:
                report.mid_journal += 1
        report.leftovers += verify_is_recoverable(cfg)
        r = inkind("-c", cfg, "backup")
        assert r.returncode == 0, r.stderr
        assert dump(stored) == new
    con.close()
    record("sqlite", report)
    assert report.lost == []
