"""``import inkind`` imports nothing, and a run imports only what its
sources use: the start of every cron run is paid in imports (see
docs/architecture.md, "Why import inkind imports nothing")."""

import json
import subprocess
import sys
import textwrap

import pytest

import inkind
from inkind.testing import render_config

# Runs inkind as its __main__ module and writes the modules it imported.
RECORDING = textwrap.dedent(
    """
    import atexit, json, runpy, sys
    out, sys.argv = sys.argv[1], ["inkind", *sys.argv[2:]]
    atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
    runpy.run_module("inkind", run_name="__main__")
    """
)

# What a local backup has no use for: the other sources and engines, the
# remote side, LVM, and OpenSSL (only the remote block digests use it).
NOT_LOCAL = (
    "inkind.engines.tree.pull",
    "inkind.engines.tree.remote_mirror",
    "inkind.engines.image.remote",
    "inkind.lvm",
    "inkind.remote.agent",
    "inkind.remote.channel",
    "inkind_lvm.",
    "inkind_mysql.",
    "inkind_postgres.",
    "inkind_sqlite.",
    "inkind_snapshots.lvm",
    "inkind_snapshots.zfs",
    "hashlib",
    "sqlite3",
)
NOT_FOR = {
    "files": (
        *NOT_LOCAL,
        "inkind.engines.blockcopy",
        "inkind.engines.dumps",
        "inkind.engines.image",
        "inkind_image.",
    ),
    "image": (*NOT_LOCAL, "inkind.engines.tree", "inkind.engines.dumps", "inkind_files."),
}


def imported_by(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    out = tmp_path / "modules.json"
    r = subprocess.run(
        # verify-after: the test runs `verify` through the same recording and asserts it is clean
        [sys.executable, "-c", RECORDING, str(out), *args],
        capture_output=True,
        text=True,
    )
    return r, json.loads(out.read_text())


def unused(modules: list[str], kind: str = "files") -> list[str]:
    return [m for m in modules if m.startswith(NOT_FOR[kind])]


def test_import_inkind_imports_no_module_of_it():
    code = "import sys, inkind; print([m for m in sys.modules if m.startswith('inkind.')])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_the_lvm_commands_load_no_remote_machinery():
    """A local LVM run goes through inkind.lvm, which only catches the remote side's errors."""
    code = "import sys, inkind.lvm; print(sorted(m for m in sys.modules if m.startswith('inkind.remote.')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "['inkind.remote.errors', 'inkind.remote.wire']"


def test_every_public_name_resolves_and_stays():
    for name in inkind.__all__:
        value = getattr(inkind, name)
        assert vars(inkind)[name] is value  # kept: the next use is a plain attribute
    assert set(inkind.__all__) <= set(dir(inkind))
    assert inkind.lvm.__name__ == "inkind.lvm"  # a module among the names


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="module 'inkind' has no attribute 'TreeMirorr'"):
        inkind.TreeMirorr  # noqa: B018


def test_the_unused_list_would_see_an_engine():
    assert unused(
        ["inkind.engines.blockcopy.engine", "inkind_postgres.source", "inkind.engines.tree.walker"]
    ) == [
        "inkind.engines.blockcopy.engine",
        "inkind_postgres.source",
    ]


@pytest.mark.parametrize("kind", sorted(NOT_FOR))
def test_a_backup_imports_only_what_its_source_uses(tmp_path, inkind_store, kind):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("x")
    (tmp_path / "disk.img").write_bytes(b"\1" * 65536)
    options = {"path": src} if kind == "files" else {"path": tmp_path / "disk.img", "name": "disk"}
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"t": {"type": kind, **options}}))
    for command in ("backup", "verify"):
        r, modules = imported_by(tmp_path, "-c", str(cfg), command)
        assert r.returncode == 0, r.stderr
        assert unused(modules, kind) == [], command
        assert f"inkind_{kind}.source" in modules
    stored = inkind_store / "t" / ("d/f" if kind == "files" else "disk.img")
    assert stored.stat().st_size == (1 if kind == "files" else 65536)
