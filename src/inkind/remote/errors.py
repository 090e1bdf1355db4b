"""The errors of a remote side, each one line naming the host: apart from
the connection, so that code which only catches them (lvm's commands run
here or on a host) imports none of the remote machinery."""

from __future__ import annotations

from inkind.errors import SourceError
from inkind.remote.wire import to_text


class RemoteError(SourceError):
    """The remote side of a source failed; the message names the host."""


class ProtocolError(RemoteError):
    """The remote side went away or broke the protocol; the connection is done."""


class RemoteOSError(RemoteError):
    """An op failed on the host (a missing file, a denied read); ``errno``
    says which, so a caller can make a vanished file a warning."""

    def __init__(self, host: str, path: bytes, message: str, errno: int = 0):
        super().__init__(f"host {host}: {to_text(path)}: {message}")
        self.errno = errno
