"""Making a store on a filesystem a test mounted itself, as a sysadmin does."""

from __future__ import annotations

from pathlib import Path


def make_store(inkind_cli, cfg: Path) -> None:
    """``inkind init``, where this inkind has it (before it, the first
    backup made the store)."""
    r = inkind_cli("-c", cfg, "init")
    assert r.returncode == 0 or "No such command 'init'" in r.stderr, r.stderr
