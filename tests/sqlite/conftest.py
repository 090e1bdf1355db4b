"""Fixtures for the sqlite source: a source directory and a configured store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Setup:
    src: Path
    store: Path
    config: Path

    @property
    def data(self) -> Path:
        return self.store / "app"


@pytest.fixture
def setup(tmp_path, inkind_config, inkind_store):
    """``setup(path_in_src, **keys)``: a sqlite source ``app`` whose ``path``
    is ``path_in_src`` (a file or glob) below a fresh source directory."""
    src = tmp_path / "src"
    src.mkdir()

    def make(path: str = "app.db", **keys) -> Setup:
        cfg = inkind_config({"app": {"type": "sqlite", "path": src / path, **keys}})
        return Setup(src, inkind_store, cfg)

    return make
