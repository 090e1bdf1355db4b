"""The units ``inkind systemd`` prints: valid for systemd itself
(``systemd-analyze verify``), written safely with ``--output``, and the
examples in examples/systemd are exactly what it prints for the example
config there.

``INKIND_UPDATE_EXAMPLES=1`` makes the first test write the examples anew.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import inkind
from inkind import config as config_mod
from inkind.cli import systemd
from inkind.plugins import load_plugins
from inkind.testing import render_config

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples" / "systemd"
EXAMPLE_CONFIG = EXAMPLES / "inkind.toml"
INSTALLED = {"inkind": "/opt/inkind/.venv/bin/inkind", "config": "/etc/inkind/inkind.toml"}
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (scripts/setup.sh --test)"
)


def printed(inkind_cli, cfg: Path, *args: str) -> tuple[dict[str, str], str, int]:
    """The units ``inkind -c CFG systemd ARGS`` prints, by file name."""
    r = inkind_cli("-c", cfg, "systemd", *args)
    assert r.returncode in (0, 1), r.stderr
    parts = re.split(r"\n?^==> (\S+) <==\n", r.stdout, flags=re.M)  # a blank line between units
    assert parts[0] == "", r.stdout
    return dict(zip(parts[1::2], parts[2::2], strict=True)), r.stderr, r.returncode


def field(unit: str, key: str) -> str:
    (value,) = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]
    return value


def as_installed(text: str) -> str:
    """A unit made here as it reads with inkind in /opt/inkind and the config
    in /etc/inkind: the running inkind, this checkout and the config's path
    replaced."""
    running = field(text, "ExecStart").split(" -q -c ")[0] if "ExecStart=" in text else None
    if running:
        text = text.replace(f"ExecStart={running} ", f"ExecStart={INSTALLED['inkind']} ")
    text = text.replace(str(EXAMPLE_CONFIG), INSTALLED["config"])
    return text.replace(ROOT.as_uri(), "file:///opt/inkind")


def test_examples_are_what_the_command_prints(inkind_cli):
    made = {}
    for args in ((), ("--source", "home")):
        units, stderr, code = printed(inkind_cli, EXAMPLE_CONFIG, *args)
        made |= {name: as_installed(text) for name, text in units.items()}
        paths = field(
            units["inkind.service" if not args else "inkind@home.service"], "ReadWritePaths"
        ).split()
        missing = [p for p in paths if not os.path.exists(p)]
        assert code == (1 if missing else 0)
        assert [f"ReadWritePaths: {p} does not exist yet" in stderr for p in missing] == [True] * len(missing)
    if os.environ.get("INKIND_UPDATE_EXAMPLES") == "1":
        for old in EXAMPLES.glob("inkind*.*"):
            if old.suffix in (".service", ".timer"):
                old.unlink()
        for name, text in made.items():
            (EXAMPLES / name).write_text(text)
    shipped = {p.name: p.read_text() for p in EXAMPLES.iterdir() if p.suffix in (".service", ".timer")}
    assert sorted(made) == ["inkind.service", "inkind.timer", "inkind@home.service", "inkind@home.timer"]
    assert shipped == made, (
        "examples/systemd differs from `inkind systemd`: INKIND_UPDATE_EXAMPLES=1 remakes it"
    )


def test_the_example_unit_writes_the_store_the_snapshot_folder_and_the_metrics_directory():
    service = (EXAMPLES / "inkind.service").read_text()
    assert field(service, "ReadWritePaths").split() == [
        "/srv/backup",
        "/srv/backup.snapshots",
        "/var/lib/node_exporter/textfile_collector",
    ]
    assert field(service, "ExecStart") == "/opt/inkind/.venv/bin/inkind -q -c /etc/inkind/inkind.toml backup"
    assert field(service, "RequiresMountsFor") == "/srv/backup /srv/backup.snapshots"
    for line in (
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "NoNewPrivileges=true",
        "SuccessExitStatus=1",
    ):
        assert line in service.splitlines()
    source = (EXAMPLES / "inkind@home.service").read_text()
    assert field(source, "ExecStart").endswith(" backup home")


def test_timer_is_daily_randomized_and_persistent():
    timer = (EXAMPLES / "inkind.timer").read_text()
    for line in ("OnCalendar=*-*-* 02:00:00", "RandomizedDelaySec=2h", "Persistent=true"):
        assert line in timer.splitlines()


def analyze(directory: Path, *names: str) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` as it works without systemd as PID 1: the
    units by path, no man page look-ups."""
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(directory / n) for n in names)],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose every path exists, with a source name that needs escaping."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store.snapshots").mkdir()
    (tmp_path / "metrics").mkdir()
    cfg = tmp_path / "inkind.toml"
    text = render_config(tmp_path / "store", {"db-main": {"type": "files", "path": tmp_path}})
    text = text.replace('snapshots = "none"', 'snapshots = "btrfs"')
    cfg.write_text(text + f'\n[metrics]\ntextfile = "{tmp_path / "metrics" / "inkind.prom"}"\n')
    return cfg


