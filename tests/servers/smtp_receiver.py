"""Scripted SMTP receivers (aiosmtpd) on loopback: each recipient gets the replies its
script says, every attempt is recorded with its time, and accepted messages are kept.

A script maps a recipient and the number of its attempt (1 = first) to a
:class:`Behaviour`: the reply to RCPT, the reply to DATA, dropping the connection
in the middle of DATA, or answering slowly. :func:`by_local_part` is the default
script, keyed on the recipient's local part (``ok-17@``, ``unknown-3@``, ...).
Receivers can share one port on several loopback addresses, as MX hosts of a lab.
"""

from __future__ import annotations

import asyncio
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from lab.ports import shared_port
from lab.tls import server_context

__all__ = ["Attempt", "Behaviour", "Receiver", "ReceiverFarm", "by_local_part", "receivers"]

# multi-line, as Gmail sends it (RFC 5321 §4.2.1: "421-" lines, then a "421 " line)
GMAIL_RATE = (
    "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating\r\n"
    "421-4.7.28 from your IP address. To protect our users from spam, mail sent from your\r\n"
    "421 4.7.28 IP address has been temporarily rate limited. - gsmtp"
)
YAHOO_TSS04 = (
    "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume "
    "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
)


@dataclass(frozen=True)
class Behaviour:
    rcpt: str = "250 2.1.5 OK"
    data: str = "250 2.0.0 OK queued"
    #: close the connection after the message data arrives, without a reply
    drop_in_data: bool = False
    #: seconds to wait before the DATA reply
    delay: float = 0.0
    #: close the connection after sending a 421
    close_after_421: bool = True


def by_local_part(rcpt: str, attempt: int) -> Behaviour:
    """The default script: the local part's prefix says what happens."""
    local = rcpt.split("@")[0].lower()
    if local.startswith("unknown"):
        return Behaviour(rcpt="550 5.1.1 The email account that you tried to reach does not exist.")
    if local.startswith("reject"):
        return Behaviour(data="550 5.7.1 Message rejected as spam by content filtering.")
    if local.startswith("gmailrate"):  # rate limited on the first attempt only
        return Behaviour(data=GMAIL_RATE) if attempt == 1 else Behaviour()
    if local.startswith("tss04"):
        return Behaviour(rcpt=YAHOO_TSS04)
    if local.startswith("always421"):
        return Behaviour(rcpt="421 4.3.2 System not accepting network messages, try later")
    if local.startswith("later"):  # a hint, then accepted
        return (
            Behaviour(data="451 4.7.1 Greylisted, please try again in 2 seconds")
            if attempt == 1
            else Behaviour()
        )
    if local.startswith("drop"):  # connection lost in the middle of DATA, then accepted
        return Behaviour(drop_in_data=True) if attempt == 1 else Behaviour()
    if local.startswith("slow"):
        return Behaviour(delay=3.0)
    if local.startswith("full"):
        return Behaviour(rcpt="452 4.2.2 The email account that you tried to reach is over quota.")
    return Behaviour()


@dataclass(frozen=True)
class Attempt:
    at: float
    rcpt: str
    stage: str
    reply: str
    server: str
    tls: bool

    @property
    def code(self) -> int:
        return int(self.reply[:3]) if self.reply[:3].isdigit() else 0


@dataclass
class Accepted:
    at: float
    mail_from: str
    rcpt: str
    data: bytes
    server: str


@dataclass
class Journal:
    """What all receivers of a farm saw; thread-safe."""

    attempts: list[Attempt] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_attempt(self, rcpt: str) -> int:
        with self.lock:
            self.counts[rcpt] = self.counts.get(rcpt, 0) + 1
            return self.counts[rcpt]

    def add(self, item: Attempt | Accepted) -> None:
        with self.lock:
            (self.attempts if isinstance(item, Attempt) else self.accepted).append(item)  # type: ignore[arg-type]

    def attempts_for(self, rcpt: str) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if a.rcpt == rcpt]

    def delivered_to(self) -> list[str]:
        with self.lock:
            return [a.rcpt for a in self.accepted]


