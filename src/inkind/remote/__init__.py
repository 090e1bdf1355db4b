"""Reading a machine over a pipe (ssh): the remote side sent to the host,
its wire protocol, and the server's Channel that speaks it."""
