"""Where to deliver a recipient domain's mail, and which provider's shaping applies.

Direct delivery follows RFC 5321 §5.1: MX hosts in preference order (equal
preferences shuffled), the domain itself as an implicit MX when it has no MX
records, and a null MX (RFC 7505, a single ``MX 0 .``) as a permanent refusal.
A domain that does not exist is a permanent failure; a DNS failure (timeout,
SERVFAIL) is temporary. Through a relay every domain goes to the relay, and the
provider is known from the recipient domain when it is a consumer domain.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deliver.dns import DnsStatus, MxRecord, Resolver
from deliver.shaping import ShapingPolicy

__all__ = ["MxHost", "Route", "RouteFailure", "Router"]

_NEGATIVE_TTL = 300
_MIN_TTL = 30


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str
    preference: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Route:
    domain: str
    provider: str
    hosts: tuple[MxHost, ...]
    port: int
    relay: bool = False
    expires_at: float = 0.0

    @property
    def key(self) -> tuple[str, ...]:
        """Destinations sharing this key can share SMTP connections."""
        return (*tuple(h.name for h in self.hosts), str(self.port))


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """The domain cannot be reached now (``permanent`` False) or ever (True)."""

    domain: str
    permanent: bool
    code: int
    enhanced: str
    text: str
    provider: str | None = None
    expires_at: float = 0.0


class Router:
    def __init__(
        self,
        resolver: Resolver | None,
        policy: ShapingPolicy,
        *,
        port: int = 25,
        relay: tuple[str, int] | None = None,
        ipv6: bool = False,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if resolver is None and relay is None:
            raise ValueError("direct delivery needs a resolver")
        self.resolver = resolver
        self.policy = policy
        self.port = port
        self.relay = relay
        self.ipv6 = ipv6
        self.clock = clock
        self.rng = rng or random.Random()
        self._cache: dict[str, Route | RouteFailure] = {}

    async def route(self, domain: str) -> Route | RouteFailure:
        domain = domain.lower().rstrip(".")
        now = self.clock()
        cached = self._cache.get(domain)
        if cached is not None and cached.expires_at > now:
            return cached
        result = await self._route(domain, now)
        self._cache[domain] = result
        return result

    async def _route(self, domain: str, now: float) -> Route | RouteFailure:
        if self.relay is not None:
            provider = self.policy.provider_for_domain(domain) or "default"
            host = MxHost(self.relay[0], 0, (self.relay[0],))
            return Route(domain, provider, (host,), self.relay[1], True, now + 86400)
        assert self.resolver is not None
        mx = await self.resolver.query(domain, "MX")
        if mx.status is DnsStatus.NXDOMAIN:
            return self._fail(domain, now, True, 550, "5.1.2", f"domain {domain} does not exist")
        if not mx.status.definitive:
            return self._fail(
                domain,
                now,
                False,
                451,
                "4.4.3",
                f"MX lookup for {domain} failed: {mx.status.value} {mx.detail}".strip(),
            )
        if mx.status is DnsStatus.NODATA:
            # RFC 5321 §5.1: no MX records, the domain itself is the implicit MX
            targets = [(0, domain)]
        else:
            records = [(r.preference, r.exchange) for r in mx.records if isinstance(r, MxRecord)]
            real = [(p, h) for p, h in records if h not in ("", ".")]
            if not real:  # RFC 7505 §3: null MX, the domain accepts no mail
                return self._fail(
                    domain,
                    now,
                    True,
                    556,
                    "5.1.10",
                    f"{domain} does not accept mail (null MX, RFC 7505)",
                )
            targets = real
        return await self._hosts(domain, targets, now, ttl=max(mx.ttl, _MIN_TTL))

    async def _hosts(
        self, domain: str, targets: Sequence[tuple[int, str]], now: float, ttl: int
    ) -> Route | RouteFailure:
        ordered = sorted(targets, key=lambda t: (t[0], self.rng.random()))
        hosts: list[MxHost] = []
        temporary = []
        for preference, name in ordered:
            addresses, failed = await self._addresses(name)
            if addresses:
                hosts.append(MxHost(name, preference, addresses))
            elif failed:
                temporary.append(name)
        if not hosts:
            if temporary:
                return self._fail(
                    domain,
                    now,
                    False,
                    451,
                    "4.4.3",
                    f"address lookup failed for {', '.join(temporary)}",
                )
            return self._fail(
                domain, now, True, 550, "5.1.2", f"no address for the mail hosts of {domain}"
            )
        provider = self.policy.provider_for_domain(domain) or self.policy.provider_for_mx(
            [h.name for h in hosts]
        )
        return Route(domain, provider, tuple(hosts), self.port, False, now + ttl)

    async def _addresses(self, host: str) -> tuple[tuple[str, ...], bool]:
        """The host's addresses, and whether a lookup failed temporarily."""
        assert self.resolver is not None
        rdtypes = ("A", "AAAA") if self.ipv6 else ("A",)
        addresses: list[str] = []
        failed = False
        for rdtype in rdtypes:
            answer = await self.resolver.query(host, rdtype)
            if answer.ok:
                addresses.extend(answer.addresses())
            elif not answer.status.definitive:
                failed = True
        return tuple(addresses), failed

    def _fail(
        self, domain: str, now: float, permanent: bool, code: int, enhanced: str, text: str
    ) -> RouteFailure:
        ttl = _NEGATIVE_TTL if permanent else _MIN_TTL
        return RouteFailure(
            domain,
            permanent,
            code,
            enhanced,
            text,
            self.policy.provider_for_domain(domain) or "default",
            now + ttl,
        )
