"""``backup --jobs N``: sources at once, each isolated, the report merged
in config order exactly as one by one; signals reach every running
source; a killed child is one failed source."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from inkind.config import parse
from inkind.errors import ConfigError
from inkind.storeroot import init_store
from inkind.testing import render_config, tree_diff

# A source that meets another: it stores one object, keeps a resume
# pointer, says (in a line without its name) whom it waits for, writes its
# pid where the test looks, and waits for that file to appear.
GATE = """
import logging, os, time
from dataclasses import dataclass
from pathlib import Path
import inkind

log = logging.getLogger("inkind")

@dataclass
class Opts:
    meet: str
    wait_for: str = ""
    patience: float = 60.0

class Gate(inkind.Source):
    type_name = "gate"
    Options = Opts
    def backup(self, run):
        inkind.update_file(run.data_dir / "mark", run.name.encode(), stats=run.stats)
        run.state.set_resume("mark", force=True)
        meet = Path(self.options.meet)
        log.info("waiting for %s", self.options.wait_for or "nobody")
        (meet / f".{run.name}").write_text(str(os.getpid()))
        os.replace(meet / f".{run.name}", meet / run.name)  # whole when the test sees it
        deadline = time.monotonic() + self.options.patience
        while self.options.wait_for and not (meet / self.options.wait_for).exists():
            if time.monotonic() > deadline:
                raise inkind.SourceError(f"gave up waiting for {self.options.wait_for}")
            time.sleep(0.01)
    def scrub(self, run):
        pass
    def restore_commands(self, data_dir, dest, path, state):
        return [["cp", str(data_dir / "mark"), dest]]

@inkind.hookimpl
def inkind_source_types():
    return [Gate]
