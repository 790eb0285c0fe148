"""One DNS resolver wrapper for routing and the probes.

A lookup gives a :class:`DnsAnswer` whose ``status`` keeps apart what must not be
confused: the name does not exist (NXDOMAIN), it exists without records of that
type (NODATA), the servers failed (SERVFAIL), refused (REFUSED), or did not answer
(TIMEOUT). Tools that treated a timeout as "no record" shipped real bugs.

Records come back as small typed values (:class:`MxRecord`, :class:`TxtRecord`,
:class:`SoaRecord`, and ``str`` for A, AAAA, CNAME, PTR and NS), names without
their final dot. Answers are cached for their TTL, per resolver (no global state);
the number of queries in flight is bounded, and identical lookups in flight share one
query. ``query`` is async; ``query_sync`` serves libraries that look names up
synchronously (pyspf, dkimpy) from threads.

Messages go through :mod:`deliver.dnswire` (dnspython's codec was most of the cost) and
the sockets of :mod:`deliver.dnstransport`:
asynchronously over one connected UDP socket per nameserver and event loop, replies
matched to queries by a random 16-bit id and the question (anything else is ignored),
retransmitted after 1 s, then 2 s, ... until the timeout, moving on to the next
nameserver at each try; over TCP when a reply is truncated (RFC 7766). The decisions
of a lookup (:class:`_Resolution`) are pure and shared by the async and sync paths.
"""

from __future__ import annotations

import asyncio
import enum
import re
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from deliver.dnstransport import (
    Exchange,
    Server,
    UdpChannel,
    connected_udp,
    expire,
    receive_reply,
    server_for,
    tcp_exchange,
    tcp_exchange_sync,
)
from deliver.dnswire import (
    MxRecord,
    Record,
    Response,
    SoaRecord,
    TxtRecord,
    encode_query,
    question_of,
    rcode_text,
    rdtype_code,
)  # fmt: skip
from deliver.errors import ConfigError
from deliver.units import parse_host_port

__all__ = [
    "DnsAnswer", "DnsStatus", "MxRecord", "Record", "Resolver", "SoaRecord", "TxtRecord",
    "normalize_domain", "parse_nameserver",
]  # fmt: skip

#: the first try waits this long (or the whole timeout if shorter), each round twice as long
FIRST_TRY_SECONDS = 1.0
#: the UDP payload we offer (RFC 6891 §6.2.5; DNS flag day 2020)
UDP_PAYLOAD = 1232
#: the negative-caching TTL when a negative answer carries no SOA (RFC 2308 §5)
NEGATIVE_TTL_WITHOUT_SOA = 60
MAX_CNAME_CHAIN = 16
_CNAME = 5
_RCODE_STATUS = {2: "servfail", 5: "refused"}


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


_LDH_NAME = re.compile(
    r"(?=.{1,253}$)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?!-)[a-z0-9-]{0,62}[a-z0-9]", re.I
)


def normalize_domain(text: str) -> str:
    """A domain as typed by a person, as an A-label name without final dot.

    Raises ValueError with the reason when it is not a domain name."""
    name = text.strip().rstrip(".")
    if _LDH_NAME.fullmatch(name) and "--" not in name:
        return name.lower()  # plain ASCII letters, digits, hyphens: nothing to map
    import idna

    if not name:
        raise ValueError("empty domain name")
    if "@" in name:
        raise ValueError(f"{name!r} is an address, not a domain (give the part after @)")
    if "://" in name or "/" in name or " " in name:
        raise ValueError(f"{name!r} is not a domain name")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{name!r} is not a valid domain name: {exc}") from None
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253:
        raise ValueError(f"{name!r} is not a fully qualified domain name")
    return ascii_name.lower()


