"""ssh's ProxyCommand for the benchmarks: pipe stdin/stdout to HOST:PORT and
count the bytes both ways (the same relay for every tool). Usage:
``-o ProxyCommand='python3 bench/relay.py %h %p DIR'``; DIR/PID.open exists
while the connection is up, DIR/PID holds its byte count after."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from pathlib import Path

counts = [0, 0]


def pump(src: int, send, index: int, done) -> None:
    while data := os.read(src, 1 << 16):
        counts[index] += len(data)
        send(data)
    done()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def finish(out: Path, *_: object) -> None:
    (out.parent / f"{out.name}.tmp").write_text(f"{counts[0] + counts[1]}\n")
    os.replace(out.parent / f"{out.name}.tmp", out)
    out.with_suffix(".open").unlink(missing_ok=True)
    os._exit(0)


def main() -> None:
    host, port, where = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    out = where / str(os.getpid())
    out.with_suffix(".open").touch()
    signal.signal(signal.SIGHUP, lambda *a: finish(out))
    signal.signal(signal.SIGTERM, lambda *a: finish(out))
    sock = socket.create_connection((host, port))
    up = threading.Thread(
        target=pump, args=(0, sock.sendall, 0, lambda: sock.shutdown(socket.SHUT_WR)), daemon=True
    )
    up.start()
    pump(sock.fileno(), lambda d: write_all(1, d), 1, lambda: None)
    finish(out)


if __name__ == "__main__":
    main()
