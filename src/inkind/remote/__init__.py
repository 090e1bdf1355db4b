"""Reading a source on another machine: the SSH connection to it, and the
remote side inkind sends over that connection (standard library only)."""
