"""Faults a test puts into a remote run on purpose, in-process: a reply
stream that breaks part way, as a cut network breaks it (the connection
is then done, as after a real cut)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inkind.remote.channel import Channel


class CutShort:
    """A channel's reply stream that breaks after ``n`` items."""

    def __init__(self, channel: Channel, stream, n: int):
        self.channel, self.stream, self.n = channel, stream, n

    def __getattr__(self, name: str):
        return getattr(self.stream, name)

    def __iter__(self) -> Iterator:
        for i, item in enumerate(self.stream):
            if i == self.n:
                raise self.channel.fail("the network went away")
            yield item


def cut_after(monkeypatch: pytest.MonkeyPatch, op: str, n: int) -> None:
    """Make every stream ``Channel.<op>`` returns (``blocks``, ``hashes``)
    break after ``n`` items, with ``the network went away``; undone with
    the monkeypatch."""
    original = getattr(Channel, op)
    monkeypatch.setattr(Channel, op, lambda self, *a, **k: CutShort(self, original(self, *a, **k), n))
