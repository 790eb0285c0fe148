"""The lab's world in one object: an authoritative DNS server and the provider stand-ins,
all on loopback, started together and stopped together.

The DNS server is authoritative for whole top-level domains (``com``, ``net``,
``org``, ``example``, ``test``) so that a mistyped domain gets NXDOMAIN as it would on
the Internet; it serves the providers' MX and A records and the sender's records.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from lab.dns_server import LabDnsServer
from lab.providers import PROVIDERS, LabProvider, LabReceiver
from lab.zones import Record, ZoneData

__all__ = ["DNS_ADDRESS", "LabWorld", "world_zone"]

DNS_ADDRESS = "127.0.0.20"
ORIGINS = ("com", "net", "org", "example", "test")


def world_zone(
    providers: Iterable[LabProvider] = PROVIDERS, extra: Iterable[tuple[str, Record]] = ()
) -> ZoneData:
    records: dict[str, list[Record]] = {}
    for p in providers:
        records.setdefault(p.mx_host, []).append(Record("A", p.address))
        for domain in p.domains:
            records.setdefault(domain, []).append(Record("MX", [10, p.mx_host]))
    for name, record in extra:
        records.setdefault(name, []).append(record)
    return ZoneData(origins=ORIGINS, records=records)


def _shared_port(addresses: Iterable[str]) -> int:
    addresses = list(addresses)
    for _ in range(50):
        with socket.socket() as s:
            s.bind((addresses[0], 0))
            port = int(s.getsockname()[1])
        try:
            for a in addresses[1:]:
                with socket.socket() as s:
                    s.bind((a, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every lab address")


@dataclass
class LabWorld:
    providers: tuple[LabProvider, ...] = PROVIDERS
    extra_records: list[tuple[str, Record]] = field(default_factory=list)
    keep_messages: bool = False

    def __post_init__(self) -> None:
        self.smtp_port = _shared_port(p.address for p in self.providers)
        self.dns = LabDnsServer(world_zone(self.providers, self.extra_records), host=DNS_ADDRESS)
        self.receivers = [
            LabReceiver(p, self.smtp_port, keep_messages=self.keep_messages) for p in self.providers
        ]

    @property
    def nameserver(self) -> str:
        return f"{DNS_ADDRESS}:{self.dns.port}"

    def publish(self, records: Iterable[tuple[str, Record]]) -> None:
        """Serve more records (e.g. the sender's SPF, DKIM and DMARC after init)."""
        self.extra_records.extend(records)
        self.dns.reload(world_zone(self.providers, self.extra_records))

    def counters(self) -> dict[str, dict[str, int]]:
        return {r.provider.name: r.counters.as_dict() for r in self.receivers}

    def __enter__(self) -> LabWorld:
        self.dns.start()
        started: list[LabReceiver] = []
        try:
            for r in self.receivers:
                r.start()
                started.append(r)
        except BaseException:
            for r in started:
                r.stop()
            self.dns.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for r in self.receivers:
            r.stop()
        self.dns.stop()
