"""Free loopback ports for the servers the benchmarks start, one place for all of them.

A port is found by binding port 0 and closing the socket, so the kernel may offer the same port again before the
first server has bound it. Two servers then share it: grpc (and uvicorn's workers) bind with SO_REUSEPORT, so both
start and split the connections between them, and a benchmark times the wrong server. So a port is never handed out
twice in one process."""
from __future__ import annotations

import socket

_handed_out: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now and not handed out before by this process."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port that was not handed out already")
