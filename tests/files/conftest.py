"""Fixtures for the files source: awkward source trees and a configured store."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from inkind.engines.tree import ahead
from inkind.engines.tree.handoff import CopyWorker
from inkind.engines.tree.walker import Walker


@dataclass
class Setup:
    src: Path
    store: Path
    config: Path

    @property
    def data(self) -> Path:
        return self.store / "home"


@pytest.fixture
def setup(tmp_path, inkind_config, inkind_store) -> Setup:
    src = tmp_path / "src"
    src.mkdir()
    cfg = inkind_config({"home": {"type": "files", "path": src}})
    return Setup(src, inkind_store, cfg)


@pytest.fixture
def open_tmp():
    """A directory an unprivileged user can reach (pytest's tmp is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="inkind-nobody-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@pytest.fixture
def events(monkeypatch):
    """In order: each window the walk mirrors, each ask of the worker, and
    each batch handed to it, by the first name in it."""
    monkeypatch.setattr(ahead, "FRESH_FOR", 60.0)  # (the order, however slow the machine)
    got = []
    real_ask, real_send, real_mirror = CopyWorker.ask, CopyWorker.send, Walker._mirror_window

    def ask(self, src, dst, prefix, names):
        got.append(("ask", names[0]))
        return real_ask(self, src, dst, prefix, names)

    def send(self, src, dst, entries):
        got.append(("store", entries[0].name))
        return real_send(self, src, dst, entries)

    def mirror_window(self, looks, bounds, present):
        got.append(("mirror", looks[0].name))
        return real_mirror(self, looks, bounds, present)

    monkeypatch.setattr(CopyWorker, "ask", ask)
    monkeypatch.setattr(CopyWorker, "send", send)
    monkeypatch.setattr(Walker, "_mirror_window", mirror_window)
    return got
