"""The remote side run locally: ``python -c BOOT`` over pipes, no ssh, and
fake remote sides that break the protocol on purpose."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest
from remote_helpers import FAKE, HOST

from inkind.remote.bootstrap import BOOT
from inkind.remote.channel import Channel
from inkind.stats import Stats


@pytest.fixture
def channel() -> Iterator[Channel]:
    """An open Channel to the real remote side, run locally over pipes."""
    with Channel([sys.executable, "-c", BOOT], HOST, Stats()) as ch:
        yield ch


@pytest.fixture
def fake() -> Iterator[Callable[[str], Channel]]:
    """``fake(body)``: an open Channel to a remote side that says hello,
    reads one request and answers with ``body``."""
    opened: list[Channel] = []

    def start(body: str) -> Channel:
        code = FAKE.replace("{body}", textwrap.dedent(body))
        ch = Channel([sys.executable, "-c", code], HOST, Stats()).open()
        opened.append(ch)
        return ch

    yield start
    for ch in opened:
        ch.close()
