"""The lab's DNS server as a child process: ``python -m lab.dns_server`` serving a ZoneData.

Used by ``sokures lab up`` (on its fixed address and port) and by the tests (on a free
port). :meth:`DnsServerProcess.update` rewrites the zone file and sends SIGHUP; the server
confirms the reload on its stdout before the call returns, so a record published is a
record served.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

from lab.ports import free_port
from lab.service import Service
from lab.zones import ZoneData, dump_zone_file

__all__ = ["DnsServerError", "DnsServerProcess"]

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 10.0
RELOAD_SECONDS = 5.0
STOP_SECONDS = 5.0
_BIND_ATTEMPTS = 3  # free_port() can race with another process taking the port


class DnsServerError(RuntimeError):
    """The server process did not start, reload or answer as it should; names its log."""


class DnsServerProcess(Service):
    """``python -m lab.dns_server`` on a free loopback port, serving ``zone``."""

    def __init__(
        self,
        zone: ZoneData,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_queries: bool = False,
    ):
        """``port`` None picks a free one; a fixed port (53, for programs that read
        resolv.conf, which cannot name another) is tried once."""
        self.zone = zone
        self.host = host
        self.port = 0
        self._fixed_port = port
        self.returncode: int | None = None
        self.log = ""  # the server's stderr, once stopped
        self._log_queries = log_queries
        self._directory = Path(tempfile.mkdtemp(prefix="lab-dns-"))
        self.zone_path = self._directory / "zones.json"
        self.pidfile = self._directory / "dns.pid"
        self._log_path = self._directory / "stderr.log"
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._log_file: IO[str] | None = None
        self._lock = threading.Lock()

    @property
    def nameserver(self) -> str:
        """``HOST:PORT``, as ``--nameserver`` and ``SOKURES_DNS_NAMESERVERS`` take it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> DnsServerProcess:
        """Start the process and wait for its ``ready`` line (DnsServerError if it fails)."""
        dump_zone_file(self.zone, self.zone_path)
        attempts = 1 if self._fixed_port else _BIND_ATTEMPTS
        for attempt in range(attempts):
            port = self._fixed_port or free_port(self.host)
            self._spawn(port)
            try:
                line = self._next_line(STARTUP_SECONDS)
                if not line.startswith("ready udp+tcp "):
                    raise DnsServerError(f"unexpected first line {line!r}; {self._tail()}")
            except DnsServerError:
                self._halt()
                if "Address already in use" in self._read_log() and attempt + 1 < attempts:
                    continue
                self.stop()
                raise
            self.port = port
            return self
        raise AssertionError("unreachable")

    def update(self, zone: ZoneData, timeout: float = RELOAD_SECONDS) -> None:
        """Serve ``zone`` instead: rewrite the file, SIGHUP, wait for the server to confirm."""
        with self._lock:
            dump_zone_file(zone, self.zone_path)
            status = self._reload(timeout)
            if not status.startswith("reloaded "):
                raise DnsServerError(f"the server refused the new zones: {status}")
            self.zone = zone

    def reload_text(self, text: str, timeout: float = RELOAD_SECONDS) -> str:
        """Replace the zone file with ``text`` as is, SIGHUP, and return the server's status
        line (``reloaded ...`` or ``reload-failed REASON``): for testing bad zone files."""
        with self._lock:
            temporary = self.zone_path.with_suffix(".tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.zone_path)
            return self._reload(timeout)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period; returns the exit code. Idempotent."""
        if self._process is not None:
            self._halt()
            self.log = self._read_log()
        shutil.rmtree(self._directory, ignore_errors=True)
        return self.returncode

    def _spawn(self, port: int) -> None:
        command = [sys.executable, "-m", "lab.dns_server", "--zones", str(self.zone_path),
                   "--listen", self.host, "--port", str(port),
                   "--pidfile", str(self.pidfile)]  # fmt: skip
        if self._log_queries:
            command.append("--log-queries")
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")])
        )
        self._log_file = self._log_path.open("w", encoding="utf-8")
        self._lines = queue.Queue()
        self._process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment, text=True, encoding="utf-8",
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log_file,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            message = f"no word from the DNS server in {timeout} s; {self._tail()}"
            raise DnsServerError(message) from None
        if line is None:
            raise DnsServerError(f"the DNS server exited; {self._tail()}")
        return line

    def _reload(self, timeout: float) -> str:
        assert self._process is not None, "not started"
        self._process.send_signal(signal.SIGHUP)
        return self._next_line(timeout)

    def _halt(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.returncode = process.returncode
        if self._reader is not None:
            self._reader.join(STOP_SECONDS)
        if process.stdout is not None:
            process.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
        self._process = None

    def _read_log(self) -> str:
        try:
            return self._log_path.read_text(encoding="utf-8")
        except OSError:
            return ""

    def _tail(self) -> str:
        text = self._read_log().strip()
        return f"its stderr: {text[-2000:]}" if text else "its stderr is empty"
