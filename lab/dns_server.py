"""The lab's authoritative DNS server: dnslib's UDP and TCP servers answering from ZoneData.

Run as a process (the test fixtures and ``sokures lab up`` do)::

    python -m lab.dns_server --zones zones.json --listen 127.0.0.1 --port 5353
                             [--pidfile FILE] [--log-queries] [--allow-non-loopback]

Its stdout carries one line per event, for whoever started it:

    ready udp+tcp 127.0.0.1:5353    both sockets listen (with --port 0, on the port shown)
    reloaded 12 names               SIGHUP re-read the zone file
    reload-failed REASON            SIGHUP found a bad zone file; the previous data stays

Logs go to stderr: a line per reload, nothing per query unless ``--log-queries``.
SIGTERM or SIGINT stops it with exit code 0; exit code 2 means bad arguments or a bad zone
file, 1 that it could not listen. It binds loopback addresses only, unless told otherwise.

In a thread instead of a process (the tests use the process)::

    with LabDnsServer(zone, "127.0.0.1", 0) as server:
        ...  # server.port; server.reload(new_zone)

What it answers is :meth:`ServedZone.lookup`; on the wire: the AA bit on answers from the
data, RA clear (RFC 1035 §4.1.1); EDNS echoed with our payload size (RFC 6891 §6.1.1);
a UDP answer longer than 512 octets, or than the client's EDNS payload size (capped at
ours, 1232), is cut to header and question with TC set (RFC 1035 §4.2.1, RFC 2181 §9) and
the client retries over TCP, which serves it whole (RFC 7766).
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import errno
import ipaddress
import logging
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import dnslib
from dnslib.server import DNSHandler, DNSLogger, DNSServer

from deliver.errors import ConfigError
from lab.service import Service
from lab.zones import (
    CaaValue,
    MxValue,
    Record,
    SoaValue,
    TlsaValue,
    ZoneData,
    ZoneError,
    load_zone_file,
)

__all__ = [
    "LabDnsServer", "Lookup", "Outcome", "ResourceRecord", "ServedZone", "ZoneResolver",
    "build_reply", "main", "require_loopback",
]  # fmt: skip

log = logging.getLogger(__name__)

#: a CNAME chain longer than this is cut short (a loop ends as soon as a name repeats)
MAX_CNAME_CHAIN = 16
#: the UDP payload limit without EDNS (RFC 1035 §2.3.4)
CLASSIC_UDP_PAYLOAD = 512
#: the EDNS payload size we advertise and honour at most (RFC 6891 §6.2.5; DNS flag day 2020)
SERVER_UDP_PAYLOAD = 1232
#: idle TCP connections are closed after this long (RFC 7766 §6.2.3)
TCP_IDLE_SECONDS = 10.0
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


# --- answering: pure, no sockets -----------------------------------------------------


class Outcome(enum.Enum):
    """How the server responds; NO_RESPONSE means silence (the client times out)."""

    NOERROR = "NOERROR"
    NXDOMAIN = "NXDOMAIN"
    SERVFAIL = "SERVFAIL"
    REFUSED = "REFUSED"
    NO_RESPONSE = "NO_RESPONSE"


_OVERRIDE_OUTCOMES = {
    "timeout": Outcome.NO_RESPONSE,
    "servfail": Outcome.SERVFAIL,
    "refused": Outcome.REFUSED,
}


class ResourceRecord(NamedTuple):
    name: str
    record: Record


@dataclass(frozen=True)
class Lookup:
    """The response to one question: outcome, answer section, authority section."""

    outcome: Outcome
    answers: tuple[ResourceRecord, ...] = ()
    authority: tuple[ResourceRecord, ...] = ()

    @property
    def authoritative(self) -> bool:
        """The AA bit (RFC 1035 §4.1.1): set on answers from our own data."""
        return self.outcome in (Outcome.NOERROR, Outcome.NXDOMAIN)


def _parent(name: str) -> str | None:
    return None if not name else name.partition(".")[2]


class ServedZone:
    """A :class:`ZoneData` prepared for answering: which names exist, and each origin's SOA."""

    def __init__(self, zone: ZoneData) -> None:
        self.zone = zone
        served = {name: tuple(records) for name, records in zone.records.items()}
        for origin in zone.origins:
            if not any(record.type == "SOA" for record in served.get(origin, ())):
                served[origin] = (*served.get(origin, ()), zone.soa(origin))
        existing: set[str] = set()  # every owner and its ancestors, up to the root
        for name in (*zone.origins, *served):
            current: str | None = name
            while current is not None and current not in existing:
                existing.add(current)
                current = _parent(current)
        self._served = served
        self._existing = frozenset(existing)

    def lookup(self, qname: str, qtype: str) -> Lookup:
        """Answer a question as an authoritative server does (RFC 1034 §4.3.2).

        Answers come from the data, following CNAMEs while they stay inside our origins;
        NODATA (NOERROR, no answer) when the name exists without that type, empty
        non-terminals included (RFC 8020 §2); NXDOMAIN otherwise, which after a CNAME is
        about the last name (RFC 6604 §2). Negative answers carry the origin's SOA with its
        TTL capped by the SOA minimum (RFC 2308 §3). Type ANY returns every record. A name
        in an override list (its own or one a CNAME leads to) gets that override instead.
        """
        name, qtype = qname.rstrip(".").lower(), qtype.upper()
        if self.zone.origin_of(name) is None:
            return Lookup(Outcome.REFUSED)
        answers: list[ResourceRecord] = []
        for _ in range(MAX_CNAME_CHAIN):
            override = self._override(name, qtype)
            if override is not None:
                return Lookup(override)
            found = self._find(name)
            if found is None:
                return self._negative(Outcome.NXDOMAIN, name, answers)
            matching = [record for record in found if qtype in (record.type, "ANY")]
            if matching:
                answers += [ResourceRecord(name, record) for record in matching]
                return Lookup(Outcome.NOERROR, tuple(answers))
            cname = next((record for record in found if record.type == "CNAME"), None)
            if cname is None:
                return self._negative(Outcome.NOERROR, name, answers)
            answers.append(ResourceRecord(name, cname))
            name = str(cname.value).lower()
            if self.zone.origin_of(name) is None or any(a.name == name for a in answers):
                break
        return Lookup(Outcome.NOERROR, tuple(answers))

    def _override(self, name: str, qtype: str) -> Outcome | None:
        """The ``timeout``/``servfail``/``refused`` override for a question, if it meets one.

        Overrides spare the types the name holds records of (see :class:`ZoneData`).
        """
        for kind, outcome in _OVERRIDE_OUTCOMES.items():
            if name in getattr(self.zone, kind):
                held = self._served.get(name, ())
                if not any(r.type in (qtype, "CNAME") or qtype == "ANY" for r in held):
                    return outcome
        return None

    def _find(self, name: str) -> tuple[Record, ...] | None:
        """The records at ``name`` (possibly none), or None when the name does not exist.

        A name that does not exist is answered from ``*.<closest encloser>`` when that
        exists (RFC 4592 §3.3.1); a name that exists, even empty, never is.
        """
        if name in self._existing:
            return self._served.get(name, ())
        encloser = _parent(name)
        while encloser is not None and encloser not in self._existing:
            encloser = _parent(encloser)
        if encloser is None:
            return None
        source = f"*.{encloser}" if encloser else "*"
        return self._served.get(source, ()) if source in self._existing else None

    def _negative(self, outcome: Outcome, name: str, answers: list[ResourceRecord]) -> Lookup:
        origin = self.zone.origin_of(name)
        assert origin is not None  # only names inside an origin get here
        soa = self.zone.soa(origin)
        minimum = soa.data.minimum if isinstance(soa.data, SoaValue) else soa.ttl
        capped = Record("SOA", soa.value, min(soa.ttl, minimum))
        return Lookup(outcome, tuple(answers), (ResourceRecord(origin, capped),))


