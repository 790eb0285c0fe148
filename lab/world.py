"""The lab's world in one object: DNS, the provider stand-ins, their mailboxes (Maildir,
served over IMAP by Dovecot when it is installed), later bounces and the SMS gateway, all
on loopback, started together and stopped together.

* DNS: ``python -m lab.dns_server`` as a child process, authoritative for whole
  top-level domains (``com``, ``net``, ``org``, ``example``, ``test``) so that a mistyped
  domain gets NXDOMAIN as it would on the Internet, and for ``in-addr.arpa`` (PTR of the
  providers and of the sender). It serves the providers' MX, A and IMAP host records and,
  once a ``sokures.toml`` exists at ``config``, the sender's SPF, DKIM, DMARC, MX and the
  PTR/A pair of its sending IP: the records ``sokures init`` printed, published
  automatically (:meth:`LabWorld.sync_sender`, polled while the lab runs).
* SMTP: one :class:`lab.receiver.LabReceiver` per provider, on its own 127.0.0.x address
  and a shared port, judging mail by the provider's rulebook.
* Mail: Maildir under ``<directory>/mail``; DSNs for ``gone*`` recipients are filed in
  the sender's bounce mailbox ``bounces@<bounce domain>``, addressed to the VERP return
  path (``Delivered-To``).
* SMS: the Twilio-compatible gateway (:mod:`lab.sms_gateway`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deliver.domain_setup import records_for
from deliver.errors import SokuresError
from deliver.settings import load_settings
from lab.dns_process import DnsServerProcess
from lab.dsn import LaterBounces
from lab.ports import shared_port
from lab.providers import PROVIDERS, LabProvider
from lab.receiver import Journal, LabReceiver
from lab.service import Service
from lab.tls import server_context
from lab.zones import Record, ZoneData

__all__ = [
    "DNS_ADDRESS",
    "LAB_PASSWORD",
    "SMS_ACCOUNT",
    "LabOptions",
    "LabWorld",
    "world_zone",
]

DNS_ADDRESS = "127.0.0.20"
SMS_ADDRESS = "127.0.0.25"
#: where the lab's sender mail leaves from (the engine's source address on loopback)
SENDER_IP = "127.0.0.1"
ORIGINS = ("com", "net", "org", "example", "test", "in-addr.arpa")
#: every lab mailbox's IMAP password: not a secret, the lab is loopback only
LAB_PASSWORD = "lab"
#: the lab SMS gateway's account (AccountSid, AuthToken): public lab values
SMS_ACCOUNT = ("AC" + "0" * 30 + "1ab", "lab-sms-token")
IMAP_HOSTS = {
    "gmail": "imap.gmail.com",
    "yahoo": "imap.mail.yahoo.com",
    "outlook": "outlook.office365.com",
    "others": "imap.example.net",
}


def world_zone(
    providers: Iterable[LabProvider] = PROVIDERS, extra: Iterable[tuple[str, Record]] = ()
) -> ZoneData:
    records: dict[str, list[Record]] = {}
    for p in providers:
        records.setdefault(p.mx_host, []).append(Record("A", p.address))
        records.setdefault(_ptr_name(p.address), []).append(Record("PTR", p.mx_host))
        imap = IMAP_HOSTS.get(p.name)
        if imap and imap != p.mx_host:
            records.setdefault(imap, []).append(Record("A", p.address))
        for domain in p.domains:
            records.setdefault(domain, []).append(Record("MX", [10, p.mx_host]))
    for name, record in extra:
        records.setdefault(name, []).append(record)
    return ZoneData(origins=ORIGINS, records=records)


def _ptr_name(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


@dataclass(frozen=True)
class LabOptions:
    """Where the lab keeps its files and listens. Port 0: a free port (the tests);
    ``sokures lab up`` uses fixed ports so seedlists/lab.toml can name them."""

    directory: Path
    providers: tuple[LabProvider, ...] = PROVIDERS
    dns_port: int = 0
    smtp_port: int = 0
    imap_port: int = 0
    sms_port: int = 0
    #: serve the Maildirs over IMAP (when Dovecot is installed)
    imap: bool = True
    sms: bool = True
    #: the sender's sokures.toml: its records are published once it exists
    config: Path | None = None
    #: IMAP users created up front (the seed mailboxes), besides the bounce mailbox
    mailboxes: tuple[tuple[str, str], ...] = ()
    bounce_delay: float = 5.0
    keep_messages: bool = False
    rulebook_dir: Path | None = None


@dataclass
class LabWorld(Service):
    options: LabOptions
    extra_records: list[tuple[str, Record]] = field(default_factory=list)

    def __post_init__(self) -> None:
        o = self.options
        self.directory = o.directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.providers = o.providers
        self.smtp_port = o.smtp_port or shared_port(p.address for p in self.providers)
        self.dns = DnsServerProcess(world_zone(self.providers), host=DNS_ADDRESS,
                                    port=o.dns_port or None)  # fmt: skip
        from lab.maildir import MaildirStore

        self.mail = MaildirStore(self.directory / "mail")
        self.journal = Journal(self.directory / "deliveries.jsonl")
        self.bounces = LaterBounces(self._file_bounce, delay=o.bounce_delay)
        self.receivers: list[LabReceiver] = []
        self.imap: Any = None
        self.sms: Any = None
        self.sender_domain: str | None = None
        self._config_seen: float | None = None
        self._sync_lock = threading.Lock()
        self._sender_records: list[tuple[str, Record]] = []
        self._dovecot_dir: Path | None = None
        self.started_at: float | None = None

    # -- the pieces ------------------------------------------------------------------
    @property
    def nameserver(self) -> str:
        return self.dns.nameserver

    def _file_bounce(self, return_path: str, dsn: bytes) -> None:
        domain = return_path.rpartition("@")[2].lower() or "lab.test"
        stamped = f"Delivered-To: {return_path}\r\nReturn-Path: <>\r\n".encode() + dsn
        self.mail.deliver(f"bounces@{domain}", "others", "inbox", stamped)

    def publish(self, records: Iterable[tuple[str, Record]]) -> None:
        """Serve more records, besides the sender's (e.g. a test's own)."""
        self.extra_records.extend(records)
        self._reload()

    def _reload(self) -> None:
        zone = world_zone(self.providers, [*self._sender_records, *self.extra_records])
        if self.dns.port:
            self.dns.update(zone)
        else:
            self.dns.zone = zone

    def sync_sender(self) -> bool:
        """Publish the sender's records when ``config`` appeared or changed since the last
        call (True when it did). A config that cannot be read yet is left for later."""
        path = self.options.config
        if path is None:
            return False
        with self._sync_lock:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                return False
            if mtime == self._config_seen:
                return False
            try:
                settings = load_settings(path, env={})
                records = sender_records(settings)
            except (SokuresError, OSError, ValueError):
                return False
            self._config_seen = mtime
            self.sender_domain = settings.sender.domain
            self._sender_records = records
            self._reload()
            bounce = settings.sender.bounce_domain or settings.sender.domain
            self.mail.ensure(f"bounces@{bounce}", "others")
            if self.imap is not None:
                self.imap.add_user(f"bounces@{bounce}", LAB_PASSWORD)
            return True

    def counters(self) -> dict[str, dict[str, int]]:
        return {r.provider.name: r.counters.as_dict() for r in self.receivers}

    # -- start and stop -------------------------------------------------------------
    def start(self) -> LabWorld:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        o = self.options
        self.started_at = time.time()
        self.dns.start()
        self.sync_sender()
        self.bounces.start()
        tls = server_context(self.directory / "tls", [p.mx_host for p in self.providers])
        for p in self.providers:
            receiver = LabReceiver(
                p, self.smtp_port, nameservers=(self.nameserver,), mail=self.mail,
                journal=self.journal, bounces=self.bounces, keep_messages=o.keep_messages,
                rulebook_dir=o.rulebook_dir, tls=tls,
            )  # fmt: skip
            receiver.start()
            self.receivers.append(receiver)
        for address, provider in o.mailboxes:
            self.mail.ensure(address, provider)
        if o.imap:
            self._start_imap()
        if o.sms:
            from lab.sms_gateway import SmsGateway

            self.sms = SmsGateway(SMS_ADDRESS, o.sms_port, accounts=dict([SMS_ACCOUNT]),
                                  outbox=self.directory / "sms.jsonl")  # fmt: skip
            self.sms.start()

    def _start_imap(self) -> None:
        from lab.dovecot import Dovecot, find_dovecot

        if find_dovecot() is None:
            return
        users = {address: LAB_PASSWORD for address in self.mail.users()}
        port = self.options.imap_port or shared_port(p.address for p in self.providers)
        # Dovecot's sockets live in its base_dir and socket paths are limited to 107 bytes:
        # a short directory under /tmp, whatever the lab's own path
        self._dovecot_dir = Path(tempfile.mkdtemp(prefix="sokures-lab-dovecot-"))
        self.imap = Dovecot(self._dovecot_dir, self.mail.root, users,
                            listen=tuple(p.address for p in self.providers), port=port)  # fmt: skip
        self.imap.start()

    def stop(self) -> None:
        for receiver in self.receivers:
            with contextlib.suppress(Exception):
                receiver.stop()
        with contextlib.suppress(Exception):
            self.bounces.stop()
        for piece in (self.sms, self.imap):
            if piece is not None:
                with contextlib.suppress(Exception):
                    piece.stop()
        if self._dovecot_dir is not None:
            shutil.rmtree(self._dovecot_dir, ignore_errors=True)
        self.dns.stop()
        self.journal.close()

    # -- what the lab tells others ---------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What ``lab status`` shows and other processes read (``state.json``)."""
        return {
            "pid": os.getpid(),
            "started": self.started_at,
            "directory": str(self.directory),
            "nameserver": self.nameserver,
            "smtp_port": self.smtp_port,
            "imap_port": self.imap.port if self.imap is not None else None,
            "sms_url": self.sms.base_url if self.sms is not None else None,
            "sms_account": SMS_ACCOUNT[0] if self.sms is not None else None,
            "config": str(self.options.config) if self.options.config else None,
            "sender_domain": self.sender_domain,
            "providers": [
                {"name": p.name, "address": p.address, "mx_host": p.mx_host,
                 "domains": list(p.domains), "rulebook": p.rulebook}
                for p in self.providers
            ],
        }  # fmt: skip


