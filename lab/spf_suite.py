"""The open SPF test suite's zone data (rfc7208-tests.yml ``zonedata``) as a :class:`ZoneData`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from lab.zones import Record, RecordInput, ZoneData, ZoneError, _utf8

__all__ = ["zone_from_spf_suite"]


def zone_from_spf_suite(
    zonedata: Mapping[str, Sequence[object]], origins: Sequence[str] = ("",)
) -> ZoneData:
    """Serve one section's ``zonedata`` of the openspf test suite (rfc7208-tests.yml).

    The suite's conventions, as its drivers apply them:

    - each entry is ``{TYPE: value}``; MX values are ``[preference, exchange]``; TXT and SPF
      values a string or a list of character-strings (``[]`` is served as one empty string,
      as a TXT record holds at least one, RFC 1035 §3.3.14);
    - SPF (type 99) records under a name are also served as TXT unless that name has its
      own TXT entry (the suite relies on drivers duplicating them, RFC 7208 §3.1);
    - ``TXT: NONE`` means no TXT answer (and no duplicate of the SPF records);
    - ``TIMEOUT`` means the name never answers, except for the types it has records of
      (``spftimeout`` answers TXT but not SPF): see :class:`ZoneData`'s overrides;
    - strings stand for octets (``"\\xef\\xbb\\xbf"`` is a UTF-8 BOM), so code points up
      to U+00FF become that octet; a string with higher ones is encoded as UTF-8.

    ``origins`` defaults to the root, so any name the data lacks does not exist.
    """
    records: dict[str, list[Record]] = {}
    timeouts: set[str] = set()
    for name, entries in zonedata.items():
        found, timeout = _spf_suite_records(name, entries)
        records.setdefault(name, []).extend(found)
        if timeout:
            timeouts.add(name)
    return ZoneData(origins, records, timeout=timeouts)


def _spf_suite_records(name: str, entries: Sequence[object]) -> tuple[list[Record], bool]:
    records: list[Record] = []
    timeout = own_txt = False
    for index, entry in enumerate(entries):
        try:
            if entry == "TIMEOUT":
                timeout = True
                continue
            if not isinstance(entry, Mapping) or len(entry) != 1:
                raise ZoneError(f"an entry is TIMEOUT or {{TYPE: value}}, got {entry!r}")
            ((rtype, value),) = entry.items()
            rtype = str(rtype).upper()
            own_txt = own_txt or rtype == "TXT"
            if value != "NONE":
                records.append(Record(rtype, _spf_suite_value(rtype, value)))
        except ZoneError as error:
            raise error.within(name=name, index=index) from None
    if not own_txt:
        records += [Record("TXT", r.value, r.ttl) for r in records if r.type == "SPF"]
    return records, timeout


def _spf_suite_value(rtype: str, value: object) -> RecordInput:
    if rtype not in ("TXT", "SPF"):
        return cast(RecordInput, value)
    if isinstance(value, str):
        return _octets(value)
    if isinstance(value, list):
        return tuple(_octets(item) if isinstance(item, str) else item for item in value) or (b"",)
    return cast(RecordInput, value)


def _octets(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return _utf8(text)