# --- the wire ------------------------------------------------------------------------


def _label(name: str) -> Any:
    """A dnslib name from a stored one (the root is ""); latin-1 undoes :func:`_qname`."""
    labels = tuple(part.encode("latin-1") for part in name.split(".")) if name else ()
    return dnslib.DNSLabel(labels)


def _qname(question: Any) -> str:
    """The question's name as text. Stored names are ASCII, so other octets never match
    (dnslib already refuses labels that are not UTF-8: those queries get FORMERR)."""
    return ".".join(label.decode("latin-1") for label in question.qname.label)


def _rdata(record: Record) -> Any:
    data = record.data
    if isinstance(data, MxValue):
        return dnslib.MX(_label(data.exchange), data.preference)
    if isinstance(data, SoaValue):
        times = (data.serial, data.refresh, data.retry, data.expire, data.minimum)
        return dnslib.SOA(_label(data.mname), _label(data.rname), times)
    if isinstance(data, CaaValue):
        return dnslib.CAA(data.flags, data.tag, data.value)
    if isinstance(data, TlsaValue):
        return dnslib.TLSA(data.usage, data.selector, data.matching_type, bytes.fromhex(data.data))
    if isinstance(data, tuple):
        return dnslib.TXT(list(data))  # TXT and SPF share the format (RFC 7208 §3.1)
    if record.type in ("A", "AAAA"):
        return (dnslib.A if record.type == "A" else dnslib.AAAA)(data)
    return getattr(dnslib, record.type)(_label(data))  # CNAME, PTR, NS


