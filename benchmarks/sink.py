"""Postfix's ``smtp-sink`` as the receiving end: it accepts everything and counts.

Run as ``smtp-sink -u nobody -c [-d DUMPDIR/%H%M%S.] 127.0.0.1:PORT 1024`` (it refuses
to run as root without ``-u``). Messages are counted from its ``-c`` counter
(``sess=S quit=Q mesg=M`` written and flushed at every end of DATA), never limited with
``-M N``, which exits before acknowledging message N.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
import time
from pathlib import Path

from benchmarks.common import free_port
from benchmarks.procs import PhaseTimeout, Processes

__all__ = ["SMTP_SINK", "Sink"]

SMTP_SINK = "/usr/sbin/smtp-sink"
HOST = "127.0.0.1"
_MESG = re.compile(rb"mesg=(\d+)")


class Sink:
    def __init__(self, procs: Processes, workdir: Path, *, dump: bool, name: str = "sink") -> None:
        self.procs = procs
        self.dir = workdir / name
        self.dump = dump
        self.port = 0
        self.dump_dir = self.dir / "dump"
        self.counter = self.dir / "counter.out"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.dir.mkdir(parents=True)
        self.port = free_port()
        argv = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        if self.dump:
            self.dump_dir.mkdir()
            if os.geteuid() == 0:
                user = pwd.getpwnam("nobody")
                os.chown(self.dump_dir, user.pw_uid, user.pw_gid)
            argv += ["-d", f"{self.dump_dir}/%H%M%S."]
        argv += [f"{HOST}:{self.port}", "1024"]
        with self.counter.open("wb") as out, (self.dir / "stderr.log").open("wb") as err:
            proc = self.procs.start(argv, stdout=out, stderr=err)
        self._proc = proc
        deadline = time.monotonic() + timeout
        while not _greets(self.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                err_text = (self.dir / "stderr.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"smtp-sink did not start on port {self.port}: {err_text}")
            time.sleep(0.02)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def count(self) -> int:
        """Messages acknowledged so far (the last ``mesg=`` of the counter output)."""
        with self.counter.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 128))
            found = _MESG.findall(fh.read())
        return int(found[-1]) if found else 0

    def wait_for(self, n: int, timeout: float, *, poll: float = 0.005) -> float:
        """Block until the sink reports ``n`` messages; the ``perf_counter()`` when seen."""
        deadline = time.monotonic() + timeout
        while True:
            if self.count() >= n:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise PhaseTimeout(
                    f"smtp-sink reported {self.count()}/{n} messages after {timeout:.0f} s"
                )
            time.sleep(poll)

    def dump_files(self) -> list[Path]:
        return sorted(p for p in self.dump_dir.iterdir() if p.is_file())

    def stop(self) -> None:
        if self._proc is not None:
            self.procs.stop(self._proc)
        self._proc = None


def _greets(port: int) -> bool:
    """smtp-sink's own banner answers (a bare connect could reach another program)."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as probe:
            return probe.recv(64).startswith(b"220 ")
    except OSError:
        return False
