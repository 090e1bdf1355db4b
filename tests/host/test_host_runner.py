"""Exit codes, locking, signals and recovery of the runner."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from inkind.storeroot import Store, init_store
from inkind.testing import needs_root, render_config


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    return src


def test_store_problems_are_one_line_and_write_nothing(tmp_path, tree, inkind_cli):
    missing = (
        "not an inkind store (is the disk mounted?): no .inkind/store.json (`inkind init` makes a store)"
    )
    for store, needle in [(tmp_path / "missing", missing), (tree / "f", "is not a directory")]:
        cfg = tmp_path / "c.toml"
        cfg.write_text(render_config(store, {"h": {"type": "files", "path": tree}}))
        r = inkind_cli("-c", cfg, "backup")
        assert r.returncode == 2
        assert r.stderr.strip().splitlines()[-1] == f"inkind: error: store: {store}: {needle}"
        assert not (tmp_path / "missing").exists()


@needs_root
def test_read_only_store_is_refused(tmp_path, tree, inkind_cli):
    store = tmp_path / "ro"
    store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", store], check=True)
    init_store(store)
    subprocess.run(["mount", "-o", "remount,ro", store], check=True)
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(render_config(store, {"h": {"type": "files", "path": tree}}))
        r = inkind_cli("-c", cfg, "backup")
        assert r.returncode == 2 and f"store: {store}: is not writable" in r.stderr
    finally:
        subprocess.run(["umount", store], check=True)


def test_unknown_source_name_on_the_command_line(tmp_path, tree, inkind_config, inkind_cli):
    cfg = inkind_config({"h": {"type": "files", "path": tree}})
    r = inkind_cli("-c", cfg, "backup", "nope")
    assert r.returncode == 2 and "no source named 'nope'" in r.stderr


def test_one_failing_source_does_not_stop_the_others(tmp_path, tree, inkind_config, inkind_cli):
    cfg = inkind_config(
        {"bad": {"type": "files", "path": tmp_path / "gone"}, "good": {"type": "files", "path": tree}}
    )
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 2
    assert {s["name"]: s["outcome"] for s in r.json()["sources"]} == {"bad": "failed", "good": "ok"}


def test_a_second_run_skips_a_busy_source(tmp_path, tree, inkind_config, inkind_store, inkind_cli):
    cfg = inkind_config({"h": {"type": "files", "path": tree}})
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    store = Store.open(inkind_store)
    fd = store.lock("h")
    try:
        r = inkind_cli("-c", cfg, "backup", "--json")
        assert r.returncode == 1
        assert r.json()["sources"][0]["outcome"] == "busy"
    finally:
        os.close(fd)
        store.close()
    assert inkind_cli("-c", cfg, "backup").returncode == 0


def test_seed_makes_the_run_reproducible(tmp_path, tree, inkind_config, inkind_cli):
    cfg = inkind_config({"h": {"type": "files", "path": tree}}, full_probability=0.5)
    runs = [inkind_cli("-c", cfg, "backup", "--json", env={"INKIND_SEED": str(s)}).json() for s in (3, 3, 4)]
    assert runs[0]["seed"] == 3 and runs[2]["seed"] == 4
    assert runs[0]["sources"][0]["full"] == runs[1]["sources"][0]["full"]


def test_sigterm_stops_promptly_and_records_the_interruption(tmp_path, inkind_config, inkind_store):
    src = tmp_path / "src"
    for i in range(40):
        d = src / f"d{i}"
        d.mkdir(parents=True)
        for j in range(250):
            (d / f"f{j}").write_bytes(os.urandom(512))
    cfg = inkind_config({"h": {"type": "files", "path": src}})
    p = subprocess.Popen(
        # verify-after: SIGTERM mid-run
        [sys.executable, "-m", "inkind", "-c", str(cfg), "backup"],
        stderr=subprocess.PIPE,
        text=True,
    )
    state_file = inkind_store / ".inkind" / "sources" / "h.json"
    deadline = time.monotonic() + 30
    while not (inkind_store / "h" / "d1").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 2, err
    assert "interrupted by SIGTERM" in err
    state = json.loads(state_file.read_text())
    assert state["last_backup"]["outcome"] == "interrupted" and state["resume"]
    assert [n for n in os.listdir(inkind_store / "h") if n.startswith(".inkind-tmp")] == []


def test_a_killed_run_is_cleaned_up_by_the_next(tmp_path, tree, inkind_config, inkind_store, inkind_cli):
    cfg = inkind_config({"h": {"type": "files", "path": tree}})
    inkind_cli("-c", cfg, "backup")
    (inkind_store / "h" / ".inkind-tmp-deadbeef").write_text("half")
    state_file = inkind_store / ".inkind" / "sources" / "h.json"
    state = json.loads(state_file.read_text())
    state["running"] = {"pid": 999999, "start": "2026-01-01T00:00:00Z", "command": "backup"}
    state_file.write_text(json.dumps(state))
    v = inkind_cli("-c", cfg, "verify")
    assert v.returncode == 1 and "leftover temp" in v.stdout
    s = inkind_cli("-c", cfg, "status", "--json").json()
    assert s["sources"][0]["interrupted"] is True
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    assert not (inkind_store / "h" / ".inkind-tmp-deadbeef").exists()
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_a_corrupt_state_file_is_set_aside(tmp_path, tree, inkind_config, inkind_store, inkind_cli):
    cfg = inkind_config({"h": {"type": "files", "path": tree}})
    inkind_cli("-c", cfg, "backup")
    state_file = inkind_store / ".inkind" / "sources" / "h.json"
    state_file.write_text("{not json")
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 1 and "set aside" in r.stderr
    assert list(state_file.parent.glob("h.json.corrupt-*"))
    assert json.loads(state_file.read_text())["last_backup"]["outcome"] == "warnings"
