"""Reading a source on another machine: the SSH connection to it, the
remote side inkind sends over that connection (standard library only), its
wire protocol, and the server's Channel that speaks it."""