@needs_systemd_analyze
def test_generated_units_verify_cleanly(tmp_path, config, inkind_cli):
    units = tmp_path / "units"
    units.mkdir()
    for args in ((), ("--source", "db-main")):
        r = inkind_cli("-c", config, "systemd", "--output", units, *args)
        assert r.returncode == 0, r.stderr
    escaped = subprocess.run(["systemd-escape", "db-main"], capture_output=True, text=True, check=True)
    names = sorted(p.name for p in units.iterdir())
    assert names == sorted(
        [
            "inkind.service",
            "inkind.timer",
            *(f"inkind@{escaped.stdout.strip()}.{k}" for k in ("service", "timer")),
        ]
    )
    done = analyze(units, *names)
    assert (done.returncode, done.stderr.strip()) == (0, ""), done.stderr
    service = (units / "inkind.service").read_text()
    assert field(service, "ReadWritePaths").split() == [
        str(tmp_path / p) for p in ("metrics", "store", "store.snapshots")
    ]
    assert field(service, "ExecStart").split()[0] in (
        shutil.which("inkind"),
        str(Path(sys.executable).with_name("inkind")),
    )
    # The same check fails on a unit that systemd would not run.
    (units / "inkind.service").write_text(service.replace("Type=oneshot", "Type=oneshot\nReadWritePath=/x"))
    bad = analyze(units, "inkind.service")
    assert "Unknown key" in bad.stderr and "ReadWritePath" in bad.stderr, bad.stderr
    (units / "inkind.service").write_text(
        service.replace(field(service, "ExecStart").split()[0], "/nonexistent/inkind")
    )
    bad = analyze(units, "inkind.service")
    assert bad.returncode != 0 and "/nonexistent/inkind" in bad.stderr, bad.stderr


def test_output_writes_and_never_replaces_an_edited_unit_without_force(tmp_path, config, inkind_cli):
    units = tmp_path / "units"
    units.mkdir()
    r = inkind_cli("-c", config, "systemd", "--output", units)
    assert r.returncode == 0, r.stderr
    assert f"{units / 'inkind.service'}: written" in r.stdout
    made = {p.name: p.read_text() for p in units.iterdir()}
    assert sorted(made) == ["inkind.service", "inkind.timer"]
    assert oct((units / "inkind.service").stat().st_mode & 0o777) == "0o644"
    r = inkind_cli("-c", config, "systemd", "--output", units)
    assert r.returncode == 0 and f"{units / 'inkind.timer'}: unchanged" in r.stdout
    (units / "inkind.service").write_text(made["inkind.service"] + "# edited by hand\n")
    (units / "inkind.timer").unlink()
    r = inkind_cli("-c", config, "systemd", "--output", units)
    assert r.returncode == 2
    assert f"{units / 'inkind.service'} exists and differs" in r.stderr and "--force" in r.stderr
    assert sorted(p.name for p in units.iterdir()) == ["inkind.service"]  # nothing written
    assert (units / "inkind.service").read_text().endswith("# edited by hand\n")
    r = inkind_cli("-c", config, "systemd", "--output", units, "--force")
    assert r.returncode == 0 and f"{units / 'inkind.service'}: replaced" in r.stdout
    assert {p.name: p.read_text() for p in units.iterdir()} == made


def test_hardlink_snapshots_get_one_tree_for_store_and_folder(tmp_path, config, inkind_cli):
    config.write_text(config.read_text().replace('snapshots = "btrfs"', 'snapshots = "hardlink"'))
    units, _, code = printed(inkind_cli, config)
    assert code == 0
    assert field(units["inkind.service"], "ReadWritePaths") == str(tmp_path)  # link() cannot cross mounts


def test_a_plugin_names_what_it_writes_through_inkind_write_paths(tmp_path, config):
    spool = tmp_path / "spool with space%"
    plugin = types.ModuleType("inkind_notifier")
    plugin.inkind_write_paths = inkind.hookimpl(lambda config: [spool])
    made = systemd.units(config_mod.load(str(config)), load_plugins([plugin]), None)
    paths = field(made[0].text, "ReadWritePaths")
    assert f' "{str(spool).replace("%", "%%")}" ' in paths, paths  # quoted, the specifier escaped


def test_an_unknown_source_is_named(config, inkind_cli):
    r = inkind_cli("-c", config, "systemd", "--source", "nope")
    assert r.returncode == 2 and "no source named 'nope'" in r.stderr and "db-main" in r.stderr
