"""Zone data for the lab's authoritative DNS server: a typed, frozen model and its JSON file.

Pure: nothing here opens a socket, and the only file access is :func:`load_zone_file` and
:func:`dump_zone_file`. :meth:`ZoneData.lookup` answers a question the way an authoritative
server would (RFC 1034 §4.3.2), so :mod:`lab.dns_server` only translates to and from the wire.

The zone file is one JSON object::

    {"origins": ["example.test", "127.in-addr.arpa"],
     "records": {"example.test": [{"type": "MX", "value": [10, "mx.example.test"]},
                                  {"type": "TXT", "value": "v=spf1 -all", "ttl": 60}],
                 "mx.example.test": [{"type": "A", "value": "127.0.0.2"}],
                 "*.wild.example.test": [{"type": "A", "value": "127.0.0.3"}]},
     "timeout": ["slow.example.test"], "servfail": [], "refused": []}

``origins`` are the zones served authoritatively ("." is the root: every name); the other
keys are optional. Record values by type:

=========================  ===========================================================
A, AAAA                    an address string
CNAME, PTR, NS             a domain name
MX                         ``[preference, exchange]``; exchange "." is a null MX (RFC 7505)
TXT, SPF (type 99)         a string (split into 255-octet character-strings when longer,
                           as DKIM keys are published) or a list of character-strings;
                           a list item ``{"hex": "efbbbf"}`` gives octets that are not UTF-8
SOA                        ``[mname, rname, serial, refresh, retry, expire, minimum]``
CAA                        ``[flags, tag, value]`` (RFC 8659)
TLSA                       ``[usage, selector, matching_type, hex data]`` (RFC 6698)
=========================  ===========================================================

Names are case-insensitive (RFC 4343), stored lower case without the trailing dot, with
internationalized labels as A-labels (IDNA, UTS #46 mapping). Names inside record data keep
their case, as DNS does. Each origin without an SOA record gets a default one, which negative
answers carry (RFC 2308 §3).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, cast

import idna

from deliver.errors import ConfigError

__all__ = [
    "DEFAULT_TTL", "RECORD_TYPES", "CaaValue", "MxValue", "Record", "RecordInput", "RecordValue",
    "SoaValue", "TlsaValue", "ZoneData", "ZoneError", "dump_zone_file", "load_zone_file",
    "normalize_name", "zone_from_dict",
]  # fmt: skip

DEFAULT_TTL = 300
RECORD_TYPES = ("A", "AAAA", "MX", "TXT", "SPF", "CNAME", "PTR", "NS", "SOA", "CAA", "TLSA")
OVERRIDES = ("timeout", "servfail", "refused")
_UINT32 = 2**32 - 1


class ZoneError(ConfigError):
    """Zone data that cannot be served; names the file, the record (owner, index) and why."""

    def __init__(
        self, reason: str, *, name: str | None = None, index: int | None = None, path: str = ""
    ) -> None:
        self.reason, self.name, self.index, self.path = reason, name, index, path
        where = [path] if path else []
        if name is not None:
            where.append(repr(name) + (f" record {index}" if index is not None else ""))
        super().__init__(": ".join([*where, reason]))

    def within(
        self, *, name: str | None = None, index: int | None = None, path: str = ""
    ) -> ZoneError:
        """This error with more context; what it already names is kept."""
        name = self.name if self.name is not None else name
        index = self.index if self.index is not None else index
        return ZoneError(self.reason, name=name, index=index, path=self.path or path)


# --- names ---------------------------------------------------------------------------


def normalize_name(name: object, *, keep_case: bool = False) -> str:
    """A domain name as the model stores it: no trailing dot, A-labels, lower case.

    The root is ``""``. ``keep_case`` keeps the case of ASCII labels, for names inside
    record data (DNS preserves it, RFC 4343 §4.1). Limits from RFC 1035 §2.3.4: labels of
    63 octets, names of 253 characters in text (255 octets on the wire).
    """
    if not isinstance(name, str):
        raise ZoneError(f"a domain name must be a string, got {name!r}")
    text = name[:-1] if name.endswith(".") else name
    if not text:
        return ""
    result = ".".join(_a_label(label, name) for label in text.split("."))
    if len(result) > 253:
        raise ZoneError(f"name {name!r} is longer than 253 characters (RFC 1035 §2.3.4)")
    return result if keep_case else result.lower()


def _a_label(label: str, name: str) -> str:
    if not label:
        raise ZoneError(f"name {name!r} has an empty label")
    if label.isascii():
        # Any octet is allowed in a label (RFC 2181 §11); control characters are typos.
        if not label.isprintable():
            raise ZoneError(f"name {name!r} holds control characters")
        ascii_label = label
    else:
        try:
            ascii_label = idna.encode(label, uts46=True).decode("ascii")
        except UnicodeError as error:
            raise ZoneError(f"name {name!r}: label {label!r} is not valid IDNA: {error}") from None
    if len(ascii_label) > 63:
        raise ZoneError(f"name {name!r} has a label over 63 octets (RFC 1035 §2.3.4)")
    return ascii_label


def _join(label: str, parent: str) -> str:
    return f"{label}.{parent}" if parent else label


def _is_within(name: str, origin: str) -> bool:
    return not origin or name == origin or name.endswith("." + origin)


def _display(name: str) -> str:
    return name or "."


# --- record values -------------------------------------------------------------------


class MxValue(NamedTuple):
    preference: int
    exchange: str  # "" is the root: a null MX (RFC 7505)


class SoaValue(NamedTuple):
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int  # the negative-caching TTL (RFC 2308 §4)


class CaaValue(NamedTuple):
    flags: int
    tag: str
    value: str


class TlsaValue(NamedTuple):
    usage: int
    selector: int
    matching_type: int
    data: str  # lower-case hex


TxtValue = tuple[bytes, ...]
#: the canonical value a :class:`Record` holds after construction
RecordValue = str | TxtValue | MxValue | SoaValue | CaaValue | TlsaValue
#: what a :class:`Record` accepts: canonical values, or lists in their place
RecordInput = str | bytes | Sequence[str | bytes | int]


def _uint(value: object, what: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ZoneError(f"{what} must be an integer from 0 to {high}, got {value!r}")
    return value


def _address(rtype: str, value: object) -> str:
    kind = ipaddress.IPv4Address if rtype == "A" else ipaddress.IPv6Address
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return str(kind(value))
    version = 4 if rtype == "A" else 6
    raise ZoneError(f"{rtype} value must be an IPv{version} address, got {value!r}")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ZoneError(f"text {text!r} cannot be encoded as UTF-8: {error}") from None


def _split_text(text: str) -> TxtValue:
    """UTF-8 in chunks of up to 255 octets, never cut inside a character."""
    octets, chunks = _utf8(text), []
    while len(octets) > 255:
        cut = 255
        while octets[cut] & 0xC0 == 0x80:  # a continuation octet: step back to the start
            cut -= 1
        chunks.append(octets[:cut])
        octets = octets[cut:]
    return (*chunks, octets)


def _strings(rtype: str, value: object) -> TxtValue:
    """One or more character-strings of up to 255 octets each (RFC 1035 §3.3.14).

    A single longer string is split, as zone files publish DKIM keys; a DKIM verifier
    concatenates them again (RFC 6376 §3.6.2.2), and so does SPF (RFC 7208 §3.3).
    """
    if isinstance(value, str):
        return _split_text(value)
    if isinstance(value, bytes):
        return tuple(value[i : i + 255] for i in range(0, max(len(value), 1), 255))
    if not isinstance(value, Sequence) or not value:
        raise ZoneError(f"{rtype} value must be a string or a non-empty list of strings")
    chunks = []
    for index, item in enumerate(value):
        if not isinstance(item, str | bytes):
            raise ZoneError(f"{rtype} character-string {index} must be a string, got {item!r}")
        chunk = _utf8(item) if isinstance(item, str) else item
        if len(chunk) > 255:
            raise ZoneError(
                f"{rtype} character-string {index} is {len(chunk)} octets, over 255 "
                "(RFC 1035 §3.3); give the value as one string to have it split"
            )
        chunks.append(chunk)
    return tuple(chunks)


_NAME, _TEXT, _TAG, _HEX = "name", "text", "tag", "hex"
#: structured types: the value class, its fields, and each field's rule (an int: the maximum)
_SHAPES: dict[str, tuple[Callable[..., RecordValue], tuple[str, ...], tuple[int | str, ...]]] = {
    "MX": (MxValue, MxValue._fields, (65535, _NAME)),
    "SOA": (SoaValue, SoaValue._fields, (_NAME, _NAME, *[_UINT32] * 5)),
    "CAA": (CaaValue, CaaValue._fields, (255, _TAG, _TEXT)),
    "TLSA": (TlsaValue, TlsaValue._fields, (255, 255, 255, _HEX)),
}


def _structured(rtype: str, value: object) -> RecordValue:
    """An MX, SOA, CAA or TLSA value: a list of fields, each checked by its rule."""
    kind, names, rules = _SHAPES[rtype]
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence)
        or len(value) != len(names)
    ):
        raise ZoneError(f"{rtype} value must be [{', '.join(names)}], got {value!r}")
    checked = zip(names, rules, value, strict=True)
    return kind(*(_field(f"{rtype} {name}", rule, item) for name, rule, item in checked))


def _field(what: str, rule: int | str, item: object) -> int | str:
    if isinstance(rule, int):
        return _uint(item, what, rule)
    if rule == _NAME:
        return normalize_name(item, keep_case=True)
    if not isinstance(item, str):
        raise ZoneError(f"{what} must be a string, got {item!r}")
    if rule == _TAG and not (item.isascii() and item.isalnum()):
        raise ZoneError(f"{what} must be ASCII letters and digits (RFC 8659 §4.1), got {item!r}")
    if rule == _HEX:
        with contextlib.suppress(ValueError):
            if octets := bytes.fromhex(item):
                return octets.hex()
        raise ZoneError(f"{what} must be non-empty hex, got {item!r}")
    return item


def _canonical(rtype: str, value: object) -> RecordValue:
    if rtype in ("A", "AAAA"):
        return _address(rtype, value)
    if rtype in ("TXT", "SPF"):
        return _strings(rtype, value)
    if rtype in _SHAPES:
        return _structured(rtype, value)
    return normalize_name(value, keep_case=True)  # CNAME, PTR, NS


@dataclass(frozen=True)
class Record:
    """One record's type, data and TTL; its owner name is the key it is filed under.

    ``value`` is accepted loosely (lists for tuples, one long TXT string) and stored in
    its canonical form (:data:`RecordValue`), so equal data compares equal.
    """

    type: str
    value: RecordInput
    ttl: int = DEFAULT_TTL

    def __post_init__(self) -> None:
        rtype = self.type.upper() if isinstance(self.type, str) else ""
        if rtype not in RECORD_TYPES:
            supported = ", ".join(RECORD_TYPES)
            raise ZoneError(f"unsupported record type {self.type!r} (supported: {supported})")
        object.__setattr__(self, "type", rtype)
        object.__setattr__(self, "value", _canonical(rtype, self.value))
        # RFC 2181 §8: a TTL is an unsigned 31-bit number.
        object.__setattr__(self, "ttl", _uint(self.ttl, "TTL", 2**31 - 1))

    @property
    def data(self) -> RecordValue:
        """The value, typed as the canonical form construction guarantees."""
        return cast(RecordValue, self.value)


def _default_soa(origin: str) -> Record:
    value = SoaValue(_join("ns", origin), _join("hostmaster", origin), 1, 3600, 600, 86400, 300)
    return Record("SOA", value, DEFAULT_TTL)


# --- the zone ------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneData:
    """Everything the server serves, frozen; built in Python or loaded from a zone file.

    ``origins`` are the zones we are authoritative for: a question about a name outside all
    of them is REFUSED, as a real authoritative server answers. ``records`` maps owner names
    to their records (``*.name`` is a wildcard, RFC 4592). The overrides ``timeout``
    (no response at all), ``servfail`` and ``refused`` apply to every question about the
    exact name except for types it holds records of: a name with no records is silent or
    failing for everything, and a name with a TXT record listed in ``timeout`` answers TXT
    but times out on type SPF, as some servers do (the SPF test suite's ``spftimeout``).

    Stored canonically: origins as a tuple, records as a read-only mapping of tuples, the
    overrides as frozensets. Malformed data raises :class:`ZoneError`.
    """

    origins: Sequence[str]
    records: Mapping[str, Sequence[Record]] = field(default_factory=dict)
    timeout: Collection[str] = frozenset()
    servfail: Collection[str] = frozenset()
    refused: Collection[str] = frozenset()

    def __post_init__(self) -> None:
        if isinstance(self.origins, str):
            raise ZoneError("origins must be a list of names, not one string")
        origins = tuple(dict.fromkeys(_name_in("origins", o) for o in self.origins))
        records = _normalized_records(self.records, origins)
        overrides = _overrides(self, origins)
        object.__setattr__(self, "origins", origins)
        object.__setattr__(self, "records", MappingProxyType(records))
        for kind, names in overrides.items():
            object.__setattr__(self, kind, names)

    def origin_of(self, name: str) -> str | None:
        """The closest origin holding ``name``, or None when we are not authoritative."""
        name = name.rstrip(".").lower()
        holding = [origin for origin in self.origins if _is_within(name, origin)]
        return max(holding, key=len) if holding else None

    def soa(self, origin: str) -> Record:
        """The SOA record of an origin: its own, or a default one for negative answers."""
        own = [record for record in self.records.get(origin, ()) if record.type == "SOA"]
        return own[0] if own else _default_soa(origin)

    def to_dict(self) -> dict[str, object]:
        """The zone file's JSON object."""
        document: dict[str, object] = {
            "origins": [_display(origin) for origin in self.origins],
            "records": {
                _display(name): [_record_to_json(record) for record in records]
                for name, records in self.records.items()
            },
        }
        for kind in OVERRIDES:
            document[kind] = sorted(_display(name) for name in getattr(self, kind))
        return document

    def to_json(self) -> str:
        """The zone file's text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _name_in(where: str, name: object) -> str:
    try:
        return normalize_name(name)
    except ZoneError as error:
        raise ZoneError(f"{where}: {error.reason}") from None


def _normalized_records(
    records: Mapping[str, Sequence[Record]], origins: tuple[str, ...]
) -> dict[str, tuple[Record, ...]]:
    if not isinstance(records, Mapping):
        raise ZoneError("records must map names to lists of records")
    merged: dict[str, tuple[Record, ...]] = {}
    for raw, rrset in records.items():
        try:
            name = normalize_name(raw)
            if isinstance(rrset, str | bytes) or not isinstance(rrset, Sequence):
                raise ZoneError("the records of a name must be a list")
            for index, record in enumerate(rrset):
                if not isinstance(record, Record):
                    raise ZoneError(f"not a Record: {record!r}", index=index)
            if not any(_is_within(name, origin) for origin in origins):
                raise ZoneError("name is outside every origin, so it would never be served")
            merged[name] = (*merged.get(name, ()), *rrset)
            _check_rrsets(name, merged[name], origins)
        except ZoneError as error:
            raise error.within(name=str(raw)) from None
    return merged


def _check_rrsets(name: str, records: tuple[Record, ...], origins: tuple[str, ...]) -> None:
    types = [record.type for record in records]
    if "CNAME" in types and len(types) > 1:
        raise ZoneError("a CNAME cannot share its name with other records (RFC 2181 §10.1)")
    if "SOA" in types and (name not in origins or types.count("SOA") > 1):
        raise ZoneError("an SOA record belongs at an origin, once (RFC 1035 §5.2)")


def _overrides(zone: ZoneData, origins: tuple[str, ...]) -> dict[str, frozenset[str]]:
    overrides: dict[str, frozenset[str]] = {}
    for kind in OVERRIDES:
        names = getattr(zone, kind)
        if isinstance(names, str):
            raise ZoneError(f"{kind} must be a list of names, not one string")
        overrides[kind] = frozenset(_name_in(kind, name) for name in names)
        for name in overrides[kind]:
            if not any(_is_within(name, origin) for origin in origins):
                raise ZoneError(f"{kind}: {_display(name)!r} is outside every origin")
    for kind, other in itertools.combinations(OVERRIDES, 2):
        if both := overrides[kind] & overrides[other]:
            raise ZoneError(f"{sorted(both)} listed in both {kind} and {other}")
    return overrides


# --- the zone file -------------------------------------------------------------------


def _record_to_json(record: Record) -> dict[str, object]:
    data = record.data
    value: object
    if record.type in ("TXT", "SPF"):
        chunks = [_chunk_to_json(chunk) for chunk in cast(TxtValue, data)]
        value = chunks[0] if len(chunks) == 1 and isinstance(chunks[0], str) else chunks
    elif isinstance(data, MxValue):
        value = [data.preference, _display(data.exchange)]
    elif isinstance(data, tuple):
        value = list(data)
    else:
        value = data if record.type in ("A", "AAAA") else _display(data)
    document: dict[str, object] = {"type": record.type, "value": value}
    if record.ttl != DEFAULT_TTL:
        document["ttl"] = record.ttl
    return document


def _chunk_to_json(chunk: bytes) -> str | dict[str, str]:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": chunk.hex()}


def _chunk_from_json(item: object) -> object:
    if isinstance(item, dict):
        if set(item) != {"hex"} or not isinstance(item["hex"], str):
            raise ZoneError(f'a character-string is text or {{"hex": "..."}}, got {item!r}')
        try:
            return bytes.fromhex(item["hex"])
        except ValueError:
            raise ZoneError(f"not hex: {item['hex']!r}") from None
    return item


def _record_from_json(entry: object) -> Record:
    if (
        not isinstance(entry, dict)
        or not {"type", "value"} <= entry.keys()
        or entry.keys() - {"type", "value", "ttl"}
    ):
        raise ZoneError(f'a record is {{"type", "value", "ttl" (optional)}}, got {entry!r}')
    rtype, value = entry["type"], entry["value"]
    if isinstance(rtype, str) and rtype.upper() in ("TXT", "SPF") and isinstance(value, list):
        value = [_chunk_from_json(item) for item in value]
    return Record(rtype, value, entry.get("ttl", DEFAULT_TTL))


def _records_from_json(name: str, entries: object) -> list[Record]:
    if not isinstance(entries, list):
        raise ZoneError("the records of a name must be a list", name=name)
    records = []
    for index, entry in enumerate(entries):
        try:
            records.append(_record_from_json(entry))
        except ZoneError as error:
            raise error.within(name=name, index=index) from None
    return records


def _name_list(document: Mapping[str, object], key: str) -> list[str]:
    value = document.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ZoneError(f'"{key}" must be a list of names')
    return value


def zone_from_dict(document: object) -> ZoneData:
    """The zone described by a zone file's JSON object (see the module docstring)."""
    if not isinstance(document, dict):
        raise ZoneError("a zone file holds one JSON object")
    unknown = set(document) - {"origins", "records", *OVERRIDES}
    if unknown:
        raise ZoneError(f"unknown keys {sorted(unknown)} (known: origins, records, {OVERRIDES})")
    if "origins" not in document:
        raise ZoneError('"origins" is missing')
    raw = document.get("records", {})
    if not isinstance(raw, dict):
        raise ZoneError('"records" must map names to lists of records')
    records = {name: _records_from_json(name, entries) for name, entries in raw.items()}
    return ZoneData(
        _name_list(document, "origins"),
        records,
        timeout=_name_list(document, "timeout"),
        servfail=_name_list(document, "servfail"),
        refused=_name_list(document, "refused"),
    )


def load_zone_file(path: str | os.PathLike[str]) -> ZoneData:
    """Read a zone file; :class:`ZoneError` names the file, the record and the reason."""
    where = os.fspath(path)
    try:
        return zone_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except ZoneError as error:
        raise error.within(path=where) from None
    except json.JSONDecodeError as error:
        raise ZoneError(f"not JSON: {error}", path=where) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ZoneError(f"cannot read the zone file: {error}", path=where) from None


def dump_zone_file(zone: ZoneData, path: str | os.PathLike[str]) -> None:
    """Write a zone file atomically, so a server reloading on SIGHUP never reads half of one."""
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(zone.to_json())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
