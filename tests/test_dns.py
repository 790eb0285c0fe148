"""deliver.dnswire against dnspython, and deliver.dns.Resolver against real servers.

The codec is checked for equivalence with dnspython on generated messages (names with odd
octets and case, compressed RRsets of every type we type); the resolver asks the lab DNS
server process, and small UDP servers written here where a test needs a server that lies
(forged replies), stays silent or answers oddly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rrset
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deliver.dns import DnsAnswer, DnsStatus, MxRecord, Resolver, SoaRecord, TxtRecord
from deliver.dnswire import DnsWireError, Record, decode_response, encode_query
from lab.zones import Record as ZoneRecord
from lab.zones import ZoneData
from tests.servers.dns import DnsServerProcess

IN = dns.rdataclass.IN
#: reproducible examples (the same each run), no example database
SETTINGS: dict[str, Any] = {
    "deadline": None, "derandomize": True, "database": None,
    "suppress_health_check": [HealthCheck.too_slow],
}  # fmt: skip
BIG_TXT = [f"{index:02d}" + "b" * 198 for index in range(12)]  # ~2.4 KB: over 1232

# --- the codec against dnspython -----------------------------------------------------

_plain_label = st.from_regex(rb"[A-Za-z0-9_-]{1,12}", fullmatch=True)
_odd_label = st.binary(min_size=1, max_size=63)
labels = st.one_of(_plain_label, _plain_label, _odd_label)
names = st.lists(labels, min_size=0, max_size=6).filter(
    lambda parts: sum(len(p) + 1 for p in parts) + 1 <= 255
)


def to_name(parts: list[bytes]) -> dns.name.Name:
    return dns.name.Name([*parts, b""])


def text(name: dns.name.Name) -> str:
    written = name.to_text(omit_final_dot=True)
    return "" if written in (".", "@") else written


def txt_rdata(strings: list[bytes]) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.TXT.TXT(IN, dns.rdatatype.TXT, strings)


@st.composite
def rdatas(draw: st.DrawFn, rdtype: dns.rdatatype.RdataType) -> dns.rdata.Rdata:
    T = dns.rdatatype
    if rdtype == T.A:
        return dns.rdtypes.IN.A.A(IN, rdtype, str(draw(st.ip_addresses(v=4))))
    if rdtype == T.AAAA:
        return dns.rdtypes.IN.AAAA.AAAA(IN, rdtype, str(draw(st.ip_addresses(v=6))))
    if rdtype == T.MX:
        preference = draw(st.integers(0, 65535))
        return dns.rdtypes.ANY.MX.MX(IN, rdtype, preference, to_name(draw(names)))
    if rdtype == T.TXT:
        strings = draw(st.lists(st.binary(max_size=255), min_size=1, max_size=4))
        return txt_rdata(strings)
    if rdtype == T.SOA:
        numbers = draw(st.lists(st.integers(0, 2**32 - 1), min_size=5, max_size=5))
        mname, rname = to_name(draw(names)), to_name(draw(names))
        return dns.rdtypes.ANY.SOA.SOA(IN, rdtype, mname, rname, *numbers)
    kinds = {T.CNAME: dns.rdtypes.ANY.CNAME.CNAME, T.PTR: dns.rdtypes.ANY.PTR.PTR,
             T.NS: dns.rdtypes.ANY.NS.NS}  # fmt: skip
    return kinds[rdtype](IN, rdtype, to_name(draw(names)))


TYPES = [dns.rdatatype.RdataType.make(t) for t in
         ("A", "AAAA", "MX", "TXT", "CNAME", "PTR", "NS", "SOA")]  # fmt: skip


@st.composite
def rrsets(draw: st.DrawFn, owners: list[dns.name.Name]) -> dns.rrset.RRset:
    rdtype = draw(st.sampled_from(TYPES))
    rrset = dns.rrset.RRset(draw(st.sampled_from(owners)), IN, rdtype)
    for rdata in draw(st.lists(rdatas(rdtype), min_size=1, max_size=4)):
        rrset.add(rdata, draw(st.integers(0, 2**32 - 1)))
    return rrset


@st.composite
def responses(draw: st.DrawFn) -> dns.message.Message:
    qname = to_name(draw(names))
    # owners: the question's name in other cases, and others; equal ones are merged
    owners = [qname, to_name([p.swapcase() for p in qname.labels[:-1]]), to_name(draw(names))]
    query = dns.message.make_query(qname, draw(st.sampled_from(TYPES)), use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(draw(st.sampled_from([0, 2, 3, 5])))
    response.answer.extend(draw(st.lists(rrsets(owners), max_size=4)))
    response.authority.extend(draw(st.lists(rrsets(owners), max_size=2)))
    return response


def expected(rdata: dns.rdata.Rdata) -> Record:
    """dnspython's reading of a record, in our types (the oracle)."""
    T = dns.rdatatype
    if rdata.rdtype in (T.A, T.AAAA):
        return str(ipaddress.ip_address(rdata.address))
    if rdata.rdtype == T.MX:
        return MxRecord(rdata.preference, text(rdata.exchange))
    if rdata.rdtype == T.TXT:
        return TxtRecord(tuple(rdata.strings))
    if rdata.rdtype == T.SOA:
        r = rdata
        fields = (r.serial, r.refresh, r.retry, r.expire, r.minimum)
        return SoaRecord(text(r.mname), text(r.rname), *fields)
    return text(rdata.target)