def _rr(entry: ResourceRecord) -> Any:
    record = entry.record
    rtype = getattr(dnslib.QTYPE, record.type)
    return dnslib.RR(_label(entry.name), rtype, ttl=record.ttl, rdata=_rdata(record))


def _edns(message: Any) -> Any | None:
    return next((rr for rr in message.ar if rr.rtype == dnslib.QTYPE.OPT), None)


def _udp_limit(request: Any) -> int:
    """The largest UDP reply the client takes: 512, or its EDNS size (RFC 6891 §6.2.3-5)."""
    opt = _edns(request)
    if opt is None:
        return CLASSIC_UDP_PAYLOAD
    return max(CLASSIC_UDP_PAYLOAD, min(int(opt.rclass), SERVER_UDP_PAYLOAD))


def build_reply(request: Any, served: ServedZone) -> Any | None:
    """The reply to a parsed query (a dnslib ``DNSRecord``), or None to stay silent."""
    header = request.header
    if header.qr:
        return None  # a response, not a query: answering could start a loop
    reply = dnslib.DNSRecord(
        dnslib.DNSHeader(id=header.id, bitmap=0, qr=1, opcode=header.opcode, rd=header.rd, ra=0),
        questions=list(request.questions),
    )
    opt = _edns(request)
    if opt is not None:
        reply.add_ar(dnslib.EDNS0(udp_len=SERVER_UDP_PAYLOAD))
    if header.opcode != dnslib.OPCODE.QUERY:
        reply.header.rcode = dnslib.RCODE.NOTIMP  # RFC 1035 §4.1.1
    elif len(request.questions) != 1:
        reply.header.rcode = dnslib.RCODE.FORMERR
    elif opt is not None and (opt.ttl >> 16) & 0xFF:
        # BADVERS: we speak EDNS version 0 only (RFC 6891 §6.1.3)
        reply.ar = [dnslib.EDNS0(udp_len=SERVER_UDP_PAYLOAD, ext_rcode=1)]
    elif request.q.qclass not in (dnslib.CLASS.IN, getattr(dnslib.CLASS, "*")):
        reply.header.rcode = dnslib.RCODE.REFUSED
    else:
        question = request.q
        result = served.lookup(_qname(question), dnslib.QTYPE[question.qtype])
        if result.outcome is Outcome.NO_RESPONSE:
            return None
        reply.header.aa = int(result.authoritative)
        reply.header.rcode = getattr(dnslib.RCODE, result.outcome.value)
        reply.add_answer(*(_rr(entry) for entry in result.answers))
        reply.add_auth(*(_rr(entry) for entry in result.authority))
    return reply


