"""Postfix's ``smtp-sink`` on a free loopback port: accepts every message, counts them, and
optionally dumps each one to a file.

``SmtpSink`` is a context manager. It runs
``smtp-sink -u nobody -c [-d DUMPDIR/%H%M%S.] 127.0.0.1:PORT BACKLOG`` with the ``-c``
counter on stdout, which ``count()`` parses. Messages are counted rather than limited with
``-M N``, because smtp-sink exits before acknowledging message N.

Fixture (registered by listing this module in ``pytest_plugins``):

- ``smtp_sink`` (function): a fresh, dumping ``SmtpSink`` per test, stopped after it.
  Skipped without smtp-sink (failed under CI). For a counting-only sink (no dump files,
  for volume tests) use ``SmtpSink(require_program(SMTP_SINK, "postfix"), dump=False)``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from tests.servers.ports import free_port, require_program

__all__ = ["SMTP_SINK", "SmtpSink", "SmtpSinkStartError", "sink_dump_payload"]

SMTP_SINK = "/usr/sbin/smtp-sink"
HOST = "127.0.0.1"
UNPRIVILEGED_USER = "nobody"
STOP_TIMEOUT = 5.0
LOG_TAIL_LINES = 30

_MESG_COUNTER = re.compile(rb"mesg=(\d+)")
# The envelope lines smtp-sink writes above each dumped message.
_DUMP_ENVELOPE_PREFIXES = (b"X-Client-", b"X-Helo-Args:", b"X-Mail-Args:", b"X-Rcpt-Args:")


class SmtpSinkStartError(RuntimeError):
    """smtp-sink did not start listening; the message ends with its stderr tail."""


def sink_dump_payload(raw: bytes) -> bytes:
    """The message as the SMTP client sent it (CRLF line ends, dot-unstuffed), from one
    smtp-sink dump file.

    A dump file is: the X-Client-*/X-Helo-Args/X-Mail-Args/X-Rcpt-Args envelope lines,
    smtp-sink's own folded ``Received: ... by smtp-sink (smtp-sink) ...`` header, the message
    with LF line ends, and one empty line smtp-sink appends.
    """
    lines = raw.split(b"\n")
    i = 0
    while i < len(lines) and lines[i].startswith(_DUMP_ENVELOPE_PREFIXES):
        i += 1
    if _is_sink_received(lines[i : i + 2]):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    message = b"\n".join(lines[i:])
    if message.endswith(b"\n\n"):
        message = message[:-1]
    return message.replace(b"\n", b"\r\n")


def _is_sink_received(lines: list[bytes]) -> bool:
    return (
        len(lines) == 2
        and lines[0].startswith(b"Received: ")
        and b"by smtp-sink (smtp-sink)" in lines[1]
    )


class SmtpSink:
    """A private smtp-sink; ``dump=True`` keeps every message for ``messages()``."""

    def __init__(
        self,
        program: str = SMTP_SINK,
        *,
        dump: bool = True,
        backlog: int = 100,
        startup_timeout: float = 10.0,
    ) -> None:
        self.program = program
        self.dump = dump
        self.backlog = backlog
        self.startup_timeout = startup_timeout
        self.host = HOST
        self.port = 0
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def count(self) -> int:
        """Messages acknowledged so far (smtp-sink's ``-c`` ``mesg=N`` counter)."""
        counters = _MESG_COUNTER.findall(self._file("counter.out").read_bytes())
        return max((int(n) for n in counters), default=0)

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` messages were received; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def messages(self) -> list[bytes]:
        """Every dumped message as sent (see ``sink_dump_payload``), ordered by file time
        then name: smtp-sink names dumps ``HHMMSS.QUEUEID``, so order within a second and
        within the file system's time resolution is not arrival order."""
        if not self.dump:
            raise RuntimeError("this SmtpSink was started with dump=False")
        files = [p for p in self._file("dump").iterdir() if p.is_file()]
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [sink_dump_payload(p.read_bytes()) for p in files]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._tmp is not None:
            raise RuntimeError("SmtpSink is already running")
        self._tmp = Path(tempfile.mkdtemp(prefix="sokures-sink-"))
        try:
            self.port = free_port(HOST)
            self._prepare_dump_dir()
            self._spawn()
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop smtp-sink by its pid and remove the temp dir; safe to call twice."""
        try:
            if self._proc is not None:
                _terminate(self._proc)
        finally:
            self._proc = None
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None

    # -- internals ---------------------------------------------------------------------------

    def _file(self, name: str) -> Path:
        if self._tmp is None:
            raise RuntimeError("SmtpSink is not running")
        return self._tmp / name

    def _argv(self) -> list[str]:
        argv = [self.program, "-c"]
        # smtp-sink refuses to run as root without -u, and cannot switch user without root.
        if os.geteuid() == 0:
            argv += ["-u", UNPRIVILEGED_USER]
        if self.dump:
            argv += ["-d", f"{self._file('dump')}/%H%M%S."]
        return [*argv, f"{HOST}:{self.port}", str(self.backlog)]

    def _prepare_dump_dir(self) -> None:
        if not self.dump:
            return
        dump = self._file("dump")
        dump.mkdir()
        if os.geteuid() == 0:
            # smtp-sink writes the dumps after dropping to nobody; tmp (0700) must let it in.
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(dump, user.pw_uid, user.pw_gid)
            dump.parent.chmod(0o755)

    def _spawn(self) -> None:
        with (
            self._file("counter.out").open("wb") as out,
            self._file("stderr.log").open("wb") as err,
        ):
            self._proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )

    def _wait_listening(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._fail(f"smtp-sink exited with status {self._proc.returncode}")
            if _greets(self.port):
                return
            time.sleep(0.02)
        self._fail(
            f"smtp-sink did not greet on {HOST}:{self.port} within {self.startup_timeout:.0f} s"
        )

    def _fail(self, what: str) -> None:
        lines = self._file("stderr.log").read_text(errors="replace").splitlines()
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        raise SmtpSinkStartError(f"{what}: {' '.join(self._argv())}\n--- stderr ---\n{tail}")


def _greets(port: int) -> bool:
    """True when smtp-sink's own banner answers on ``port``: a bare connect could reach
    another program that took the port first. The probe counts as a session, not a message."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as probe:
            return probe.recv(64).startswith(b"220 smtp-sink ")
    except OSError:
        return False


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- pytest fixtures ---------------------------------------------------------------------------


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A dumping smtp-sink on a free loopback port, stopped after the test."""
    program = require_program(SMTP_SINK, "postfix")
    with SmtpSink(program) as sink:
        yield sink
