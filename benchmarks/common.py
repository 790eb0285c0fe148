"""What every benchmark shares: its options, temp dirs, free ports, prerequisites."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PEER_PORTS",
    "ROOT",
    "SHARED_BENCH",
    "VENV_BIN",
    "BenchOptions",
    "Skipped",
    "free_port",
    "log",
    "require_programs",
    "temp_dir",
]

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SHARED_BENCH = ROOT.parent / "shared" / "bench"
#: ports peer_postfix.sh listens on: never hand them out to ours
PEER_PORTS = frozenset({2525, 2526, 8891})


class Skipped(Exception):
    """A prerequisite is missing: the benchmark is reported as skipped, with the reason."""


@dataclass(frozen=True)
class BenchOptions:
    rounds: int = 3
    quick: bool = False
    keep: bool = False
    #: messages to send in the memory benchmark before stopping (0 = all of them)
    memory_messages: int = 200_000
    out_dir: Path = ROOT / "bench-out"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def temp_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A dir under /tmp, open to the unprivileged user smtp-sink runs as; removed at
    the end unless ``keep`` (KEEP=1)."""
    path = Path(tempfile.mkdtemp(prefix=f"sokures-bench-{prefix}-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A loopback TCP port the kernel just gave out (never one the peer harness uses)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in PEER_PORTS:
            return port


def require_programs(*programs: str) -> None:
    """Raise ``Skipped`` naming what is missing (``make bench`` installs it as root)."""
    missing = [p for p in programs if not (shutil.which(p) or os.access(p, os.X_OK))]
    if missing:
        raise Skipped(
            f"missing {', '.join(missing)} (Debian packages; `make bench` installs them as root "
            "via scripts/sysdeps.sh bench)"
        )
