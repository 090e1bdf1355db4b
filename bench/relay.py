"""ssh's ProxyCommand for the benchmarks: pipe stdin/stdout to HOST:PORT and
count the bytes both ways (the same relay for every tool). Usage:
``-o ProxyCommand='python3 bench/relay.py %h %p DIR [DELAY_MS]'``;
DIR/PID.open exists while the connection is up, DIR/PID holds its byte
count after.

With DELAY_MS each chunk is held that long in each direction before it is
passed on (a delay line: chunks stay in flight meanwhile, so throughput is
not capped): a round trip through the relay costs twice DELAY_MS, as on a
network with that latency, where the kernel has no netem. Unlike netem it
leaves TCP itself alone (the loopback legs ack at once), so it models the
protocol's round trips, not a long fat pipe's congestion window."""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path

counts = [0, 0]


def pump(src: int, send, index: int, done, delay: float) -> None:
    line = DelayLine(send, delay) if delay else None
    while data := os.read(src, 1 << 16):
        counts[index] += len(data)
        (line.put if line else send)(data)
    if line:
        line.close()
    done()


class DelayLine:
    """Passes each chunk on ``delay`` seconds after it came, in order; the
    chunks after it stay in flight meanwhile."""

    def __init__(self, send, delay: float):
        self.send, self.delay = send, delay
        self.line: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self.forward, daemon=True)
        self.thread.start()

    def put(self, data: bytes) -> None:
        self.line.put((time.monotonic(), data))

    def close(self) -> None:
        """Pass on what is in flight, then return."""
        self.put(b"")
        self.thread.join()

    def forward(self) -> None:
        while True:
            at, data = self.line.get()
            time.sleep(max(0.0, at + self.delay - time.monotonic()))
            if not data:
                return
            self.send(data)


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
    delay = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0
    out = where / str(os.getpid())
    out.with_suffix(".open").touch()
    signal.signal(signal.SIGHUP, lambda *a: finish(out))
    signal.signal(signal.SIGTERM, lambda *a: finish(out))
    sock = socket.create_connection((host, port))
    up = threading.Thread(
        target=pump, args=(0, sock.sendall, 0, lambda: sock.shutdown(socket.SHUT_WR), delay), daemon=True
    )
    up.start()
    pump(sock.fileno(), lambda d: write_all(1, d), 1, lambda: None, delay)
    finish(out)


if __name__ == "__main__":
    main()
