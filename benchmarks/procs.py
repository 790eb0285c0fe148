"""Every process a benchmark starts, stopped by PID (with its descendants) at the end.

``Processes`` is a context manager: leaving it, also on an error or ^C, stops whatever
it started that is still running: SIGTERM first, SIGKILL after a grace period, then
the same for any descendant left behind (``sokures send --workers N`` has N worker
processes), each addressed by its own PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["PhaseTimeout", "Processes", "alive", "descendants", "wait_rusage"]

GRACE = 10.0
_PR_SET_CHILD_SUBREAPER = 36


class PhaseTimeout(RuntimeError):
    """A phase of a benchmark ran past its time limit."""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def descendants(pid: int) -> list[int]:
    """PIDs below ``pid``, children first (from /proc/PID/task/*/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                found.extend(kids)
                todo.extend(kids)
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def wait_rusage(proc: subprocess.Popen[bytes], timeout: float, what: str) -> resource.struct_rusage:
    """Wait for ``proc`` with ``os.wait4`` (its own rusage: ``ru_maxrss`` in KiB)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() > deadline:
            raise PhaseTimeout(f"{what} did not finish within {timeout:.0f} s")
        time.sleep(0.02)


def _set_subreaper(on: bool) -> None:
    """Orphans of our children (workers whose parent died) become ours, so they can
    still be found and stopped by PID at the end."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _reap(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


class Processes:
    """``adopt_orphans=False`` for a harness that daemonizes on purpose (Postfix's master)
    and waits for it itself: adopted, it would linger as our zombie meanwhile."""

    def __init__(self, *, adopt_orphans: bool = True, grace: float = GRACE) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self.grace = grace
        _set_subreaper(adopt_orphans)

    def start(
        self,
        argv: Sequence[str],
        *,
        stdout: IO[bytes] | int | None = subprocess.DEVNULL,
        stderr: IO[bytes] | int | None = subprocess.DEVNULL,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        # a session of its own: a terminal's ^C reaches only the benchmark, which then
        # stops each process once, by PID (a second signal could cut a cleanup short)
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen[bytes], timeout: float, what: str) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise PhaseTimeout(f"{what} did not finish within {timeout:.0f} s") from None

    def stop(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float | None = None
    ) -> None:
        """Stop ``proc`` by its PID, then any descendant it left running, by theirs."""
        grace = self.grace if grace is None else grace
        kids = descendants(proc.pid) if proc.poll() is None else []
        if proc.poll() is None:
            _signal(proc.pid, sig)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal(proc.pid, signal.SIGKILL)
                proc.wait()
        left = [k for k in kids if alive(k)]
        for pid in left:
            _signal(pid, signal.SIGTERM)
        for pid in _wait_gone(left, grace):
            _signal(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            self.stop(proc)
        self._procs.clear()
        orphans = [p for p in descendants(os.getpid()) if alive(p)]
        for pid in orphans:
            _signal(pid, signal.SIGTERM)
        for pid in _wait_gone(orphans, GRACE):
            _signal(pid, signal.SIGKILL)
        _reap(descendants(os.getpid()))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
