"""Stand-ins for the big mailbox providers, on loopback: aiosmtpd receivers that answer
like Gmail, Yahoo and Outlook do.

Each provider has its own loopback address, MX host name and reply texts. Mailboxes
follow the lab's convention on the local part: ``nouser-*`` does not exist (550
5.1.1), ``full-*`` is over quota (452 4.2.2), anything else accepts mail. A provider
with a lab rate answers its throttling reply (Gmail's 421 4.7.28) to whoever sends
faster than that, so the engine's shaping rules are exercised for real.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from deliver.shaping import gcra
from deliver.units import Rate, parse_rate

__all__ = ["PROVIDERS", "LabProvider", "LabReceiver", "ProviderCounters"]


@dataclass(frozen=True)
class LabProvider:
    name: str
    domains: tuple[str, ...]
    mx_host: str
    address: str
    unknown_user: str
    mailbox_full: str
    throttle: str
    #: faster than this, the provider answers ``throttle`` (None: never)
    lab_rate: Rate | None = None


PROVIDERS: tuple[LabProvider, ...] = (
    LabProvider(
        "gmail",
        ("gmail.com", "googlemail.com"),
        "gmail-smtp-in.l.google.com",
        "127.0.0.21",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        "550 5.1.1 double-checking the recipient's email address for typos. - gsmtp",
        "452-4.2.2 The recipient's inbox is out of storage space.\r\n"
        "452 4.2.2 Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp",
        "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating\r\n"
        "421-4.7.28 from your IP address. To protect our users from spam, mail sent from\r\n"
        "421 4.7.28 your IP address has been temporarily rate limited. - gsmtp",
        parse_rate("40/s"),
    ),
    LabProvider(
        "yahoo",
        ("yahoo.com", "aol.com"),
        "mta5.am0.yahoodns.net",
        "127.0.0.22",
        "554 delivery error: dd This user doesn't have a yahoo.com account - mta5.am0.yahoodns.net",
        "452 4.2.2 Mailbox full - mta5.am0.yahoodns.net",
        "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume"
        " or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
    ),
    LabProvider(
        "outlook",
        ("outlook.com", "hotmail.com", "live.com"),
        "outlook-com.olc.protection.outlook.com",
        "127.0.0.23",
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).",
        "452 4.2.2 The recipient's mailbox is full and can't accept messages now.",
        "421 4.7.0 127.0.0.1 RP-001 (SNT004-MC1F43) Unfortunately, some messages from 127.0.0.1"
        " weren't sent. Please try again. The mail server IP connecting to Outlook.com server"
        " has exceeded the connection limit allowed.",
    ),
    LabProvider(
        "others",
        ("example.net", "example.org", "mailbox.example"),
        "mx.example.net",
        "127.0.0.24",
        "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
        "452 4.2.2 <{rcpt}>: Recipient address rejected: Mailbox full",
        "421 4.7.0 Too many connections, try again later",
    ),
)


@dataclass
class ProviderCounters:
    accepted: int = 0
    unknown: int = 0
    full: int = 0
    throttled: int = 0
    messages: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {
                "accepted": self.accepted,
                "unknown": self.unknown,
                "full": self.full,
                "throttled": self.throttled,
            }


class _Handler:
    def __init__(self, provider: LabProvider, counters: ProviderCounters, keep: bool) -> None:
        self.provider = provider
        self.counters = counters
        self.keep = keep
        self._tat = 0.0

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local = address.split("@")[0].lower()
        if local.startswith("nouser"):
            with self.counters.lock:
                self.counters.unknown += 1
            return self.provider.unknown_user.replace("{rcpt}", address)
        if local.startswith("full"):
            with self.counters.lock:
                self.counters.full += 1
            return self.provider.mailbox_full.replace("{rcpt}", address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rate = self.provider.lab_rate
        if rate is not None:
            wait, tat = gcra(
                self._tat, time.monotonic(), rate.interval, max(int(rate.per_second), 1)
            )
            if wait > 0:
                with self.counters.lock:
                    self.counters.throttled += 1
                asyncio.get_running_loop().call_later(0.05, _close, server)
                return self.provider.throttle
            self._tat = tat
        with self.counters.lock:
            self.counters.accepted += 1
            if self.keep:
                self.counters.messages[envelope.rcpt_tos[0]] = envelope.original_content or b""
        return "250 2.0.0 OK accepted"


def _close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()


class LabReceiver:
    """One provider stand-in listening on its loopback address."""

    def __init__(self, provider: LabProvider, port: int, *, keep_messages: bool = False) -> None:
        self.provider = provider
        self.counters = ProviderCounters()
        kwargs: dict[str, Any] = {"hostname": provider.address, "port": port, "ready_timeout": 10}
        self._controller = Controller(_Handler(provider, self.counters, keep_messages), **kwargs)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