def sections(message: dns.message.Message) -> list[list[tuple[str, int, int, list[Record]]]]:
    return [
        [(text(r.name), r.rdtype, r.ttl, [expected(rd) for rd in r]) for r in section]
        for section in (message.answer, message.authority)
    ]


@settings(max_examples=150, **SETTINGS)
@given(responses())
def test_decode_equals_dnspython(response: dns.message.Message) -> None:
    wire = response.to_wire()  # compressed
    theirs = dns.message.from_wire(wire)
    # an RRset is a set: dnspython drops records equal but for case when merging; skip those
    written = sum(len(r) for r in (*response.answer, *response.authority))
    assume(written == sum(len(r) for r in (*theirs.answer, *theirs.authority)))
    ours = decode_response(wire)
    got = [[(r.name, r.rdtype, r.ttl, list(r.records)) for r in s]
           for s in (ours.answer, ours.authority)]  # fmt: skip
    assert got == sections(theirs)
    assert (ours.id, ours.flags, ours.rcode) == (theirs.id, theirs.flags, theirs.rcode())
    assert ours.question is not None
    assert ours.question.name == text(theirs.question[0].name)
    assert ours.question.rdtype == theirs.question[0].rdtype
    assert ours.edns_payload == theirs.payload
    assert ours.authoritative == bool(theirs.flags & dns.flags.AA)


@settings(max_examples=100, **SETTINGS)
@given(names, st.sampled_from(TYPES), st.integers(0, 65535))
def test_encoded_query_reads_the_same_in_dnspython(
    parts: list[bytes], rdtype: dns.rdatatype.RdataType, qid: int
) -> None:
    name = to_name(parts)
    wire = encode_query(qid, name.to_text(), dns.rdatatype.to_text(rdtype))
    theirs = dns.message.from_wire(wire)
    assert theirs.id == qid and theirs.flags == dns.flags.RD
    assert theirs.question[0].name == name
    assert [p for p in theirs.question[0].name.labels] == [*parts, b""]  # case kept
    assert theirs.question[0].rdtype == rdtype and theirs.question[0].rdclass == IN
    assert (theirs.edns, theirs.payload, theirs.ednsflags) == (0, 1232, 0)


def test_encode_query_plain_names_and_limits() -> None:
    wire = encode_query(7, "Mail.Example.TEST.", "MX", edns_payload=None)
    assert wire == (struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0)
                    + b"\x04Mail\x07Example\x04TEST\x00\x00\x0f\x00\x01")  # fmt: skip
    assert dns.message.from_wire(encode_query(1, "bücher.example", "A")).question[0].name == (
        dns.name.from_text("xn--bcher-kva.example")
    )
    assert encode_query(1, "", "NS")[12:17] == b"\x00\x00\x02\x00\x01"
    for bad in ("a" * 64 + ".test", ".".join(["a" * 63] * 4), "a..test"):
        with pytest.raises(ValueError):
            encode_query(1, bad, "A")
    with pytest.raises(ValueError):
        encode_query(1, "example.test", "NOSUCHTYPE")