def _truncated(reply: Any) -> Any:
    """Header and question only, TC set: the client asks again over TCP (RFC 2181 §9)."""
    short = dnslib.DNSRecord(
        dnslib.DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap),
        questions=list(reply.questions),
        ar=[rr for rr in reply.ar if rr.rtype == dnslib.QTYPE.OPT],
    )
    short.header.tc = 1
    return short


def _format_error(data: bytes) -> bytes | None:
    """FORMERR for a query we cannot parse, if its header is there (RFC 1035 §4.1.1)."""
    if len(data) < 12 or data[2] & 0x80:  # too short, or a response: never answer those
        return None
    flags = 0x8000 | (data[2] & 0x78) << 8 | dnslib.RCODE.FORMERR
    return data[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


class ZoneResolver:
    """dnslib's resolver interface over a :class:`ServedZone`.

    :meth:`resolve` returns None for silence, which :class:`_QueryHandler` understands.
    A reload replaces ``served`` whole: one reference assignment, safe across threads.
    """

    def __init__(self, zone: ZoneData) -> None:
        self.served = ServedZone(zone)

    def resolve(self, request: Any, handler: Any) -> Any | None:
        return build_reply(request, self.served)


class _QueryHandler(DNSHandler):  # type: ignore[misc]
    """UDP: one datagram, one reply or none. TCP: length-prefixed queries until the client
    closes; several may come on one connection (RFC 7766 §6.2.1). Silence over TCP keeps
    the connection open, so the client times out as it would over UDP."""

    def handle(self) -> None:
        if self.server.socket_type == socket.SOCK_STREAM:
            self._serve_tcp()
            return
        data, sock = self.request
        reply = self._respond(data, "udp")
        if reply is not None:
            sock.sendto(reply, self.client_address)

    def _serve_tcp(self) -> None:
        connection = self.request
        connection.settimeout(TCP_IDLE_SECONDS)
        with contextlib.suppress(OSError):  # idle timeout, reset by the client
            while (data := _read_tcp_message(connection)) is not None:
                reply = self._respond(data, "tcp")
                if reply is not None:
                    connection.sendall(struct.pack("!H", len(reply)) + reply)

    def _respond(self, data: bytes, transport: str) -> bytes | None:
        try:
            request = dnslib.DNSRecord.parse(data)
        except Exception:  # whatever the bytes, a malformed query must not end the handler
            return _format_error(data)
        reply = self.server.resolver.resolve(request, self)
        self._log(request, reply, transport)
        if reply is None:
            return None
        packed = bytes(reply.pack())
        if transport == "udp" and len(packed) > _udp_limit(request):
            packed = bytes(_truncated(reply).pack())
        return packed

    def _log(self, request: Any, reply: Any | None, transport: str) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        outcome = "no response" if reply is None else dnslib.RCODE[reply.header.rcode]
        answers = 0 if reply is None else len(reply.rr)
        host, port = self.client_address[:2]
        question = request.q if request.questions else None
        asked = f"{question.qname} {dnslib.QTYPE[question.qtype]}" if question else "-"
        log.debug("%s %s:%s %s -> %s, %d answers", transport, host, port, asked, outcome, answers)


def _read_tcp_message(connection: socket.socket) -> bytes | None:
    """One length-prefixed message (RFC 1035 §4.2.2), or None when the client is done."""
    prefix = _read_exactly(connection, 2)
    if prefix is None:
        return None
    return _read_exactly(connection, struct.unpack("!H", prefix)[0])


def _read_exactly(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class _UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    """dnslib's UDP server class sets SO_REUSEADDR, which on Linux lets a second process
    bind the same UDP port and steal its queries; this one does not."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


# --- the server ----------------------------------------------------------------------

#: dnslib's logger prints every query; ours logs through :mod:`logging` instead
_SILENT = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)


def require_loopback(host: str) -> None:
    """Refuse a listen address that is not loopback: the lab is never served to a network."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"the listen address must be an IP address, got {host!r}") from None
    if not address.is_loopback:
        raise ConfigError(
            f"{host} is not a loopback address; the lab DNS server listens on loopback only "
            "(--allow-non-loopback to override)"
        )


def _bind_pair(resolver: ZoneResolver, host: str, port: int) -> list[Any]:
    """UDP and TCP servers on one port; with port 0, tried until a port is free for both."""
    for _ in range(1 if port else 20):
        udp = DNSServer(resolver, host, port, logger=_SILENT, handler=_QueryHandler,
                        server=_UdpServer)  # fmt: skip
        chosen = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, host, chosen, tcp=True, logger=_SILENT, handler=_QueryHandler)
        except OSError:
            udp.server.server_close()
            if port:
                raise
            continue
        return [udp, tcp]
    raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP")


class LabDnsServer(Service):
    """The server on ``host:port`` in background threads (port 0: a free one, see ``port``)."""

    def __init__(
        self,
        zone: ZoneData,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
    ) -> None:
        if not allow_non_loopback:
            require_loopback(host)
        self.host = host
        self.resolver = ZoneResolver(zone)
        self._requested_port = port
        self._servers: list[Any] = []
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The port both sockets listen on (the requested one until started)."""
        if not self._servers:
            return self._requested_port
        return int(self._servers[0].server.server_address[1])

    def start(self) -> None:
        """Bind both sockets (OSError when that fails) and serve in daemon threads."""
        self._servers = _bind_pair(self.resolver, self.host, self._requested_port)
        for server in self._servers:
            thread = threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"lab-dns-{server.server.socket_type.name.lower()}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving and close both sockets."""
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        for thread in self._threads:
            thread.join()
        self._servers, self._threads = [], []

    def reload(self, zone: ZoneData) -> None:
        """Serve ``zone`` from the next query on."""
        self.resolver.served = ServedZone(zone)


# --- the process ---------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab.dns_server", description="The lab's authoritative DNS server."
    )
    parser.add_argument("--zones", required=True, type=Path, help="zone file (JSON)")
    parser.add_argument("--listen", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="UDP and TCP port (0: any free one)")
    parser.add_argument("--pidfile", type=Path, help="write the process id here while running")
    parser.add_argument("--log-queries", action="store_true", help="log every query to stderr")
    parser.add_argument(
        "--allow-non-loopback", action="store_true", help="allow a non-loopback listen address"
    )
    return parser.parse_args(argv)


