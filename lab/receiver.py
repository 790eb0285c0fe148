"""A lab provider's SMTP receiver (aiosmtpd) on its loopback address.

Per recipient (RCPT TO) the mailbox conventions of :mod:`lab.providers` decide: unknown
users and full mailboxes are refused with the provider's own replies. Per message (DATA):

1. faster than the rulebook's lab rate (``[limits] messages_per_second``, a GCRA) the
   provider answers its throttling reply (Gmail 421 4.7.28, Yahoo 421 4.7.0 [TSS04],
   Outlook 421 RP-001) and closes the connection;
2. the message is authenticated with the project's own path
   (:func:`probes.message.check_message`), the connecting IP's reverse DNS checked, the
   content scored, and :func:`lab.verdict.decide` applies the rulebook;
3. a refused message gets the rulebook's reply; an accepted one gets a ``Received`` and an
   ``Authentication-Results`` field and is filed in each recipient's Maildir (inbox,
   Promotions, spam) or bounced later with a DSN (``gone*``) or dropped (``blackhole*``).

Every decision is one JSON line in the journal (``deliveries.jsonl``): what the lab did,
so a placement report can be checked against where the lab really put each copy.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from deliver.dns import Resolver
from deliver.shaping import gcra
from lab.content import score
from lab.dsn import LaterBounces, build_dsn
from lab.providers import LabProvider
from lab.verdict import Decision, Placement, decide, place, smtp_reply
from probes import ptr
from probes.mailboxes import SEED_HEADER
from probes.message import MessageFormatError, MessageReport, check_message, read_headers
from probes.rulebook import Rulebook, load_rulebook

__all__ = ["Journal", "LabReceiver", "MailSink", "ProviderCounters"]

_COUNTS = ("accepted", "unknown", "full", "throttled", "rejected", "tempfailed", "inbox",
           "promotions", "spam", "dropped", "bounced_later")  # fmt: skip


class MailSink(Protocol):
    """Where accepted copies go (:class:`lab.maildir.MaildirStore`)."""

    def deliver(self, address: str, provider: str, placement: str, raw: bytes) -> Path: ...


@dataclass
class ProviderCounters:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))
    #: accepted messages by first recipient, when the receiver keeps them (tests)
    messages: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


class Journal:
    """One JSON line per decision, appended from every receiver thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: IO[str] | None = path.open("a", encoding="utf-8") if path else None

    def write(self, entry: dict[str, Any]) -> None:
        if self._fh is None:
            return
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def journal_counts(entries: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per provider: accepted copies by placement, and refusals by kind (what ``lab
    status`` shows, read from another process)."""
    out: dict[str, dict[str, int]] = {}
    for e in entries:
        counts = out.setdefault(e["provider"], dict.fromkeys(_COUNTS, 0))
        action = e["action"]
        if action == "accept":
            counts[e.get("placement") or "inbox"] += 1
            counts["accepted"] += 1
        elif action == "reject":
            counts["rejected"] += 1
        elif action == "tempfail":
            counts["tempfailed"] += 1
        elif action in counts:
            counts[action] += 1
    return out


class _Handler:
    def __init__(self, receiver: LabReceiver) -> None:
        self.r = receiver
        self.provider = receiver.provider
        self._tat = 0.0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:  # fmt: skip
        local = address.split("@")[0].lower()
        if local.startswith(("nouser", "full")):
            kind = "unknown" if local.startswith("nouser") else "full"
            reply = self.provider.unknown_user if kind == "unknown" else self.provider.mailbox_full
            reply = reply.replace("{rcpt}", address)
            self.r.counters.add(kind)
            self.r.note(kind, envelope.mail_from, address, reply)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        ip = str(session.peer[0]) if session.peer else "127.0.0.1"
        throttled = self._throttle(ip)
        if throttled is not None:
            self.r.counters.add("throttled")
            self.r.note("throttled", envelope.mail_from, list(envelope.rcpt_tos), throttled)
            asyncio.get_running_loop().call_later(0.05, _close, server)
            return throttled
        raw = envelope.original_content or b""
        try:
            decision, report = await self.r.judge(raw, ip, session.host_name or "",
                                                  envelope.mail_from or "",
                                                  session.ssl is not None)  # fmt: skip
        except MessageFormatError as exc:
            decision, report = Decision("reject", None, f"550 5.6.0 {exc}"), None
        if decision.action != "accept":
            self.r.counters.add("rejected" if decision.action == "reject" else "tempfailed")
            self.r.log(envelope, decision, report, None, None)
            return decision.reply or "550 5.7.1 refused"
        self.r.accept(envelope, raw, ip, session.host_name or "", decision, report)
        return "250 2.0.0 OK accepted"

    def _throttle(self, ip: str) -> str | None:
        rate = self.r.rate
        if rate is None:
            return None
        wait, tat = gcra(self._tat, time.monotonic(), 1.0 / rate, max(int(rate), 1))
        if wait > 0:
            return self.r.throttle_reply(ip)
        self._tat = tat
        return None


def _close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()


class LabReceiver:
    """One provider stand-in listening on its loopback address."""

    def __init__(
        self,
        provider: LabProvider,
        port: int,
        *,
        nameservers: tuple[str, ...] = (),
        mail: MailSink | None = None,
        journal: Journal | None = None,
        bounces: LaterBounces | None = None,
        keep_messages: bool = False,
        rulebook_dir: Path | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.provider = provider
        self.counters = ProviderCounters()
        self.rulebook: Rulebook | None = (
            load_rulebook(provider.rulebook, directory=rulebook_dir) if provider.rulebook else None
        )
        limits = self.rulebook.limits if self.rulebook else None
        self.rate: float | None = (
            provider.lab_rate.per_second if provider.lab_rate is not None
            else limits.messages_per_second if limits is not None else None
        )  # fmt: skip
        self._limit_reply = limits.reply if limits is not None else None
        self.resolver = Resolver(nameservers, timeout=2.0) if nameservers else None
        self.mail = mail
        self.journal = journal or Journal(None)
        self.bounces = bounces
        self.keep = keep_messages
        #: STARTTLS is offered (and the rulebook's TLS requirement enforced)
        self.tls = tls is not None
        self._controller = Controller(
            _Handler(self), hostname=provider.address, port=port, ready_timeout=10,
            server_hostname=provider.mx_host, tls_context=tls,
        )  # fmt: skip

    def throttle_reply(self, ip: str) -> str:
        if self._limit_reply is None:
            return self.provider.throttle
        return smtp_reply(self._limit_reply, ip=ip, domain="")

    async def judge(
        self, raw: bytes, ip: str, helo: str, mail_from: str, tls: bool = False
    ) -> tuple[Decision, MessageReport | None]:
        if self.resolver is None:  # no DNS: nothing can be verified, nothing is refused
            read_headers(raw)
            return Decision("accept", Placement.INBOX, reasons=("no lab DNS",)), None
        report, reverse = await asyncio.gather(
            check_message(self.resolver, raw, ip=ip, helo=helo, mail_from=mail_from),
            ptr.fcrdns(self.resolver, ip),
        )
        # what only the session shows: the rulebook's TLS requirement (manual for a probe)
        session = {"transport.tls": tls} if self.tls else {}
        decision = decide(self.rulebook, report, ptr.judge([reverse]), score(raw), ip=ip,
                          spam_threshold=self.provider.spam_threshold,
                          tabs=self.provider.tabs, session=session)  # fmt: skip
        return decision, report

    def accept(self, envelope: Envelope, raw: bytes, ip: str, helo: str,
               decision: Decision, report: MessageReport | None) -> None:  # fmt: skip
        stamped = self._stamp(raw, ip, helo, report)
        self.counters.add("accepted")
        if self.keep and envelope.rcpt_tos:
            with self.counters.lock:
                self.counters.messages[envelope.rcpt_tos[0]] = raw
        for rcpt in envelope.rcpt_tos:
            where, why = place(decision, rcpt)
            if rcpt.split("@")[0].lower().startswith("gone") and envelope.mail_from:
                where, why = "bounced_later", "accepted, then bounced with a DSN (lab 'gone*')"
                self._bounce_later(envelope.mail_from, rcpt, raw)
            elif where != Placement.DROPPED and self.mail is not None:
                self.mail.deliver(rcpt, self.provider.name, where, stamped)
            self.counters.add(where)
            self.log(envelope, decision, report, rcpt, where, why)

    def _bounce_later(self, return_path: str, rcpt: str, raw: bytes) -> None:
        if self.bounces is None:
            return
        dsn = build_dsn(reporting_mta=self.provider.mx_host, return_path=return_path, rcpt=rcpt,
                        status="5.1.1", diagnostic=_gone_reply(rcpt), original=raw,
                        arrival=time.time())  # fmt: skip
        self.bounces.schedule(return_path, dsn)

    def _stamp(self, raw: bytes, ip: str, helo: str, report: MessageReport | None) -> bytes:
        now = email.utils.formatdate(localtime=False)
        host = self.provider.mx_host
        received = (f"Received: from {helo or 'unknown'} ([{ip}])\r\n"
                    f"\tby {host} (sokures lab {self.provider.name}); {now}\r\n")  # fmt: skip
        if report is None:
            return received.encode() + raw
        return (_auth_results(host, report) + received).encode() + raw

    def log(self, envelope: Envelope, decision: Decision, report: MessageReport | None,
            rcpt: str | None, where: str | None, why: str | None = None) -> None:  # fmt: skip
        headers = report.headers if report is not None else None
        token = headers.one(SEED_HEADER) if headers is not None else None
        message_id = headers.one("Message-ID") if headers is not None else None
        self.journal.write({
            "time": round(time.time(), 3), "provider": self.provider.name,
            "rulebook": self.provider.rulebook, "rcpt": rcpt or list(envelope.rcpt_tos),
            "mail_from": envelope.mail_from, "message_id": message_id,
            "seed": token.strip() if token else None, "action": decision.action,
            "placement": where, "reply": decision.reply,
            "reasons": [*decision.reasons, *([why] if why else [])],
            "rules": list(decision.rules),
        })  # fmt: skip

    def note(self, action: str, mail_from: str | None, rcpt: object, reply: str) -> None:
        """A refusal before any judgement (unknown user, full mailbox, throttled)."""
        self.journal.write({"time": round(time.time(), 3), "provider": self.provider.name,
                            "rulebook": self.provider.rulebook, "rcpt": rcpt,
                            "mail_from": mail_from, "action": action, "placement": None,
                            "reply": reply})  # fmt: skip

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def _gone_reply(rcpt: str) -> str:
    return f"550 5.1.1 <{rcpt}>: this mailbox has been disabled and no longer accepts mail"


def _auth_results(host: str, report: MessageReport) -> str:
    """RFC 8601 Authentication-Results, as the provider's MX writes it."""
    parts = [host]
    for sig in report.dkim or ():
        parts.append(f"dkim={sig.result} header.i=@{sig.domain} header.s={sig.selector}")
    if not report.dkim:
        parts.append("dkim=none")
    spf = report.spf
    parts.append(f"spf={spf.result} smtp.mailfrom={spf.mail_from or '<>'}")
    dmarc = report.dmarc
    policy = f" (p={dmarc.policy.upper()} dis={dmarc.disposition.upper()})" if dmarc.policy else ""
    parts.append(f"dmarc={dmarc.result}{policy} header.from={report.from_domain or ''}")
    return "Authentication-Results: " + ";\r\n\t".join(parts) + "\r\n"
