"""Free loopback ports, for the lab's servers and the tests' fixtures."""

from __future__ import annotations

import socket
from collections.abc import Iterable

__all__ = ["free_port", "shared_port"]


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel just gave out on ``host``, free for TCP and UDP alike."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(family, other) as s:
                s.bind((host, port))
        except OSError:
            continue
        return int(port)


def shared_port(hosts: Iterable[str]) -> int:
    """A TCP port free on every one of ``hosts`` (the lab's providers share one)."""
    hosts = list(hosts)
    for _ in range(50):
        port = free_port(hosts[0])
        try:
            for host in hosts[1:]:
                with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {', '.join(hosts)}")
