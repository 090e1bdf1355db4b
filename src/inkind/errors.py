"""Exceptions that map onto inkind's exit codes.

A :class:`SourceWarning` costs exit status 1 (the run finished, something was
skipped and its previous copy kept); every other :class:`InkindError` costs 2.
"""


class InkindError(Exception):
    """Base of all errors inkind reports as one line and exit status 2."""

    exit_status = 2


class ConfigError(InkindError):
    """The configuration or the command line is wrong; nothing was written."""


class NotStored(ConfigError):
    """``restore``: the path (or database, volume) asked for is not in the
    store or snapshot restored from; the caller says which one."""

    def __init__(self, what: str):
        super().__init__(f"restore: {what} is not stored")
        self.what = what


class StoreError(InkindError):
    """The store is missing, not a directory, read-only or unusable."""


class SourceError(InkindError):
    """A source failed as a whole; its previous stored copy is intact."""


class CorruptionError(InkindError):
    """A stored object no longer matches its own recorded checksum."""

    def __init__(self, obj: str, detail: str = "content does not match user.inkind.xxh3"):
        super().__init__(f"corruption: {obj}: {detail}")
        self.obj = obj
        self.detail = detail


class SourceWarning(Exception):
    """One object was skipped (vanished, unreadable, changed while read).

    Raised by a source for one object; the runner counts it as a warning and
    the run goes on.
    """


class SourceReadError(SourceWarning):
    """One object could not be read because the source failed (EIO).

    Skipped like a warning, its previous copy kept, and the run goes on; but
    it counts as an error (exit status 2): a failing disk needs the operator
    now, not at the next look at the logs.
    """