def _say(line: str) -> None:
    """A state line on stdout; a reader that went away must not stop the server."""
    with contextlib.suppress(OSError, ValueError):
        print(line, flush=True)


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reload(server: LabDnsServer, path: Path) -> None:
    """Re-read the zone file; a file that fails to load leaves the served data as it was."""
    try:
        zone = load_zone_file(path)
    except ZoneError as error:
        reason = " ".join(str(error).split())
        log.warning("reload failed, keeping the previous zones: %s", reason)
        _say(f"reload-failed {reason}")
        return
    server.reload(zone)
    log.info("reloaded %s: %d names", path, len(zone.records))
    _say(f"reloaded {len(zone.records)} names")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, re-reading the zone file on SIGHUP."""
    args = _parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="dns_server: %(message)s")
    if args.log_queries:
        log.setLevel(logging.DEBUG)
    try:
        if not args.allow_non_loopback:
            require_loopback(args.listen)
        zone = load_zone_file(args.zones)
    except ConfigError as error:
        log.error("%s", error)
        return EXIT_BAD_INPUT
    # Blocked before the server threads start, so they inherit the mask and every one of
    # these signals waits for sigwait() below, in this thread, at a safe point.
    watched = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    server = LabDnsServer(zone, args.listen, args.port, allow_non_loopback=True)
    try:
        server.start()
    except OSError as error:
        log.error("cannot listen on %s: %s", _endpoint(args.listen, args.port), error)
        return EXIT_FAILURE
    try:
        if args.pidfile:
            args.pidfile.write_text(f"{os.getpid()}\n", encoding="ascii")
        _say(f"ready udp+tcp {_endpoint(args.listen, server.port)}")
        while signal.sigwait(watched) == signal.SIGHUP:
            _reload(server, args.zones)
    finally:
        server.stop()
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