def parse_nameserver(value: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address (port 53 by default)."""
    try:
        return parse_host_port(value, 53)
    except ValueError as exc:
        raise ConfigError(f"nameserver {exc}") from None


def _system_nameservers() -> list[Server]:
    """The nameservers of /etc/resolv.conf, read by dnspython."""
    import dns.exception
    import dns.nameserver
    import dns.resolver

    try:
        system = dns.resolver.Resolver()
    except dns.exception.DNSException as exc:
        raise ConfigError(f"no nameserver given and none configured: {exc}") from None
    servers = []
    for entry in system.nameservers:
        if isinstance(entry, dns.nameserver.Do53Nameserver):
            servers.append(server_for(entry.address, entry.port))
        elif isinstance(entry, str):
            servers.append(server_for(entry, system.port))
    if not servers:
        raise ConfigError("no nameserver given and none usable in /etc/resolv.conf")
    return servers


# --- the decisions of one lookup: pure -----------------------------------------------


class _Resolution:
    """Which server to ask next and for how long, and what the outcomes mean; no I/O.

    Every server is tried in turn, waiting ``min(timeout, 1 s)`` for the first round and
    twice as long each round after (RFC 1035 §4.2.1), until the timeout; a server that
    answered with a failure is not asked again. The drivers (async and sync) loop on
    :meth:`next_try` and report each try's outcome.
    """

    def __init__(
        self, name: str, rdtype: str, servers: Sequence[Server], timeout: float, now: float
    ) -> None:
        self.name, self.rdtype, self.servers = name, rdtype, servers
        self.deadline = now + timeout
        self._wait = min(timeout, FIRST_TRY_SECONDS)
        self._turn = 0
        self._failed: dict[int, DnsAnswer] = {}

    def next_try(self, now: float) -> tuple[int, float] | None:
        """(server index, seconds to wait for its reply), or None when it is time to stop."""
        count = len(self.servers)
        while len(self._failed) < count and now < self.deadline:
            index = self._turn % count
            self._turn += 1
            wait = self._wait
            if self._turn % count == 0:
                self._wait *= 2
            if index not in self._failed:
                return index, min(wait, self.deadline - now)
        return None

    def failed(self, index: int, detail: str) -> None:
        """The server could not be asked, or its reply was unusable."""
        self._failed[index] = DnsAnswer(self.name, self.rdtype, DnsStatus.SERVFAIL, detail=detail)

    def answered(self, index: int, response: Response) -> DnsAnswer | None:
        """The answer to return, or None to go on with the next server."""
        answer = _interpret(self.name, self.rdtype, response)
        if answer.status.definitive:
            return answer
        detail = f"{self.servers[index].label}: {answer.detail}"
        self._failed[index] = DnsAnswer(self.name, self.rdtype, answer.status, detail=detail)
        return None

    def result(self) -> DnsAnswer:
        """The answer once :meth:`next_try` gave up: the failures, or a timeout."""
        if not self._failed:
            return DnsAnswer(self.name, self.rdtype, DnsStatus.TIMEOUT, detail="no answer in time")
        failures = list(self._failed.values())
        refused = all(f.status is DnsStatus.REFUSED for f in failures)
        status = DnsStatus.REFUSED if refused else DnsStatus.SERVFAIL
        detail = "; ".join(f.detail for f in failures)[:500]
        return DnsAnswer(self.name, self.rdtype, status, detail=detail)


def _interpret(name: str, rdtype: str, response: Response) -> DnsAnswer:
    """A response as an answer: follow the CNAME chain it holds, map the rcode."""
    rcode = response.rcode
    if rcode not in (0, 3):  # NOERROR, NXDOMAIN
        status = DnsStatus(_RCODE_STATUS.get(rcode, "servfail"))
        return DnsAnswer(name, rdtype, status, detail=rcode_text(rcode))
    qtype = rdtype_code(rdtype)
    current = response.question.name if response.question else name.rstrip(".")
    cnames: list[str] = []
    ttl = 2**31 - 1
    for _ in range(MAX_CNAME_CHAIN):
        rrset = response.rrset(current, qtype)
        if rrset is not None and rrset.records:
            ttl = min(ttl, rrset.ttl)
            return DnsAnswer(name, rdtype, DnsStatus.OK, rrset.records, ttl, cnames=tuple(cnames))
        alias = response.rrset(current, _CNAME)
        if alias is None or not alias.records:
            break
        current = str(alias.records[0])
        if any(current.lower() == seen.lower() for seen in cnames):
            detail = f"CNAME loop at {current}"
            return DnsAnswer(name, rdtype, DnsStatus.SERVFAIL, detail=detail, cnames=tuple(cnames))
        cnames.append(current)
        ttl = min(ttl, alias.ttl)
    # negative: NXDOMAIN (after a CNAME: about its target, RFC 6604 §2) or NODATA
    negative = response.negative_ttl
    ttl = min(ttl, NEGATIVE_TTL_WITHOUT_SOA if negative is None else negative)
    status = DnsStatus.NXDOMAIN if rcode == 3 else DnsStatus.NODATA
    return DnsAnswer(name, rdtype, status, ttl=ttl, cnames=tuple(cnames))


# --- the async path ------------------------------------------------------------------


class _LoopState:
    """What the resolver holds per event loop: asyncio objects belong to one loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, concurrency: int, servers: int) -> None:
        self.loop = loop
        self.limit = asyncio.Semaphore(concurrency)
        self.channels: list[UdpChannel | None] = [None] * servers
        self.inflight: dict[tuple[str, str], asyncio.Future[DnsAnswer]] = {}

    def close(self) -> None:
        for channel in self.channels:
            if channel is not None:
                channel.close()
        self.channels = [None] * len(self.channels)


