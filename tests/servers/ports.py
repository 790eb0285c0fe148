"""Free loopback ports and the skip-or-fail rule for missing server programs."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

__all__ = ["free_port", "in_ci", "require_program"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


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


def require_program(path_or_name: str, package: str) -> str:
    """The program's path; skip the test without it, or fail when running under CI."""
    if os.path.isabs(path_or_name):
        found = path_or_name if os.access(path_or_name, os.X_OK) else None
    else:
        found = shutil.which(path_or_name)
    if found:
        return found
    message = (
        f"{path_or_name} not found (Debian package {package}; `make test` installs it as root)"
    )
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")