A_HEADER = b"\x00\x00\x01\x00\x01\x00\x00\x00\x05"


def _message(body: bytes, *, qdcount: int = 1, ancount: int = 0) -> bytes:
    return struct.pack("!6H", 1, 0x8180, qdcount, ancount, 0, 0) + body


@pytest.mark.parametrize(
    ("wire", "words"),
    [
        (_message(b"\xc0\x0c\x00\x01\x00\x01"), "loops"),  # points at itself
        (_message(b"\x01a\xc0\x0e\x00\x01\x00\x01"), "loops"),  # forward
        (_message(b"\x01a\xc0\xff\x00\x01\x00\x01"), "past the end"),
        (_message(b"\x01a\x00\x00\x01\x00\x01\xc0\x0c", ancount=1), "truncated"),
        (_message(b"\x41a\x00\x00\x01\x00\x01"), "label type"),
        (_message(b"\x03ab"), "cut short"),
        (b"\x00\x01\x81", "shorter than a header"),
        # an A record (root owner, TTL 5) of 3 octets
        (_message(b"\x00\x00\x01\x00\x01" + A_HEADER + b"\x00\x03abc", ancount=1), "not 4"),
    ],
)
def test_malformed_messages_raise_the_codec_error(wire: bytes, words: str) -> None:
    with pytest.raises(DnsWireError, match=words):
        decode_response(wire)


def test_chained_pointers_beyond_255_octets_are_refused() -> None:
    # each question name puts a 63-octet label before the previous name: the 4th is too long
    body, previous, ends = b"", 0, []
    for _ in range(4):
        offset = 12 + len(body)
        body += (
            b"\x3f" + b"x" * 63 + (struct.pack("!H", 0xC000 | previous) if previous else b"\x00")
        )
        body += b"\x00\x01\x00\x01"
        previous = offset
        ends.append(len(body))
    three = decode_response(_message(body[: ends[2]], qdcount=3))
    assert three.question is not None and three.question.name == "x" * 63
    with pytest.raises(DnsWireError, match="over 255"):
        decode_response(_message(body, qdcount=4))


@settings(max_examples=100, **SETTINGS)
@given(responses(), st.data())
def test_every_cut_or_garbled_message_raises_only_the_codec_error(
    response: dns.message.Message, data: st.DataObject
) -> None:
    wire = response.to_wire()
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(DnsWireError):
        decode_response(wire[:cut])
    position = data.draw(st.integers(0, len(wire) - 1))
    garbled = wire[:position] + bytes([data.draw(st.integers(0, 255))]) + wire[position + 1 :]
    with contextlib.suppress(DnsWireError):
        decode_response(garbled)


def test_rare_types_and_ipv4_mapped_addresses() -> None:
    query = dns.message.make_query("example.test", "CAA")
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("example.test.", 60, "IN", "CAA", '0 issue "ca.test"')
    )
    response.answer.append(dns.rrset.from_text("example.test.", 60, "IN", "AAAA", "::ffff:1.2.3.4"))
    ours = decode_response(response.to_wire())
    assert ours.answer[0].records == ('0 issue "ca.test"',)
    assert ours.answer[1].records == (str(ipaddress.IPv6Address("::ffff:1.2.3.4")),)


def test_negative_ttl_is_the_soa_minimum_capped_by_its_ttl() -> None:
    response = dns.message.make_response(dns.message.make_query("x.example.test", "A"))
    response.set_rcode(dns.rcode.NXDOMAIN)
    soa = "ns.example.test. host.example.test. 1 2 3 4 30"
    response.authority.append(dns.rrset.from_text("example.test.", 600, "IN", "SOA", soa))
    assert decode_response(response.to_wire()).negative_ttl == 30


# --- the resolver against real servers -----------------------------------------------

