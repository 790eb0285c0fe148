"""A small DNS message codec: queries out, responses in (RFC 1035 §4), nothing else.

Pure and fast: no sockets, no global state. :func:`encode_query` builds a recursive query
with an EDNS0 OPT record; :func:`decode_response` reads a response into :class:`Response`,
whose answer and authority sections are RRsets (records of one owner, type and class,
merged wherever they stand, TTL the smallest of theirs) holding typed records:

=========================  ===========================================================
A, AAAA                    ``str``: the address as :mod:`ipaddress` writes it
CNAME, PTR, NS, DNAME      ``str``: the target, without the final dot ("" is the root)
MX                         :class:`MxRecord`
TXT, SPF                   :class:`TxtRecord` (the character-strings as octets)
SOA                        :class:`SoaRecord`
anything else              ``str``: its presentation format (dnspython's, RFC 3597's
                           ``\\# len hex`` for types it does not know)
=========================  ===========================================================

Names are text as dnspython writes them: labels joined by dots, no final dot, case kept as
sent (compare them case-insensitively, RFC 4343), octets outside printable ASCII as
``\\DDD`` and ``"().;\\@$`` escaped. A malformed message raises :class:`DnsWireError`.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "RCODES",
    "RDTYPES",
    "DnsWireError",
    "MxRecord",
    "Question",
    "RRset",
    "Record",
    "Response",
    "SoaRecord",
    "TxtRecord",
    "decode_response",
    "encode_query",
    "is_reply",
    "question_of",
    "rcode_text",
    "rdtype_code",
]


class DnsWireError(ValueError):
    """A message that is not well-formed DNS: truncated, a bad compression pointer, ..."""


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


#: A/AAAA addresses, CNAME/PTR/NS targets and rare types are plain strings
Record = str | MxRecord | TxtRecord | SoaRecord

#: type codes of the types we ask for (others: dnspython's table)
RDTYPES = {
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
    "SRV": 33, "DNAME": 39, "OPT": 41, "DS": 43, "TLSA": 52, "SVCB": 64, "HTTPS": 65,
    "SPF": 99, "ANY": 255, "CAA": 257,
}  # fmt: skip
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
CLASS_IN = 1
_OPT, _SOA = 41, 6
#: flag bits of the header's second word (RFC 1035 §4.1.1)
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
MAX_NAME_OCTETS = 255  # RFC 1035 §2.3.4
MAX_LABEL_OCTETS = 63
MAX_POINTER_HOPS = 16


def rdtype_code(rdtype: str | int) -> int:
    """The numeric type for ``"MX"``, ``"TYPE65280"`` or a number; ValueError if unknown."""
    if isinstance(rdtype, int):
        if not 0 <= rdtype <= 0xFFFF:
            raise ValueError(f"record type {rdtype} is out of range")
        return rdtype
    code = RDTYPES.get(rdtype.upper())
    if code is not None:
        return code
    import dns.exception
    import dns.rdatatype

    try:
        return int(dns.rdatatype.from_text(rdtype))
    except dns.exception.DNSException:
        raise ValueError(f"unknown record type {rdtype!r}") from None


def rcode_text(rcode: int) -> str:
    """``NXDOMAIN`` for 3, ``BADVERS`` for 16, ``RCODE42`` for what has no name."""
    if rcode in RCODES:
        return RCODES[rcode]
    import dns.rcode

    try:
        return str(dns.rcode.to_text(dns.rcode.Rcode.make(rcode)))
    except ValueError:
        return f"RCODE{rcode}"


# --- queries -------------------------------------------------------------------------

_HEADER = struct.Struct("!HHHHHH")


def encode_query(
    qid: int, name: str, rdtype: str | int, *, edns_payload: int | None = 1232
) -> bytes:
    """A query with RD set and, unless ``edns_payload`` is None, an EDNS0 OPT record
    offering that UDP payload size (RFC 6891 §6.2.5; 1232 since DNS flag day 2020).

    ``name`` is text, with or without the final dot: A-labels as given, U-labels turned
    into A-labels (IDNA 2008 with UTS #46), ``\\DDD`` escapes understood. ValueError for a
    label over 63 octets, a name over 255, an empty label or an unknown type.
    """
    if not 0 <= qid <= 0xFFFF:
        raise ValueError(f"query id {qid} is not a 16-bit number")
    question = encode_name(name) + struct.pack("!HH", rdtype_code(rdtype), CLASS_IN)
    if edns_payload is None:
        return _HEADER.pack(qid, RD, 1, 0, 0, 0) + question
    # OPT: root owner, class = payload size, TTL = extended rcode/version/flags, no data
    opt = struct.pack("!BHHIH", 0, _OPT, edns_payload, 0, 0)
    return _HEADER.pack(qid, RD, 1, 0, 0, 1) + question + opt


def encode_name(name: str) -> bytes:
    """A name in wire format, uncompressed (see :func:`encode_query` for the text)."""
    text = name[:-1] if name.endswith(".") and not name.endswith("\\.") else name
    if not text:
        return b"\x00"
    if not text.isascii() or "\\" in text:
        return _encode_name_slowly(name)
    wire = bytearray()
    for label in text.encode("ascii").split(b"."):
        if not label:
            raise ValueError(f"name {name!r} has an empty label")
        if len(label) > MAX_LABEL_OCTETS:
            raise ValueError(f"name {name!r} has a label over 63 octets (RFC 1035 §2.3.4)")
        wire.append(len(label))
        wire += label
    wire.append(0)
    if len(wire) > MAX_NAME_OCTETS:
        raise ValueError(f"name {name!r} is over 255 octets (RFC 1035 §2.3.4)")
    return bytes(wire)


def _encode_name_slowly(name: str) -> bytes:
    """Escapes and internationalized labels, through dnspython (rare)."""
    import dns.exception
    import dns.name

    try:
        absolute = name if name.endswith(".") else name + "."
        parsed = dns.name.from_text(absolute, idna_codec=dns.name.IDNA_2008_Practical)
        wire = parsed.to_wire()
        assert wire is not None  # None only when writing to a file
        return wire
    except (dns.exception.DNSException, UnicodeError) as error:
        raise ValueError(f"name {name!r}: {error}") from None


def question_of(query: bytes) -> bytes:
    """The question section of an uncompressed query, its name lower-cased: what a reply
    must repeat (see :func:`is_reply`)."""
    pos = 12
    while query[pos]:
        pos += 1 + query[pos]
    name = query[12 : pos + 1]
    return name.lower() + query[pos + 1 : pos + 5]


def is_reply(data: bytes, qid: bytes, question: bytes) -> bool:
    """Whether a message answers our query: a response (QR) with our 2-octet id and our
    question (from :func:`question_of`), the name compared case-insensitively (RFC 4343,
    octets length-prefixed so lower-casing them all is safe). Else: late, or forged."""
    if len(data) < 12 or data[:2] != qid or not data[2] & 0x80 or data[4:6] != b"\x00\x01":
        return False
    end = 12 + len(question) - 4
    return data[12:end].lower() == question[:-4] and data[end : end + 4] == question[-4:]


# --- responses -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    rdtype: int
    rdclass: int


@dataclass(frozen=True, slots=True)
class RRset:
    """The records of one owner name, type and class; ``ttl`` is the smallest of theirs."""

    name: str
    rdtype: int
    rdclass: int
    ttl: int
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class Response:
    id: int
    #: the header's flag word (QR, opcode, AA, TC, RD, RA, ...; the low 4 bits are rcode)
    flags: int
    #: with the OPT record's extended bits (RFC 6891 §6.1.3)
    rcode: int
    question: Question | None
    answer: tuple[RRset, ...]
    authority: tuple[RRset, ...]
    #: the server's EDNS UDP payload size, None without OPT
    edns_payload: int | None = None

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)

    @property
    def authoritative(self) -> bool:
        return bool(self.flags & AA)

    def rrset(self, name: str, rdtype: int) -> RRset | None:
        """The answer RRset of ``name`` (case-insensitive) and type, class IN."""
        wanted = (name.lower(), rdtype, CLASS_IN)
        for rrset in self.answer:
            if (rrset.name.lower(), rrset.rdtype, rrset.rdclass) == wanted:
                return rrset
        return None

    @property
    def negative_ttl(self) -> int | None:
        """How long a negative answer may be cached: the authority SOA's TTL capped by its
        minimum field (RFC 2308 §5); None without an SOA."""
        for rrset in self.authority:
            if rrset.rdtype == _SOA and rrset.records:
                soa = rrset.records[0]
                if isinstance(soa, SoaRecord):
                    return min(rrset.ttl, soa.minimum)
        return None


_RR = struct.Struct("!HHIH")
_QTAIL = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_SOA_TAIL = struct.Struct("!IIIII")
_SAFE_OCTETS = bytes(c for c in range(0x21, 0x7F) if c not in b'"().;\\@$')


def decode_response(data: bytes) -> Response:
    """Read a response; :class:`DnsWireError` for anything malformed (never IndexError).

    Answer and authority are decoded; the additional section is only walked, for the OPT
    record. Octets after the last record are ignored.
    """
    try:
        return _decode(data)
    except struct.error as error:  # a fixed-size field cut short
        raise DnsWireError(f"message truncated: {error}") from None


def _decode(data: bytes) -> Response:
    if len(data) < 12:
        raise DnsWireError(f"message of {len(data)} octets, shorter than a header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    memo: dict[int, str] = {}
    pos, question = 12, None
    for _ in range(qdcount):
        name, pos = _read_name(data, pos, memo)
        rdtype, rdclass = _QTAIL.unpack_from(data, pos)
        pos += 4
        if question is None:
            question = Question(name, rdtype, rdclass)
    answer, pos = _read_section(data, pos, ancount, memo)
    authority, pos = _read_section(data, pos, nscount, memo)
    rcode, payload = flags & 0xF, None
    for _ in range(arcount):
        pos = _skip_name(data, pos)
        rdtype, rdclass, ttl, rdlength = _RR.unpack_from(data, pos)
        pos += 10 + rdlength
        if pos > len(data):
            raise DnsWireError("additional record runs past the end of the message")
        if rdtype == _OPT:
            rcode |= (ttl >> 24) << 4  # the upper 8 bits of the 12-bit rcode
            payload = rdclass
    return Response(qid, flags, rcode, question, answer, authority, payload)


def _read_section(
    data: bytes, pos: int, count: int, memo: dict[int, str]
) -> tuple[tuple[RRset, ...], int]:
    if not count:
        return (), pos
    size = len(data)
    values: dict[tuple[str, int, int], list[Record]] = {}
    heads: dict[tuple[str, int, int], tuple[str, int]] = {}  # the first owner spelling, TTL
    for _ in range(count):
        name, pos = _read_name(data, pos, memo)
        rdtype, rdclass, ttl, rdlength = _RR.unpack_from(data, pos)
        start = pos + 10
        pos = start + rdlength
        if pos > size:
            raise DnsWireError(f"record data at offset {start} runs past the end")
        if rdclass == CLASS_IN and rdtype in _DECODERS:
            value = _DECODERS[rdtype](data, start, pos, memo)
        else:
            value = _generic(data, start, rdlength, rdtype, rdclass)
        if ttl > 0x7FFFFFFF:  # RFC 2181 §8: a TTL with the top bit set counts as 0
            ttl = 0
        key = (name.lower(), rdtype, rdclass)
        group = values.get(key)
        if group is None:
            values[key] = [value]
            heads[key] = (name, ttl)
        else:
            group.append(value)
            if ttl < heads[key][1]:
                heads[key] = (heads[key][0], ttl)
    rrsets = []
    for key, group in values.items():
        records = tuple(group) if len(group) == 1 else tuple(dict.fromkeys(group))
        name, ttl = heads[key]
        rrsets.append(RRset(name, key[1], key[2], ttl, records))  # an RRset is a set
    return tuple(rrsets), pos


def _read_name(data: bytes, pos: int, memo: dict[int, str]) -> tuple[str, int]:
    """The name at ``pos`` as text, and the offset after it (RFC 1035 §4.1.4).

    Each compression pointer must point before the name part that holds it, and the
    target may not run into that part: so a pointer loop cannot happen, and a forward or
    out-of-range pointer is an error, as in dnspython.
    """
    start = pos
    if pos >= len(data):
        raise DnsWireError(f"name at offset {pos} starts past the end of the message")
    first = data[pos]
    if first >= 0xC0 and pos + 1 < len(data):  # a name that is only a pointer: often seen
        known = memo.get(((first & 0x3F) << 8) | data[pos + 1])
        if known is not None:
            return known, pos + 2
    labels: list[bytes] = []
    end = len(data)  # reads must stay before this
    after = -1  # where the name ends in the message, once a pointer was followed
    octets, hops, part = 1, 0, pos
    while True:
        if pos >= end:
            raise DnsWireError(f"name at offset {start} is cut short")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length < 0x40:
            pos += 1 + length
            if pos > end:
                raise DnsWireError(f"name at offset {start} is cut short")
            labels.append(data[pos - length : pos])
            octets += 1 + length
            if octets > MAX_NAME_OCTETS:
                raise DnsWireError(f"name at offset {start} is over 255 octets")
        elif length >= 0xC0:
            if pos + 1 >= end:
                raise DnsWireError(f"name at offset {start} is cut short")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= len(data):
                raise DnsWireError(
                    f"compression pointer at offset {pos} points past the end ({target})"
                )
            if target >= part:
                raise DnsWireError(
                    f"compression pointer at offset {pos} points forward or loops ({target})"
                )
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise DnsWireError(f"name at offset {start} has too many compression pointers")
            if after < 0:
                after = pos + 2
            end, part, pos = part, target, target
        else:
            raise DnsWireError(f"label type 0x{length & 0xC0:02x} at offset {pos} is unknown")
    if b"".join(labels).translate(None, _SAFE_OCTETS):
        text = ".".join(_escape(label) for label in labels)
    else:
        text = b".".join(labels).decode("ascii")
    memo[start] = text
    return text, (after if after >= 0 else pos)


def _escape(label: bytes) -> str:
    """A label as dnspython writes it (``dns.name._escapify``)."""
    out = []
    for octet in label:
        if octet in b'"().;\\@$':
            out.append("\\" + chr(octet))
        elif 0x20 < octet < 0x7F:
            out.append(chr(octet))
        else:
            out.append(f"\\{octet:03d}")
    return "".join(out)


def _skip_name(data: bytes, pos: int) -> int:
    """The offset after the name at ``pos``, without reading it (no pointer is followed)."""
    size = len(data)
    while pos < size:
        length = data[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            if pos + 2 > size:
                break
            return pos + 2
        if length >= 0x40:
            raise DnsWireError(f"label type 0x{length & 0xC0:02x} at offset {pos} is unknown")
        pos += 1 + length
    raise DnsWireError("name cut short at the end of the message")


# --- record data ---------------------------------------------------------------------

_Decoder = Callable[[bytes, int, int, dict[int, str]], Record]


def _check_end(rtype: str, pos: int, end: int) -> None:
    if pos != end:
        raise DnsWireError(f"{rtype} record data is {'longer' if pos < end else 'shorter'} "
                           "than its fields")  # fmt: skip


def _a(data: bytes, start: int, end: int, memo: dict[int, str]) -> Record:
    if end - start != 4:
        raise DnsWireError(f"A record data of {end - start} octets, not 4")
    return socket.inet_ntop(socket.AF_INET, data[start:end])


def _aaaa(data: bytes, start: int, end: int, memo: dict[int, str]) -> Record:
    if end - start != 16:
        raise DnsWireError(f"AAAA record data of {end - start} octets, not 16")
    packed = data[start:end]
    text = socket.inet_ntop(socket.AF_INET6, packed)
    # inet_ntop writes ::ffff:1.2.3.4; ipaddress (and so our callers) ::ffff:102:304
    return str(ipaddress.IPv6Address(packed)) if "." in text else text


def _target(data: bytes, start: int, end: int, memo: dict[int, str]) -> Record:
    name, pos = _read_name(data, start, memo)
    _check_end("name", pos, end)
    return name


def _mx(data: bytes, start: int, end: int, memo: dict[int, str]) -> Record:
    if end - start < 3:
        raise DnsWireError("MX record data is too short")
    (preference,) = _U16.unpack_from(data, start)
    exchange, pos = _read_name(data, start + 2, memo)
    _check_end("MX", pos, end)
    return MxRecord(preference, exchange)


def _txt(data: bytes, start: int, end: int, memo: dict[int, str]) -> Record:
    strings = []
    pos = start
    while pos < end:
        length = data[pos]
        pos += 1 + length
        if pos > end:
            raise DnsWireError("TXT character-string runs past its record")
        strings.append(data[pos - length : pos])
    return TxtRecord(tuple(strings))


def _soa(data: bytes, start: int, end: int, memo: dict[int, str]) -> Record:
    mname, pos = _read_name(data, start, memo)
    rname, pos = _read_name(data, pos, memo)
    _check_end("SOA", pos + 20, end)
    serial, refresh, retry, expire, minimum = _SOA_TAIL.unpack_from(data, pos)
    return SoaRecord(mname, rname, serial, refresh, retry, expire, minimum)


_DECODERS: dict[int, _Decoder] = {
    1: _a, 28: _aaaa, 5: _target, 12: _target, 2: _target, 39: _target, 15: _mx, 16: _txt,
    99: _txt, 6: _soa,
}  # fmt: skip


def _generic(data: bytes, start: int, length: int, rdtype: int, rdclass: int) -> str:
    """A rare type in its presentation format, through dnspython."""
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    try:
        kind = dns.rdataclass.RdataClass.make(rdclass), dns.rdatatype.RdataType.make(rdtype)
        rdata = dns.rdata.from_wire(*kind, data, start, length)
        return str(rdata.to_text())
    except Exception as error:  # dnspython's parsers raise many kinds on bad data
        name = f"type {rdtype} class {rdclass}"
        raise DnsWireError(f"{name} record data at offset {start} is malformed: {error}") from None