class ScriptedHandler:
    def __init__(
        self, name: str, script: Callable[[str, int], Behaviour], journal: Journal
    ) -> None:
        self.name = name
        self.script = script
        self.journal = journal

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        attempt = self.journal.next_attempt(address)
        behaviour = self.script(address, attempt)
        session.behaviour = behaviour  # type: ignore[attr-defined]
        self.journal.add(
            Attempt(time.time(), address, "rcpt", behaviour.rcpt, self.name, _tls(session))
        )
        if behaviour.rcpt.startswith("2"):
            envelope.rcpt_tos.append(address)
        elif behaviour.rcpt.startswith("421") and behaviour.close_after_421:
            _close_soon(server)
        return behaviour.rcpt

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str | None:
        behaviour: Behaviour = session.behaviour  # type: ignore[attr-defined]
        rcpt = envelope.rcpt_tos[0]
        if behaviour.drop_in_data:
            self.journal.add(
                Attempt(time.time(), rcpt, "data", "--- dropped", self.name, _tls(session))
            )
            server.transport.close()  # type: ignore[union-attr]
            return "421 4.4.2 closing"  # never reaches the client: the transport is gone
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        self.journal.add(
            Attempt(time.time(), rcpt, "data", behaviour.data, self.name, _tls(session))
        )
        if behaviour.data.startswith("2"):
            content = envelope.original_content or b""
            self.journal.add(
                Accepted(time.time(), envelope.mail_from or "", rcpt, content, self.name)
            )
        elif behaviour.data.startswith("421") and behaviour.close_after_421:
            _close_soon(server)
        return behaviour.data


def _tls(session: Session) -> bool:
    return session.ssl is not None


def _close_soon(server: SMTP) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, lambda: server.transport and server.transport.close())


class Receiver:
    def __init__(
        self,
        host: str,
        port: int,
        script: Callable[[str, int], Behaviour],
        journal: Journal,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        handler = ScriptedHandler(host, script, journal)
        kwargs: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "ready_timeout": 10,
            "enable_SMTPUTF8": True,
        }
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=False)
        self.controller = Controller(handler, **kwargs)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class ReceiverFarm:
    """Receivers sharing one port on several loopback addresses, and one journal."""

    def __init__(
        self,
        hosts: Sequence[str] = ("127.0.0.1",),
        script: Callable[[str, int], Behaviour] = by_local_part,
        *,
        tls: bool = False,
    ) -> None:
        self.hosts = tuple(hosts)
        self.journal = Journal()
        self.port = shared_port(self.hosts)
        self._tmp = tempfile.TemporaryDirectory(prefix="receivers-")
        context = server_context(Path(self._tmp.name), ["mx.lab.test"]) if tls else None
        self.receivers = [
            Receiver(h, self.port, script, self.journal, tls_context=context) for h in self.hosts
        ]

    def __enter__(self) -> ReceiverFarm:
        for r in self.receivers:
            r.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for r in self.receivers:
            r.stop()
        self._tmp.cleanup()

    @property
    def relay(self) -> str:
        return f"{self.hosts[0]}:{self.port}"

    def wait_for(self, accepted: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.journal.accepted) >= accepted:
                return True
            time.sleep(0.02)
        return False


@pytest.fixture
def receivers() -> Iterator[Callable[..., ReceiverFarm]]:
    """Start receiver farms: ``receivers(hosts, script=..., tls=...)``; all stop at the end."""
    farms: list[ReceiverFarm] = []

    def start(hosts: Sequence[str] = ("127.0.0.1",), **kwargs: Any) -> ReceiverFarm:
        farm = ReceiverFarm(hosts, **kwargs).__enter__()
        farms.append(farm)
        return farm

    yield start
    for farm in farms:
        farm.__exit__(None, None, None)