ZONE = ZoneData(
    ["example.test"],
    {
        "example.test": [
            ZoneRecord("SOA", ["ns.example.test", "host.example.test", 1, 3600, 600, 86400, 30]),
        ],
        "ok.example.test": [
            ZoneRecord("A", "192.0.2.1", ttl=120),
            ZoneRecord("AAAA", "2001:db8::1"),
            ZoneRecord("MX", [10, "mx.example.test"]),
            ZoneRecord("MX", [0, "."]),
            ZoneRecord("TXT", ["v=spf1 ", "-all"]),
        ],
        "www.example.test": [ZoneRecord("CNAME", "Alias.example.test", ttl=60)],
        "alias.example.test": [ZoneRecord("CNAME", "ok.example.test")],
        "dangling.example.test": [ZoneRecord("CNAME", "missing.example.test")],
        "big.example.test": [ZoneRecord("TXT", text) for text in BIG_TXT],
    },
    timeout=["slow.example.test"],
    servfail=["broken.example.test"],
    refused=["closed.example.test"],
)


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServerProcess]:
    with DnsServerProcess(ZONE) as running:
        yield running


def resolver(*nameservers: str, timeout: float = 2.0, cache: bool = True) -> Resolver:
    return Resolver(nameservers, timeout=timeout, cache=cache)


def test_each_status(server: DnsServerProcess) -> None:
    ask = resolver(server.nameserver, timeout=0.6)

    async def main() -> list[DnsAnswer]:
        questions = [("ok.example.test", "A"), ("nowhere.example.test", "A"),
                     ("ok.example.test", "CAA"), ("broken.example.test", "A"),
                     ("closed.example.test", "A"), ("slow.example.test", "A")]  # fmt: skip
        return await asyncio.gather(*(ask.query(n, t) for n, t in questions))

    started = time.monotonic()
    ok, nxdomain, nodata, servfail, refused, timeout = asyncio.run(main())
    assert time.monotonic() - started < 2.0
    assert (ok.status, ok.records, ok.ttl) == (DnsStatus.OK, ("192.0.2.1",), 120)
    assert (nxdomain.status, nxdomain.ttl) == (DnsStatus.NXDOMAIN, 30)  # the SOA minimum
    assert (nodata.status, nodata.ttl) == (DnsStatus.NODATA, 30)
    assert servfail.status is DnsStatus.SERVFAIL and "SERVFAIL" in servfail.detail
    assert refused.status is DnsStatus.REFUSED and server.nameserver in refused.detail
    assert timeout.status is DnsStatus.TIMEOUT
    assert [a.status.definitive for a in (ok, nxdomain, nodata, servfail, refused, timeout)] == [
        True, True, True, False, False, False]  # fmt: skip


def test_typed_records_and_the_sync_path(server: DnsServerProcess) -> None:
    ask = resolver(server.nameserver, cache=False)
    mx = ask.query_sync("OK.example.test.", "MX")
    assert set(mx.records) == {MxRecord(10, "mx.example.test"), MxRecord(0, "")}
    txt = asyncio.run(ask.query("ok.example.test", "TXT"))
    assert txt.records == (TxtRecord((b"v=spf1 ", b"-all")),) and txt.texts() == ["v=spf1 -all"]
    assert ask.query_sync("ok.example.test", "AAAA").addresses() == ["2001:db8::1"]
    soa = ask.query_sync("example.test", "SOA").records[0]
    assert isinstance(soa, SoaRecord) and (soa.mname, soa.minimum) == ("ns.example.test", 30)
    for status in (DnsStatus.SERVFAIL, DnsStatus.REFUSED):
        name = "broken" if status is DnsStatus.SERVFAIL else "closed"
        assert ask.query_sync(f"{name}.example.test", "TXT").status is status
    bad = ask.query_sync("a" * 64 + ".example.test", "A")
    assert bad.status is DnsStatus.SERVFAIL and "63" in bad.detail


def test_cname_chains(server: DnsServerProcess) -> None:
    ask = resolver(server.nameserver)

    async def main() -> tuple[DnsAnswer, DnsAnswer, DnsAnswer]:
        return (await ask.query("www.example.test", "A"),
                await ask.query("dangling.example.test", "TXT"),
                await ask.query("www.example.test", "CNAME"))  # fmt: skip

    chained, dangling, itself = asyncio.run(main())
    assert chained.records == ("192.0.2.1",)
    assert chained.cnames == ("Alias.example.test", "ok.example.test")  # case as published
    assert chained.ttl == 60  # the smallest along the chain
    assert dangling.status is DnsStatus.NXDOMAIN
    assert dangling.cnames == ("missing.example.test",)
    assert itself.records == ("Alias.example.test",) and itself.cnames == ()
    assert ask.query_sync("www.example.test", "A") == chained  # from the cache


