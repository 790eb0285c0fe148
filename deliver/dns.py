"""One DNS resolver wrapper for routing and the probes.

A lookup gives a :class:`DnsAnswer` whose ``status`` keeps apart what must not be
confused: the name does not exist (NXDOMAIN), it exists without records of that
type (NODATA), the servers failed (SERVFAIL), refused (REFUSED), or did not answer
(TIMEOUT). Tools that treated a timeout as "no record" shipped real bugs.

Records come back as small typed values (:class:`MxRecord`, :class:`TxtRecord`,
:class:`SoaRecord`, and ``str`` for A, AAAA, CNAME, PTR and NS), names without
their final dot. Answers are cached for their TTL, per resolver (no global state);
the number of queries in flight is bounded. ``query`` is async; ``query_sync``
serves libraries that look names up synchronously (pyspf, dkimpy) from a thread.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from deliver.errors import ConfigError
from deliver.units import parse_host_port

__all__ = [
    "DnsAnswer",
    "DnsStatus",
    "MxRecord",
    "Record",
    "Resolver",
    "SoaRecord",
    "TxtRecord",
    "parse_nameserver",
]


class DnsStatus(enum.StrEnum):
    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"

    @property
    def definitive(self) -> bool:
        """The answer says something about the name (not a failure to ask)."""
        return self in (DnsStatus.OK, DnsStatus.NXDOMAIN, DnsStatus.NODATA)


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    #: the host, without the final dot; "" for the root (a null MX, RFC 7505)
    exchange: str


@dataclass(frozen=True, slots=True)
class TxtRecord:
    #: the character-strings as published (RFC 1035 §3.3.14); SPF, DKIM and DMARC
    #: join them without separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2)
    strings: tuple[bytes, ...]

    @property
    def text(self) -> str:
        return b"".join(self.strings).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class SoaRecord:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


#: A/AAAA addresses, and CNAME/PTR/NS targets, are plain strings
Record = str | MxRecord | TxtRecord | SoaRecord


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    name: str
    rdtype: str
    status: DnsStatus
    records: tuple[Record, ...] = ()
    ttl: int = 0
    detail: str = ""
    #: CNAMEs followed to reach the answer, in order (the owner name is not listed)
    cnames: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status is DnsStatus.OK

    def texts(self) -> list[str]:
        """TXT records as text (each record's strings joined)."""
        return [r.text for r in self.records if isinstance(r, TxtRecord)]

    def addresses(self) -> list[str]:
        return [r for r in self.records if isinstance(r, str)]


def parse_nameserver(value: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address (port 53 by default)."""
    try:
        return parse_host_port(value, 53)
    except ValueError as exc:
        raise ConfigError(f"nameserver {exc}") from None


def _to_record(rdata: object) -> Record:
    """A dnspython rdata as one of our typed records."""
    kind = dns.rdatatype.to_text(rdata.rdtype)  # type: ignore[attr-defined]
    if kind == "MX":
        exchange = rdata.exchange.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
        return MxRecord(int(rdata.preference), "" if exchange in ("", ".") else exchange)  # type: ignore[attr-defined]
    if kind in ("TXT", "SPF"):
        return TxtRecord(tuple(rdata.strings))  # type: ignore[attr-defined]
    if kind == "SOA":
        r = rdata
        return SoaRecord(r.mname.to_text(omit_final_dot=True), r.rname.to_text(omit_final_dot=True),  # type: ignore[attr-defined]
                         r.serial, r.refresh, r.retry, r.expire, r.minimum)  # type: ignore[attr-defined]
    if kind in ("CNAME", "PTR", "NS", "DNAME"):
        return str(rdata.target.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
    return str(rdata.to_text())  # type: ignore[attr-defined]


class Resolver:
    """Async lookups with statuses kept apart; one instance per run, no global state."""

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = 5.0,
        concurrency: int = 64,
        cache: bool = True,
    ) -> None:
        if nameservers:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(n)) for n in nameservers
            ]
        else:
            r = dns.asyncresolver.Resolver()
        r.lifetime = timeout
        r.timeout = min(timeout, 2.0)
        r.retry_servfail = False
        self._resolver = r
        self._cache: dict[tuple[str, str], tuple[float, DnsAnswer]] | None = {} if cache else None
        self._limit = asyncio.Semaphore(concurrency)
        self._sync = dns.resolver.Resolver(configure=False)
        self._sync.nameservers = r.nameservers
        self._sync.lifetime, self._sync.timeout = r.lifetime, r.timeout
        #: queries sent to the servers (cache hits not counted)
        self.sent = 0

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        key = (name.lower().rstrip("."), rdtype.upper())
        cached = self._cached(key)
        if cached is not None:
            return cached
        async with self._limit:
            self.sent += 1
            try:
                answer = await self._resolver.resolve(name, rdtype, search=False)
            except dns.exception.DNSException as exc:
                return self._store(key, _failure(name, rdtype, exc))
        return self._store(key, _answer(name, rdtype, answer))

    def query_sync(self, name: str, rdtype: str) -> DnsAnswer:
        """The same lookup, blocking: for synchronous libraries running in a thread."""
        key = (name.lower().rstrip("."), rdtype.upper())
        cached = self._cached(key)
        if cached is not None:
            return cached
        self.sent += 1
        try:
            answer = self._sync.resolve(name, rdtype, search=False)
        except dns.exception.DNSException as exc:
            return self._store(key, _failure(name, rdtype, exc))
        return self._store(key, _answer(name, rdtype, answer))

    def _cached(self, key: tuple[str, str]) -> DnsAnswer | None:
        if self._cache is None:
            return None
        hit = self._cache.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def _store(self, key: tuple[str, str], answer: DnsAnswer) -> DnsAnswer:
        # failures are not cached: asking again may work; answers live for their TTL
        if self._cache is not None and answer.status.definitive:
            self._cache[key] = (time.monotonic() + max(answer.ttl, 1), answer)
        return answer


def _answer(name: str, rdtype: str, answer: dns.resolver.Answer) -> DnsAnswer:
    ttl = answer.rrset.ttl if answer.rrset is not None else 0
    cnames = tuple(
        rr.target.to_text(omit_final_dot=True)
        for rrset in answer.response.answer
        if rrset.rdtype == dns.rdatatype.CNAME
        for rr in rrset
    )
    records = tuple(_to_record(r) for r in answer)
    return DnsAnswer(name, rdtype, DnsStatus.OK, records, ttl, cnames=cnames)


def _failure(name: str, rdtype: str, exc: dns.exception.DNSException) -> DnsAnswer:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DnsAnswer(name, rdtype, DnsStatus.NXDOMAIN, ttl=60)
    if isinstance(exc, dns.resolver.NoAnswer):
        return DnsAnswer(name, rdtype, DnsStatus.NODATA, ttl=60)
    if isinstance(exc, dns.resolver.NoNameservers):
        errors = exc.kwargs.get("errors") or []
        text = "; ".join(f"{e[0]}: {e[-1]}" for e in errors)[:500]
        refused = "REFUSED" in text and "SERVFAIL" not in text
        return DnsAnswer(name, rdtype, DnsStatus.REFUSED if refused else DnsStatus.SERVFAIL,
                         detail=text)
    if isinstance(exc, dns.exception.Timeout):
        return DnsAnswer(name, rdtype, DnsStatus.TIMEOUT, detail="no answer in time")
    return DnsAnswer(name, rdtype, DnsStatus.SERVFAIL, detail=str(exc)[:500])
