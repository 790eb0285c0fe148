"""One DNS resolver wrapper over dnspython's async resolver, for routing and the probes.

A lookup gives a :class:`DnsAnswer` whose ``status`` keeps apart what must not be
confused: the name does not exist (NXDOMAIN), it exists without records of that
type (NODATA), the servers failed (SERVFAIL), refused (REFUSED), or did not answer
(TIMEOUT). Tools that treated a timeout as "no record" shipped real bugs.
Answers are cached for their TTL (dnspython's cache, one per resolver); the number
of queries in flight is bounded.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rcode
import dns.resolver

from deliver.errors import ConfigError
from deliver.units import parse_host_port

__all__ = ["DnsAnswer", "DnsStatus", "Resolver", "parse_nameserver"]


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
class DnsAnswer:
    name: str
    rdtype: str
    status: DnsStatus
    #: rdata objects of the answer (dnspython types), empty unless OK
    records: tuple[object, ...] = ()
    ttl: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is DnsStatus.OK


def parse_nameserver(value: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address (port 53 by default)."""
    try:
        return parse_host_port(value, 53)
    except ValueError as exc:
        raise ConfigError(f"nameserver {exc}") from None


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
        if cache:
            r.cache = dns.resolver.Cache()
        self._resolver = r
        self._limit = asyncio.Semaphore(concurrency)

    async def query(self, name: str, rdtype: str, *, tcp: bool = False) -> DnsAnswer:
        async with self._limit:
            try:
                answer = await self._resolver.resolve(name, rdtype, tcp=tcp, search=False)
            except dns.resolver.NXDOMAIN:
                return DnsAnswer(name, rdtype, DnsStatus.NXDOMAIN)
            except dns.resolver.NoAnswer:
                return DnsAnswer(name, rdtype, DnsStatus.NODATA)
            except dns.resolver.NoNameservers as exc:
                return DnsAnswer(name, rdtype, _failure_status(exc), detail=_errors(exc))
            except dns.exception.Timeout:
                return DnsAnswer(name, rdtype, DnsStatus.TIMEOUT, detail="no answer in time")
            except dns.exception.DNSException as exc:
                return DnsAnswer(name, rdtype, DnsStatus.SERVFAIL, detail=str(exc))
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        return DnsAnswer(name, rdtype, DnsStatus.OK, tuple(answer), ttl)


def _failure_status(exc: dns.resolver.NoNameservers) -> DnsStatus:
    text = _errors(exc)
    return DnsStatus.REFUSED if "REFUSED" in text and "SERVFAIL" not in text else DnsStatus.SERVFAIL


def _errors(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    return "; ".join(f"{e[0]}: {e[-1]}" for e in errors)[:500]
