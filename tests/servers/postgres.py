"""A throwaway PostgreSQL server on a free loopback port, in a temp dir.

``PostgresServer`` is a context manager: ``initdb`` into a fresh temp dir, ``pg_ctl start``
on 127.0.0.1, and on exit ``pg_ctl stop -m fast`` (signals by the postmaster pid if that
fails) and the temp dir removed. PostgreSQL refuses to run as root, so when the tests run
as root the server programs run as ``nobody`` through ``runuser``.

Fixtures (registered by listing this module in ``pytest_plugins``):

- ``postgres_server`` (session): one ``PostgresServer`` for the whole test session.
- ``postgres_url`` (function): a fresh, empty database per test, as a SQLAlchemy URL
  (``postgresql+psycopg://postgres@127.0.0.1:PORT/test_N``), dropped after the test.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import pytest
from psycopg import sql

from tests.servers.ports import free_port, require_program

__all__ = ["PostgresServer", "PostgresStartError", "find_pg_program"]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 30


class PostgresStartError(RuntimeError):
    """The server did not start; the message ends with the server log tail."""


def find_pg_program(name: str) -> str:
    """``name`` from the newest /usr/lib/postgresql/*/bin (Debian's layout), else bare
    ``name`` for a PATH lookup by ``require_program``."""

    def version(bindir: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(bindir).parent.name))

    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        candidate = Path(bindir) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return name


class PostgresServer:
    """A private PostgreSQL cluster; trust auth for the ``postgres`` superuser on loopback."""

    def __init__(self, initdb: str, pg_ctl: str, startup_timeout: float = 30.0) -> None:
        self.initdb = initdb
        self.pg_ctl = pg_ctl
        self.startup_timeout = startup_timeout
        self.port = 0
        self.startup_seconds = 0.0
        self._tmp: Path | None = None
        self._numbers = itertools.count(1)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` maintenance database."""
        return self.database_url(SUPERUSER)

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{name}"

    def next_database_name(self) -> str:
        return f"test_{next(self._numbers)}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing any connection a test left open (FORCE, PostgreSQL 13+)."""
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        self._admin(query)

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
            raise RuntimeError("PostgresServer is already running")
        began = time.monotonic()
        deadline = began + self.startup_timeout
        self._tmp = Path(tempfile.mkdtemp(prefix="sokures-pg-"))
        try:
            self._give_to_server_user(self._tmp)
            self._run_initdb(deadline)
            self.port = free_port(HOST)
            self._run_pg_ctl_start(deadline)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop the server if it runs and remove the temp dir; safe to call twice."""
        if self._tmp is None:
            return
        try:
            self._stop_server()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- internals ---------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if self._tmp is None:
            raise RuntimeError("PostgresServer is not running")
        return self._tmp / name

    @property
    def _data(self) -> Path:
        return self._path("data")

    @property
    def _log(self) -> Path:
        return self._path("server.log")

    def _admin(self, query: sql.Composed) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        conninfo = f"host={HOST} port={self.port} user={SUPERUSER} dbname={SUPERUSER}"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(query)

    def _run_initdb(self, deadline: float) -> None:
        # --no-sync: nothing of a throwaway cluster needs to survive a crash.
        self._run(
            [
                self.initdb,
                "-D",
                str(self._data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            deadline,
            "initdb",
        )

    def _run_pg_ctl_start(self, deadline: float) -> None:
        # fsync, synchronous_commit and full_page_writes off: the database is thrown away
        # after the session, so durability buys nothing and costs startup and test time.
        options = (
            f"-p {self.port} -k {shlex.quote(str(self._tmp))} -c listen_addresses={HOST}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        wait = max(1, int(deadline - time.monotonic()))
        self._run(
            [
                self.pg_ctl,
                "-D",
                str(self._data),
                "-l",
                str(self._log),
                "-o",
                options,
                "-w",
                "-t",
                str(wait),
                "start",
            ],
            deadline,
            "pg_ctl start",
        )

    def _run(self, argv: list[str], deadline: float, what: str) -> None:
        timeout = max(0.1, deadline - time.monotonic())
        try:
            status, output = _run_bounded(self._as_server_user(argv), timeout)
        except subprocess.TimeoutExpired as e:
            raise PostgresStartError(
                f"{what} did not finish within {self.startup_timeout:.0f} s{self._log_tail()}"
            ) from e
        if status != 0:
            raise PostgresStartError(
                f"{what} exited with status {status}:\n{output}{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            lines = self._log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return ""
        return "\n--- server log tail ---\n" + "\n".join(lines)

    def _stop_server(self) -> None:
        pid = _postmaster_pid(self._data)
        if pid is None:
            return
        stop = [
            self.pg_ctl,
            "-D",
            str(self._data),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(STOP_TIMEOUT)),
            "stop",
        ]
        with contextlib.suppress(subprocess.TimeoutExpired):
            _run_bounded(self._as_server_user(stop), STOP_TIMEOUT + 5)
        # SIGQUIT is PostgreSQL's immediate shutdown (it also ends the backends);
        # SIGKILL only if even that is ignored.
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            if not _alive(pid):
                return
            _signal(pid, sig)
            _wait_gone(pid, STOP_TIMEOUT / 2)

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresStartError(
                "running as root needs runuser (util-linux) to drop to "
                f"{UNPRIVILEGED_USER}: PostgreSQL refuses to run as root"
            )
        return [runuser, "-u", UNPRIVILEGED_USER, "--", *argv]

    @staticmethod
    def _give_to_server_user(tmp: Path) -> None:
        # initdb creates data/ and the server writes its log and socket in tmp,
        # so tmp must belong to the user they run as.
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(tmp, user.pw_uid, user.pw_gid)


def _clean_env() -> dict[str, str]:
    """The environment without PG* variables, which would override the explicit options."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run_bounded(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` in its own process group, killed whole on timeout (runuser forks, so
    killing it alone would orphan initdb or pg_ctl). Returns the status and the output."""
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env(),
        start_new_session=True,
    ) as proc:
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return proc.returncode, output


def _postmaster_pid(data: Path) -> int | None:
    try:
        first_line = (data / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first_line)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (an init that does not reap) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


# -- pytest fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway server for the session; skipped without PostgreSQL (failed under CI)."""
    initdb = require_program(find_pg_program("initdb"), "postgresql")
    pg_ctl = require_program(find_pg_program("pg_ctl"), "postgresql")
    with PostgresServer(initdb, pg_ctl) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL to a fresh database ``test_N``, dropped after the test."""
    name = postgres_server.next_database_name()
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)