def test_truncated_answers_are_asked_again_over_tcp(server: DnsServerProcess) -> None:
    query = dns.message.make_query("big.example.test", "TXT", use_edns=0, payload=1232)
    over_udp = dns.query.udp(query, server.host, port=server.port, timeout=2)
    assert over_udp.flags & dns.flags.TC and not over_udp.answer  # the premise
    ask = resolver(server.nameserver, cache=False)
    assert sorted(asyncio.run(ask.query("big.example.test", "TXT")).texts()) == sorted(BIG_TXT)
    assert sorted(ask.query_sync("big.example.test", "TXT").texts()) == sorted(BIG_TXT)
    assert ask.sent == 2


def test_cache_hits_are_not_sent_and_failures_are_not_cached(server: DnsServerProcess) -> None:
    ask = resolver(server.nameserver)

    async def main() -> None:
        for _ in range(3):
            assert (await ask.query("ok.example.test", "A")).ok
            assert (await ask.query("OK.example.test.", "a")).ok
            assert (await ask.query("nowhere.example.test", "A")).status is DnsStatus.NXDOMAIN
            assert (await ask.query("broken.example.test", "A")).status is DnsStatus.SERVFAIL

    asyncio.run(main())
    assert ask.sent == 1 + 1 + 3
    uncached = resolver(server.nameserver, cache=False)
    for _ in range(2):
        uncached.query_sync("ok.example.test", "A")
    assert uncached.sent == 2


def test_identical_lookups_in_flight_share_one_query(server: DnsServerProcess) -> None:
    ask = resolver(server.nameserver, cache=False)

    async def main() -> list[DnsAnswer]:
        same = [ask.query("ok.example.test", "MX") for _ in range(20)]
        return await asyncio.gather(*same, ask.query("ok.example.test", "A"))

    *answers, other = asyncio.run(main())
    assert ask.sent == 2
    assert all(a == answers[0] and a.ok for a in answers) and other.ok


def test_a_cancelled_lookup_does_not_fail_those_sharing_it(server: DnsServerProcess) -> None:
    ask = resolver(server.nameserver, cache=False)

    async def main() -> DnsAnswer:
        first = asyncio.ensure_future(ask.query("ok.example.test", "TXT"))
        await asyncio.sleep(0)  # first is in flight
        second = asyncio.ensure_future(ask.query("ok.example.test", "TXT"))
        await asyncio.sleep(0)
        first.cancel()
        return await second

    assert asyncio.run(main()).ok


def test_sync_lookups_from_threads_while_the_loop_runs(server: DnsServerProcess) -> None:
    ask = resolver(server.nameserver, cache=False)
    names = [("ok.example.test", "A"), ("www.example.test", "A"), ("nowhere.example.test", "A"),
             ("big.example.test", "TXT")]  # fmt: skip

    async def main() -> list[DnsStatus]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(4) as pool:
            threaded = [loop.run_in_executor(pool, ask.query_sync, n, t) for n, t in names * 10]
            direct = [ask.query(n, t) for n, t in names * 10]
            answers = await asyncio.gather(*threaded, *direct)
        return [a.status for a in answers]

    statuses = asyncio.run(main())
    expected_statuses = [DnsStatus.OK, DnsStatus.OK, DnsStatus.NXDOMAIN, DnsStatus.OK] * 20
    assert statuses == expected_statuses


def test_one_resolver_serves_several_event_loops(server: DnsServerProcess) -> None:
    ask = resolver(server.nameserver, cache=False)  # built outside any loop
    for _ in range(3):
        assert asyncio.run(ask.query("ok.example.test", "A")).ok
    results: list[bool] = []
    thread = threading.Thread(
        target=lambda: results.append(asyncio.run(ask.query("ok.example.test", "A")).ok)
    )
    thread.start()
    thread.join()
    assert results == [True] and ask.sent == 4
    ask.close()


