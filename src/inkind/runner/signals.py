"""The run's seed and each source's generator drawn from it, and
SIGTERM/SIGINT as an exception that stops the run with every stored object
whole."""

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


def source_rng(seed: int, name: str) -> random.Random:
    """The source's own generator: the run's seed and the source's name,
    nothing else. Its draws (the full pass, the objects scrubbed) do not
    depend on which other sources run, in which order or at once
    (``--jobs``). A string seed goes through SHA-512, the same in every
    process whatever ``PYTHONHASHSEED`` is."""
    return random.Random(f"{seed}:{name}")


SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` for the run."""

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def interrupts_once() -> None:
    """In a source's forked child (``--jobs``): the first SIGTERM or SIGINT
    raises :class:`Interrupted`, a later one is let go (a Ctrl-C reaches
    the child from the terminal and again from the parent, and the second
    must not cut the recording of the first short)."""
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if not seen:
            seen.append(signum)
            raise Interrupted(signal.Signals(signum).name)

    for s in SIGNALS:
        signal.signal(s, handler)
