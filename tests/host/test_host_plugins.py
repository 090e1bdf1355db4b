"""Plugins come through the "inkind" entry-point group, built-in or not,
and a broken one costs one line naming it, never the other sources."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from inkind.testing import render_config

GOOD = """
import inkind
from dataclasses import dataclass

@dataclass
class Opts:
    greeting: str = "hi"

class Echo(inkind.Source):
    type_name = "echo"
    Options = Opts
    def backup(self, run):
        inkind.update_file(run.data_dir / "greeting.txt", self.options.greeting.encode(), stats=run.stats)
    def scrub(self, run):
        pass
    def restore_commands(self, data_dir, dest, path, state):
        return [["cp", str(data_dir / "greeting.txt"), dest]]

@inkind.hookimpl
def inkind_source_types():
    return [Echo]

@inkind.hookimpl
def inkind_run_finished(report, store):
    import os, json
    with open(os.environ["ECHO_REPORT"], "w") as f:
        json.dump({**report.as_dict(), "state": store.load_state("e").data}, f)
"""


def make_dist(root, dist, module, code):
    """A real installed distribution: a dist-info with entry_points.txt."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[inkind]\n{module} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(code))


@pytest.fixture
def third_party(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "echo_plugin", "inkind_echo", GOOD)
    return {**os.environ, "PYTHONPATH": str(site), "ECHO_REPORT": str(tmp_path / "report.json")}


def cli(env, *args):
    return subprocess.run(
        # verify-after: the third-party plugin is on this process's PYTHONPATH only; its tests verify
        [sys.executable, "-m", "inkind", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
    )


def test_third_party_plugin_is_listed_and_runs(tmp_path, third_party, inkind_store):
    env = third_party
    r = cli(env, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert rows["inkind_echo"]["origin"] == "echo_plugin 1.0"
    assert rows["inkind_echo"]["source_types"] == ["echo"]
    assert rows["files"]["origin"] == "built-in"
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"e": {"type": "echo", "greeting": "hello"}}))
    r = cli(env, "-c", cfg, "backup")
    assert r.returncode == 0, r.stderr
    assert (inkind_store / "e" / "greeting.txt").read_text() == "hello"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sources"][0]["stats"]["bytes_written"] == 5
    assert report["state"]["last_backup"]["stats"]["bytes_written"] == 5  # as the store's state has it


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("raise ImportError('no libfoo')\n", "plugin inkind_broken: failed to load: ImportError: no libfoo"),
        (
            "import inkind\n@inkind.hookimpl\ndef inkind_source_types():\n    raise RuntimeError('oops')\n",
            "plugin inkind_broken: inkind_source_types failed: RuntimeError: oops",
        ),
        (
            "import inkind\n@inkind.hookimpl\ndef inkind_source_types():\n    return {'broken': 'inkind_broken_src:Broken'}\n",
            "plugin inkind_broken: source type 'broken': cannot use inkind_broken_src:Broken:"
            " ModuleNotFoundError: No module named 'inkind_broken_src'",
        ),
    ],
)
def test_a_broken_plugin_is_one_line_and_others_still_run(tmp_path, inkind_store, code, needle):
    site = tmp_path / "site"
    make_dist(site, "broken", "inkind_broken", code)
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = cli(env, "plugins")
    assert r.returncode == 2 and needle in r.stderr
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        render_config(inkind_store, {"a": {"type": "broken"}, "b": {"type": "files", "path": src}})
    )
    r = cli(env, "-c", cfg, "backup", "--json")
    assert r.returncode == 2
    outcomes = {s["name"]: s["outcome"] for s in json.loads(r.stdout)["sources"]}
    assert outcomes == {"a": "failed", "b": "ok"}
    assert (inkind_store / "b" / "f").read_text() == "x"
    assert [line for line in r.stderr.splitlines() if needle in line] == [f"inkind: ERROR: {needle}"]


def test_a_failing_run_finished_hook_does_not_change_the_exit(tmp_path, inkind_store):
    site = tmp_path / "site"
    make_dist(
        site,
        "noisy",
        "inkind_noisy",
        "import inkind\n@inkind.hookimpl\ndef inkind_run_finished(report, config):\n    raise ValueError('metrics down')\n",
    )
    src = tmp_path / "src"
    src.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"b": {"type": "files", "path": src}}))
    r = cli({**os.environ, "PYTHONPATH": str(site)}, "-c", cfg, "backup")
    assert r.returncode == 0
    assert "plugin inkind_noisy: inkind_run_finished failed: ValueError: metrics down" in r.stderr


def test_two_plugins_with_one_type_name_both_named(tmp_path):
    site = tmp_path / "site"
    code = "import inkind\nfrom inkind_files.source import FilesSource\n@inkind.hookimpl\ndef inkind_source_types():\n    return [FilesSource]\n"
    make_dist(site, "copycat", "inkind_copycat", code)
    r = cli({**os.environ, "PYTHONPATH": str(site)}, "plugins")
    assert r.returncode == 2
    assert (
        "plugin inkind_copycat: source type 'files' is already provided by plugin files (inkind_files.source:FilesSource)"
        in r.stderr
    )


def test_an_installed_plugin_with_a_misspelt_hook_is_not_loaded(tmp_path):
    site = tmp_path / "site"
    code = "import inkind\n@inkind.hookimpl\ndef inkind_source_type():\n    return []\n"
    make_dist(site, "typo", "inkind_typo", code)
    r = cli({**os.environ, "PYTHONPATH": str(site)}, "plugins", "--json")
    assert r.returncode == 2
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert rows["inkind_typo"]["error"].startswith("not loaded: unknown hook inkind_source_type (")
    assert rows["files"]["error"] is None and rows["metrics"]["config_tables"] == ["plugins.metrics"]
    lines = [line for line in r.stderr.splitlines() if "inkind_typo" in line]
    assert len(lines) == 1 and lines[0].startswith(
        "inkind: ERROR: plugin inkind_typo: not loaded: unknown hook"
    )