def _close_states(states: dict[asyncio.AbstractEventLoop, _LoopState]) -> None:
    for state in list(states.values()):
        state.close()
    states.clear()


# --- the resolver --------------------------------------------------------------------


class Resolver:
    """Async lookups with statuses kept apart; one instance per run, no global state.

    Needs no running loop to be built, and works under several ``asyncio.run`` calls in
    turn (its sockets are opened per loop, on first use) and from several threads.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = 5.0,
        concurrency: int = 64,
        cache: bool = True,
    ) -> None:
        if nameservers:
            self._servers = [server_for(*parse_nameserver(n)) for n in nameservers]
        else:
            self._servers = _system_nameservers()
        self._timeout = timeout
        self._concurrency = concurrency
        self._cache: dict[tuple[str, str], tuple[float, DnsAnswer]] | None = {} if cache else None
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._lock = threading.Lock()
        self._closer = weakref.finalize(self, _close_states, self._states)
        #: lookups sent to the servers (cache hits, shared lookups and retransmissions
        #: not counted)
        self.sent = 0

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        key = (name.lower().rstrip("."), rdtype.upper())
        cached = self._cached(key)
        if cached is not None:
            return cached
        state = self._state()
        while (shared := state.inflight.get(key)) is not None:
            try:
                return await asyncio.shield(shared)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                # the lookup we shared was cancelled, not us: ask ourselves
        future = state.loop.create_future()
        state.inflight[key] = future
        try:
            async with state.limit:
                answer = await self._resolve(state, name, key[1])
        except BaseException:
            future.cancel()  # those sharing it ask again
            raise
        finally:
            del state.inflight[key]
        self._store(key, answer)
        future.set_result(answer)
        return answer

    def query_sync(self, name: str, rdtype: str) -> DnsAnswer:
        """The same lookup, blocking: for synchronous libraries running in a thread
        (safe from several threads at once, and while an event loop runs)."""
        key = (name.lower().rstrip("."), rdtype.upper())
        cached = self._cached(key)
        if cached is not None:
            return cached
        return self._store(key, self._resolve_sync(name, key[1]))

    def close(self) -> None:
        """Close the sockets (they are also closed when the resolver is collected)."""
        with self._lock:
            _close_states(self._states)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            with self._lock:
                for old in [old for old in self._states if old.is_closed()]:
                    self._states.pop(old).close()
                state = _LoopState(loop, self._concurrency, len(self._servers))
                self._states[loop] = state
        return state

    def _count(self) -> None:
        with self._lock:
            self.sent += 1

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

    def _prepare(self, name: str, rdtype: str) -> bytes | DnsAnswer:
        """The query (id 0, set per server), or the answer when it cannot be asked."""
        try:
            return encode_query(0, name, rdtype, edns_payload=UDP_PAYLOAD)
        except ValueError as exc:
            return DnsAnswer(name, rdtype, DnsStatus.SERVFAIL, detail=f"not asked: {exc}")

    async def _resolve(self, state: _LoopState, name: str, rdtype: str) -> DnsAnswer:
        query = self._prepare(name, rdtype)
        if isinstance(query, DnsAnswer):
            return query
        loop = state.loop
        resolution = _Resolution(name, rdtype, self._servers, self._timeout, loop.time())
        exchange = Exchange(query)
        ids: dict[int, tuple[UdpChannel, int]] = {}
        self._count()
        try:
            while (step := resolution.next_try(loop.time())) is not None:
                index, wait = step
                if index not in ids:
                    try:
                        channel = self._channel(state, index)
                    except OSError as exc:
                        resolution.failed(index, f"{self._servers[index].label}: {exc}")
                        continue
                    ids[index] = (channel, channel.register(exchange))
                channel, qid = ids[index]
                wire = qid.to_bytes(2, "big") + query[2:]
                error = channel.send(wire)
                if error is not None:
                    resolution.failed(index, f"{self._servers[index].label}: {error}")
                    continue
                answer = await self._await_reply(state, resolution, exchange, index, wait)
                if answer is not None:
                    return answer
            return resolution.result()
        finally:
            exchange.waiter = None
            for channel, qid in ids.values():
                channel.pending.pop(qid, None)

    async def _await_reply(
        self,
        state: _LoopState,
        resolution: _Resolution,
        exchange: Exchange,
        index: int,
        wait: float,
    ) -> DnsAnswer | None:
        """Wait for a reply from any server asked so far; the answer, or None to go on."""
        loop = state.loop
        waiter: asyncio.Future[tuple[int, Response | str | None]] = loop.create_future()
        exchange.waiter = waiter
        timer = loop.call_later(wait, expire, exchange, index)
        try:
            replied, outcome = await waiter
        finally:
            timer.cancel()
        if outcome is None:  # this try timed out: retransmit, or the next server
            return None
        if isinstance(outcome, Response) and outcome.truncated:
            # RFC 7766 §5: the full answer over TCP
            remaining = resolution.deadline - loop.time()
            wire = outcome.id.to_bytes(2, "big") + exchange.query[2:]
            outcome = await tcp_exchange(self._servers[replied], wire, exchange.question, remaining)
            if outcome is None:
                return None
        if isinstance(outcome, str):
            resolution.failed(replied, f"{self._servers[replied].label}: {outcome}")
            return None
        return resolution.answered(replied, outcome)

    def _channel(self, state: _LoopState, index: int) -> UdpChannel:
        channel = state.channels[index]
        if channel is None:
            channel = UdpChannel(state.loop, self._servers[index], index)
            state.channels[index] = channel
        return channel

    def _resolve_sync(self, name: str, rdtype: str) -> DnsAnswer:
        query = self._prepare(name, rdtype)
        if isinstance(query, DnsAnswer):
            return query
        resolution = _Resolution(name, rdtype, self._servers, self._timeout, time.monotonic())
        question = question_of(query)
        sockets: dict[int, tuple[socket.socket, bytes]] = {}
        self._count()
        try:
            while (step := resolution.next_try(time.monotonic())) is not None:
                index, wait = step
                server = self._servers[index]
                try:
                    if index not in sockets:
                        sockets[index] = (
                            connected_udp(server),
                            secrets.randbits(16).to_bytes(2, "big"),
                        )
                    sock, qid = sockets[index]
                    wire = qid + query[2:]
                    sock.send(wire)
                    outcome = receive_reply(sock, qid, question, time.monotonic() + wait)
                except OSError as exc:
                    outcome = f"no reply: {exc}"
                if isinstance(outcome, Response) and outcome.truncated:
                    remaining = resolution.deadline - time.monotonic()
                    outcome = tcp_exchange_sync(server, wire, question, remaining)
                if isinstance(outcome, str):
                    resolution.failed(index, f"{server.label}: {outcome}")
                elif outcome is not None and (answer := resolution.answered(index, outcome)):
                    return answer
            return resolution.result()
        finally:
            for sock, _ in sockets.values():
                sock.close()