def sender_records(settings: Any) -> list[tuple[str, Record]]:
    """The sender's records as the lab serves them: what ``init`` printed (SPF, DKIM,
    DMARC), plus an MX, and the PTR/A pair of each sending IP (FCrDNS, as providers
    require) named ``mail.<domain>`` or the configured HELO name."""
    domain = settings.require_domain()
    out = [(r.name, Record(r.type, r.value)) for r in records_for(settings)]
    helo = settings.sender.helo or f"mail.{domain}"
    out.append((domain, Record("MX", [10, helo])))
    for ip in settings.probes.sending_ips or (SENDER_IP,):
        if ":" in ip:
            continue  # the lab's reverse zone is IPv4 only
        out.append((_ptr_name(ip), Record("PTR", helo)))
        out.append((helo, Record("A", ip)))
    return out


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / "state.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lab_environment(state: Mapping[str, Any]) -> dict[str, str]:
    """The environment that points sokures at a running lab."""
    env = {
        "SOKURES_DNS_NAMESERVERS": str(state["nameserver"]),
        "SOKURES_SMTP_PORT": str(state["smtp_port"]),
        "SOKURES_LAB_DIR": str(state["directory"]),
        "SOKURES_LAB_PASSWORD": LAB_PASSWORD,
    }
    if state.get("sms_url"):
        env["SOKURES_SMS_URL"] = str(state["sms_url"])
        env["SOKURES_SMS_ACCOUNT"] = str(state["sms_account"])
    return env
