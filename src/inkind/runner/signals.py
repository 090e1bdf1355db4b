"""The run's seed, and SIGTERM/SIGINT as an exception that stops it with
every stored object whole."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from inkind.errors import ConfigError


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived: stop at once, every object whole."""


def resolve_seed(seed: int | None) -> int:
    """``--seed``, else ``INKIND_SEED``, else a fresh random seed (logged)."""
    if seed is not None:
        return seed
    env = os.environ.get("INKIND_SEED")
    if env:
        try:
            return int(env)
        except ValueError:
            raise ConfigError(f"INKIND_SEED: expected an integer, got {env!r}") from None
    return random.SystemRandom().getrandbits(32)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` for the run."""

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
