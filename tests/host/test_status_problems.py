"""``inkind status`` as a monitoring check: exit 2, and one line saying what
to do, for corruption a check found, a store that cannot be written, and a
source whose last success is older than its max_age."""

from __future__ import annotations

import calendar
import json
import subprocess
import time
from pathlib import Path

import pytest
from loopfs import loop_device as loop_device  # a fixture
from loopfs import mounted as mounted  # a fixture

from inkind.testing import flip_byte, needs_root, render_config


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "letter.txt").write_text("dear sir\n" * 100)
    (src / "notes").write_text("notes\n")
    return src


def problems(inkind_cli, cfg: Path) -> tuple[int, list[str], dict]:
    """status's exit, its human problem lines, and its JSON."""
    human = inkind_cli("-c", cfg, "status")
    data = inkind_cli("-c", cfg, "status", "--json")
    assert human.returncode == data.returncode == data.json()["exit_status"], human.stderr + data.stderr
    lines = [line for line in human.stdout.splitlines() if line.startswith("problem: ")]
    assert [f"problem: {p}" for p in data.json()["problems"]] == lines
    return human.returncode, lines, data.json()


def test_corruption_a_scrub_found_fails_status_until_a_full_scrub_is_clean(
    tree, inkind_config, inkind_store, inkind_cli
):
    cfg = inkind_config({"home": {"type": "files", "path": tree}})
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    assert problems(inkind_cli, cfg)[0] == 0
    flip_byte(inkind_store / "home" / "d" / "letter.txt")
    assert inkind_cli("-c", cfg, "scrub", "--fraction", "1").returncode == 2  # found (and rebuilt) it

    code, lines, data = problems(inkind_cli, cfg)
    assert code == 2
    (line,) = lines
    assert "source home: scrub at " in line and "home/d/letter.txt" in line, line
    assert "-> check the store's disk" in line and "inkind scrub --fraction 1 home" in line
    (row,) = data["sources"]
    assert row["corruption"]["objects"] == 1 and row["corruption"]["command"] == "scrub"

    # A scrub of a sample proves nothing about the object that was bad.
    assert inkind_cli("-c", cfg, "scrub", "--fraction", "0").returncode == 0
    assert problems(inkind_cli, cfg)[0] == 2
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    # A scrub of every object that is clean clears it.
    assert inkind_cli("-c", cfg, "scrub", "--fraction", "1").returncode == 0
    code, lines, data = problems(inkind_cli, cfg)
    assert (code, lines, data["sources"][0]["corruption"]) == (0, [], None)


def test_corruption_verify_found_fails_status_until_verify_is_clean(
    tree, inkind_config, inkind_store, inkind_cli
):
    cfg = inkind_config({"home": {"type": "files", "path": tree}})
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    flip_byte(inkind_store / "home" / "notes")
    assert inkind_cli("-c", cfg, "verify").returncode == 2
    code, lines, _ = problems(inkind_cli, cfg)
    assert code == 2 and len(lines) == 1
    assert "source home: verify at " in lines[0] and "home/notes" in lines[0], lines

    assert inkind_cli("-c", cfg, "scrub", "--fraction", "1").returncode == 2  # rebuilds it from the source
    assert problems(inkind_cli, cfg)[0] == 2
    assert inkind_cli("-c", cfg, "verify").returncode == 0
    assert problems(inkind_cli, cfg)[:2] == (0, [])


def test_corruption_a_backups_sampled_scrub_found_fails_status(tree, inkind_config, inkind_store, inkind_cli):
    cfg = inkind_config({"home": {"type": "files", "path": tree}})
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    flip_byte(inkind_store / "home" / "notes")
    assert inkind_cli("-c", cfg, "backup", "--scrub-fraction", "1").returncode == 2
    code, lines, _ = problems(inkind_cli, cfg)
    assert code == 2
    corrupt = [line for line in lines if "corrupt object" in line]
    assert len(corrupt) == 1 and "source home: backup at " in corrupt[0] and "home/notes" in corrupt[0]
    assert any("source home: last backup failed at " in line for line in lines), lines


@needs_root
def test_a_read_only_store_fails_status(tmp_path, tree, mounted, inkind_cli):
    mnt = mounted("ext4")
    store = mnt / "store"
    store.mkdir()
    cfg = tmp_path / "ro.toml"
    cfg.write_text(render_config(store, {"home": {"type": "files", "path": tree}}))
    assert inkind_cli("-c", cfg, "init").returncode == 0  # as a sysadmin makes the store
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    assert problems(inkind_cli, cfg)[0] == 0

    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    try:
        (tree / "new").write_text("new\n")
        assert inkind_cli("-c", cfg, "backup").returncode == 2  # and it cannot record that it failed
        code, lines, data = problems(inkind_cli, cfg)
        assert code == 2 and data["writable"] is False
        (line,) = lines
        assert f"store {store} is on a read-only filesystem: every backup fails" in line
        assert "mount -o remount,rw" in line
        assert inkind_cli("-c", cfg, "verify").returncode == 0  # checking a read-only store still works
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    assert problems(inkind_cli, cfg)[:2] == (0, [])


@needs_root
def test_a_store_directory_root_cannot_write_into_fails_status(tree, inkind_config, inkind_store, inkind_cli):
    cfg = inkind_config({"home": {"type": "files", "path": tree}})
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    sources = inkind_store / ".inkind" / "sources"
    subprocess.run(["chattr", "+i", str(sources)], check=True)  # even root cannot write there now
    try:
        code, lines, data = problems(inkind_cli, cfg)
    finally:
        subprocess.run(["chattr", "-i", str(sources)], check=True)
    assert code == 2 and data["writable"] is False
    (line,) = lines
    assert f"{sources} is not writable" in line and "every backup fails" in line


def age(store: Path, name: str, seconds: int) -> None:
    """Make the last success of ``name`` ``seconds`` older, as time passing
    would (the state file records it to the second)."""
    path = store / ".inkind" / "sources" / f"{name}.json"
    data = json.loads(path.read_text())
    then = calendar.timegm(time.strptime(data["last_success"], "%Y-%m-%dT%H:%M:%SZ")) - seconds
    data["last_success"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(then))
    path.write_text(json.dumps(data))


def test_max_age_fails_status_once_the_last_success_is_older(tree, inkind_config, inkind_store, inkind_cli):
    cfg = inkind_config(
        {"home": {"type": "files", "path": tree}, "db": {"type": "files", "path": tree}}, max_age="8s"
    )
    cfg.write_text(cfg.read_text().replace("[sources.db]\n", '[sources.db]\nmax_age = "1h"\n'))
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    code, lines, data = problems(inkind_cli, cfg)
    assert (code, lines) == (0, []) and not any(r["stale"] for r in data["sources"])
    age(inkind_store, "home", 9)
    age(inkind_store, "db", 9)
    code, lines, data = problems(inkind_cli, cfg)
    assert code == 2 and [r["stale"] for r in data["sources"]] == [True, False]
    (line,) = lines
    assert "source home: last success " in line and "is older than max_age 8s" in line
    assert "-> see why its backups do not run or fail" in line
    # A backup that fails keeps it failing; one that succeeds ends it.
    tree.rename(tree.with_name("gone"))
    assert inkind_cli("-c", cfg, "backup", "home").returncode == 2
    assert len(problems(inkind_cli, cfg)[1]) == 2  # failed, and still older than max_age
    tree.with_name("gone").rename(tree)
    assert inkind_cli("-c", cfg, "backup", "home").returncode == 0
    assert problems(inkind_cli, cfg)[:2] == (0, [])