class UdpServer:
    """A UDP server on loopback in a thread: ``handle(query)`` gives the datagrams to send
    back (none: silence)."""

    def __init__(self, handle: Callable[[bytes], list[bytes]]) -> None:
        self.handle = handle
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.nameserver = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> UdpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.queries += 1
            for reply in self.handle(data):
                self.sock.sendto(reply, peer)


def forward(server: DnsServerProcess, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
        upstream.settimeout(2)
        upstream.sendto(data, (server.host, server.port))
        return upstream.recv(65535)


def forged(query: bytes, *, other_id: bool = False, other_name: bool = False) -> bytes:
    """A plausible reply that is not the one asked for: A 6.6.6.6."""
    message = dns.message.from_wire(query)
    if other_id:
        message.id ^= 0x5A5A
    if other_name:
        message.question[0].name = dns.name.from_text("evil.example.test")
    reply = dns.message.make_response(message)
    name = message.question[0].name
    reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "6.6.6.6"))
    return reply.to_wire()


def test_replies_with_another_id_or_question_are_ignored(server: DnsServerProcess) -> None:
    def lie_first(query: bytes) -> list[bytes]:
        return [forged(query, other_id=True), forged(query, other_name=True), b"\x00" * 5,
                forward(server, query)]  # fmt: skip

    with UdpServer(lie_first) as liar:
        ask = resolver(liar.nameserver, cache=False)
        assert asyncio.run(ask.query("ok.example.test", "A")).records == ("192.0.2.1",)
        assert ask.query_sync("ok.example.test", "A").records == ("192.0.2.1",)


def test_a_silent_first_nameserver_is_passed_over(server: DnsServerProcess) -> None:
    with UdpServer(lambda query: []) as silent:
        ask = resolver(silent.nameserver, server.nameserver, timeout=3.0)
        started = time.monotonic()
        assert asyncio.run(ask.query("ok.example.test", "A")).ok
        assert ask.query_sync("ok.example.test", "MX").ok
        assert time.monotonic() - started < 2.8  # a second per try on the silent one
        assert silent.queries == 2


def test_a_closed_port_fails_over_at_once(server: DnsServerProcess) -> None:
    with UdpServer(lambda query: []) as closed:
        pass  # its port is closed now: the kernel answers port unreachable
    ask = resolver(closed.nameserver, server.nameserver, timeout=3.0)
    started = time.monotonic()
    assert asyncio.run(ask.query("ok.example.test", "A")).ok
    assert ask.query_sync("ok.example.test", "TXT").ok
    assert time.monotonic() - started < 1.0
    only = resolver(closed.nameserver, timeout=3.0)
    failed = asyncio.run(only.query("ok.example.test", "A"))
    assert failed.status is DnsStatus.SERVFAIL and "refused" in failed.detail.lower()


def test_other_rcodes_and_malformed_replies_are_failures() -> None:
    def notimp(query: bytes) -> list[bytes]:
        reply = dns.message.make_response(dns.message.from_wire(query))
        reply.set_rcode(dns.rcode.NOTIMP)
        return [reply.to_wire()]

    def malformed(query: bytes) -> list[bytes]:
        return [forged(query)[:-3]]  # id and question match, the answer is cut

    for handle, words in ((notimp, "NOTIMP"), (malformed, "malformed")):
        with UdpServer(handle) as odd:
            answer = asyncio.run(resolver(odd.nameserver).query("ok.example.test", "A"))
            assert answer.status is DnsStatus.SERVFAIL and words in answer.detail


def test_a_lost_query_is_sent_again(server: DnsServerProcess) -> None:
    def drop_first_of_each(query: bytes) -> list[bytes]:
        return [] if lossy.queries % 2 == 1 else [forward(server, query)]

    with UdpServer(drop_first_of_each) as lossy:
        ask = resolver(lossy.nameserver, timeout=3.0, cache=False)
        started = time.monotonic()
        assert asyncio.run(ask.query("ok.example.test", "A")).ok
        assert 0.9 < time.monotonic() - started < 2.0  # after the first try's second
        assert ask.query_sync("ok.example.test", "A").ok
        assert lossy.queries == 4 and ask.sent == 2  # retransmissions are not counted