"""


@pytest.fixture
def gate_env(tmp_path):
    """The environment of an inkind that has the gate plugin installed."""
    site = tmp_path / "site"
    info = site / "gate-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gate\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[inkind]\ninkind_gate = inkind_gate\n")
    (site / "inkind_gate.py").write_text(textwrap.dedent(GATE))
    (tmp_path / "meet").mkdir()
    return {**os.environ, "PYTHONPATH": str(site)}


def inkind(env, *args, **kw):
    """The real command with the gate plugin; the tests verify after it."""
    cmd = [sys.executable, "-m", "inkind", *map(str, args)]  # verify-after: each test runs verify itself
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)


def gate(tmp_path, wait_for="", **more):
    return {"type": "gate", "meet": tmp_path / "meet", "wait_for": wait_for, **more}


def verify_clean(env, cfg):
    r = inkind(env, "-c", cfg, "verify")
    assert r.returncode == 0, r.stderr


def trees(tmp_path, n):
    """n small source trees."""
    found = {}
    for name in ("alpha", "beta", "gamma")[:n]:
        src = tmp_path / name
        (src / "d").mkdir(parents=True)
        for i in range(5):
            (src / "d" / f"f{i}").write_text(f"{name} {i}\n" * (i + 1))
        found[name] = {"type": "files", "path": src}
    return found


def normalised(value):
    """A report or state with what differs between two equal runs (times,
    durations) taken out."""
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items() if k != "duration_seconds"}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\dT", value):
        return "TIME"
    return value


@pytest.mark.parametrize("n", [2, 3])
def test_jobs_2_reports_and_stores_exactly_as_jobs_1(tmp_path, inkind_store, inkind_run, n):
    sources = trees(tmp_path, n)
    second = inkind_store.parent / "second"
    second.mkdir()
    init_store(second)
    configs = {}
    for jobs, store in ((1, inkind_store), (2, second)):
        configs[jobs] = tmp_path / f"jobs{jobs}.toml"
        # A full pass and scrubbing drawn at even odds: the draws must match too.
        configs[jobs].write_text(render_config(store, sources, full_probability=0.5, scrub_fraction=0.5))
    fulls = set()
    for seed in (1, 2, 3, 4):
        reports = {jobs: inkind_run(configs[jobs], seed=seed, jobs=jobs) for jobs in (1, 2)}
        got = {jobs: normalised(r.as_dict()) for jobs, r in reports.items()}
        assert got[2] == got[1]
        assert [r.name for r in reports[2].results] == list(sources)
        assert all(r.outcome == "ok" for r in reports[2].results)
        if seed == 1:
            assert [r.stats.bytes_written for r in reports[2].results] == [120, 105, 120][:n]
        fulls |= {r.full for r in reports[2].results}
        for name in sources:
            states = [
                json.loads((s / ".inkind" / "sources" / f"{name}.json").read_text())
                for s in (inkind_store, second)
            ]
            assert normalised(states[1]) == normalised(states[0])
            assert tree_diff(inkind_store / name, second / name) == []
        # Between runs each tree changes: a file added, one rewritten, one gone.
        for i, name in enumerate(sources):
            d = Path(sources[name]["path"]) / "d"
            (d / f"new{seed}").write_text("new\n" * seed)
            (d / "f1").write_text(f"seed {seed} {i}\n")
            (d / f"f{2 + seed % 3}").unlink(missing_ok=True)
    assert fulls == {True, False}  # both draws happened


def test_a_failing_source_does_not_stop_the_other(tmp_path, inkind_config, inkind_cli):
    sources = {"bad": {"type": "files", "path": tmp_path / "gone"}, **trees(tmp_path, 1)}
    cfg = inkind_config(sources)
    runs = {jobs: inkind_cli("-c", cfg, "backup", "--json", "--jobs", jobs) for jobs in (1, 2)}
    assert runs[1].returncode == runs[2].returncode == 2
    outcomes = {
        j: [(s["name"], s["outcome"], s["messages"]) for s in r.json()["sources"]] for j, r in runs.items()
    }
    assert outcomes[2] == outcomes[1]
    assert [o[:2] for o in outcomes[2]] == [("bad", "failed"), ("alpha", "ok")]
    assert f"inkind: ERROR: bad: {outcomes[2][0][2][0]}" in runs[2].stderr.splitlines()


def test_sources_run_at_once_and_every_line_names_its_source(tmp_path, inkind_store, gate_env):
    """Each gate waits for the other's file: with one at a time the first
    would wait for ever; at once both finish."""
    cfg = tmp_path / "c.toml"
    sources = {"left": gate(tmp_path, "right"), "right": gate(tmp_path, "left")}
    cfg.write_text("jobs = 2\n" + render_config(inkind_store, sources))
    log_json = tmp_path / "log.json"
    r = inkind(gate_env, "--log-json", log_json, "-c", cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    assert [(s["name"], s["outcome"]) for s in json.loads(r.stdout)["sources"]] == [
        ("left", "ok"),
        ("right", "ok"),
    ]
    lines = r.stderr.splitlines()
    assert "inkind: INFO: left: waiting for right" in lines
    assert "inkind: INFO: right: waiting for left" in lines
    assert [x for x in lines[1:] if not re.match(r"inkind: INFO: (left|right): ", x)] == [], r.stderr
    entries = [json.loads(x) for x in log_json.read_text().splitlines()]
    waits = {e["source"]: e["message"] for e in entries if e["message"].startswith("waiting")}
    assert waits == {"left": "waiting for right", "right": "waiting for left"}
    verify_clean(gate_env, cfg)


def test_the_option_wins_over_the_config(tmp_path, inkind_store, gate_env):
    cfg = tmp_path / "c.toml"
    sources = {"left": gate(tmp_path, "right", patience=0.5), "right": gate(tmp_path, "left")}
    cfg.write_text("jobs = 2\n" + render_config(inkind_store, sources))
    r = inkind(gate_env, "-c", cfg, "backup", "--jobs", "1", "--json")
    # One at a time: left gives up before right has started, right then finds left.
    assert r.returncode == 2
    got = [(s["name"], s["outcome"], s["messages"]) for s in json.loads(r.stdout)["sources"]]
    assert got == [("left", "failed", ["gave up waiting for right"]), ("right", "ok", [])]
    verify_clean(gate_env, cfg)


def test_jobs_must_be_a_positive_integer(tmp_path, inkind_config, inkind_cli):
    for text, needle in [("0", "got 0"), ("-1", "got -1"), ('"2"', "got '2'"), ("true", "got True")]:
        with pytest.raises(ConfigError) as e:
            parse(f'jobs = {text}\n[store]\npath = "/s"\n', Path("/etc/inkind/inkind.toml"))
        assert (
            str(e.value) == f"config: jobs: expected an integer of at least 1 (sources run at once), {needle}"
        )
    assert parse('jobs = 3\n[store]\npath = "/s"\n', Path("/c.toml")).jobs == 3
    assert parse('[store]\npath = "/s"\n', Path("/c.toml")).jobs == 1
    cfg = inkind_config(trees(tmp_path, 1))
    r = inkind_cli("-c", cfg, "backup", "--jobs", "0")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "inkind: error: --jobs: expected an integer of at least 1 (sources run at once), got 0"
    ]


def wait_for(*paths: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {paths}"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("signame", "group"),
    [("SIGTERM", False), ("SIGTERM", True), ("SIGINT", True)],
    ids=["sigterm-to-the-run", "sigterm-to-the-group-as-systemd", "ctrl-c-to-the-group"],
)
def test_a_signal_interrupts_every_running_source(tmp_path, inkind_store, gate_env, signame, group):
    """Sent to the run alone, the run passes it on; sent to the whole
    process group as well, each source still records its interruption once."""
    meet = tmp_path / "meet"
    cfg = tmp_path / "c.toml"
    sources = {"a": gate(tmp_path, "never"), "b": gate(tmp_path, "never"), **trees(tmp_path, 1)}
    cfg.write_text(render_config(inkind_store, sources))
    # verify-after: SIGTERM mid-run; verify below
    cmd = [sys.executable, "-m", "inkind", "-c", str(cfg), "backup", "--jobs", "2", "--json"]
    p = subprocess.Popen(
        cmd, env=gate_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    wait_for(meet / "a", meet / "b")
    pids = [int((meet / n).read_text()) for n in ("a", "b")]
    if group:
        os.killpg(p.pid, getattr(signal, signame))
    else:
        p.send_signal(getattr(signal, signame))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2, err
    assert "Traceback" not in err
    # The third source never started: a stopped run starts nothing more.
    assert [(s["name"], s["outcome"]) for s in json.loads(out)["sources"]] == [
        ("a", "interrupted"),
        ("b", "interrupted"),
    ]
    for name in ("a", "b"):
        assert (
            f"inkind: ERROR: {name}: interrupted by {signame}; every stored object is whole"
            in err.splitlines()
        )
        state = json.loads((inkind_store / ".inkind" / "sources" / f"{name}.json").read_text())
        assert state["last_backup"]["outcome"] == "interrupted" and state["resume"] == "mark"
        assert state["last_backup"]["messages"] == [f"interrupted by {signame}"]
        assert "running" not in state
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (inkind_store / "alpha").exists()
    verify_clean(gate_env, cfg)


def test_a_killed_child_is_one_failed_source_and_the_next_run_recovers(tmp_path, inkind_store, gate_env):
    meet = tmp_path / "meet"
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"a": gate(tmp_path, "go"), **trees(tmp_path, 1)}))
    # verify-after: a child is killed mid-run; verify below
    cmd = [sys.executable, "-m", "inkind", "-c", str(cfg), "backup", "--jobs", "2", "--json"]
    p = subprocess.Popen(cmd, env=gate_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(meet / "a")
    os.kill(int((meet / "a").read_text()), signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2, err
    got = [(s["name"], s["outcome"], s["messages"]) for s in json.loads(out)["sources"]]
    assert got == [
        ("a", "failed", ["its run was killed by SIGKILL; the next run recovers"]),
        ("alpha", "ok", []),
    ]
    assert "inkind: ERROR: a: its run was killed by SIGKILL; the next run recovers" in err.splitlines()
    assert "running" in json.loads((inkind_store / ".inkind" / "sources" / "a.json").read_text())
    (meet / "go").touch()
    r = inkind(gate_env, "-c", cfg, "backup", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert "inkind: INFO: a: previous run did not finish; removed 0 temp(s)" in r.stderr.splitlines()
    verify_clean(gate_env, cfg)


def test_history_is_taken_once_after_every_source(tmp_path, inkind_store, inkind_cli):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        render_config(inkind_store, trees(tmp_path, 3)).replace(
            'snapshots = "none"', 'snapshots = "hardlink"'
        )
    )
    r = inkind_cli("-c", cfg, "backup", "--jobs", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert r.json()["history"]["error"] is None
    listed = inkind_cli("-c", cfg, "snapshots", "list", "--json").json()["snapshots"]
    (snap,) = listed
    assert snap["sources"] == {"alpha": "ok", "beta": "ok", "gamma": "ok"}
    run = json.loads((Path(snap["path"]) / ".inkind" / "last-run.json").read_text())
    assert [s["name"] for s in run["sources"]] == ["alpha", "beta", "gamma"]
    assert [s["stats"]["objects_changed"] for s in run["sources"]] == [
        s["stats"]["objects_changed"] for s in r.json()["sources"]
    ]
    for name in ("alpha", "beta", "gamma"):
        assert (Path(snap["path"]) / name / "d" / "f0").read_text() == f"{name} 0\n"


def test_a_dry_run_at_once_counts_as_one_by_one_and_leaves_nothing(
    tmp_path, inkind_config, inkind_store, inkind_run, monkeypatch
):
    cfg = inkind_config(trees(tmp_path, 3))
    scratch = tmp_path / "scratch"  # this test's own: other tests' dry runs may be running
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = set(scratch.glob("inkind-dry-run-*"))
    reports = {jobs: normalised(inkind_run(cfg, dry_run=True, jobs=jobs).as_dict()) for jobs in (1, 2)}
    assert reports[2] == reports[1]
    assert [s["stats"]["bytes_written"] for s in reports[2]["sources"]] == [120, 105, 120]
    assert set(scratch.glob("inkind-dry-run-*")) == before
    assert sorted(os.listdir(inkind_store)) == [".inkind"]
