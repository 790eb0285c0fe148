"""pyspf's check_host() with every lookup made by our resolver (kept apart so that pyspf,
and the dnspython it imports, load only when an IP is evaluated).

A subclass of ``spf.query`` overrides ``dns()``, the one method every pyspf lookup goes
through; pyspf's module-level resolver is never touched (no global state).
"""

from __future__ import annotations

from typing import Any

import spf as pyspf

from deliver.dns import DnsStatus, MxRecord, Resolver, TxtRecord
from probes.spf import SpfEvaluation

__all__ = ["evaluate_sync"]

_TEMP = (DnsStatus.SERVFAIL, DnsStatus.REFUSED, DnsStatus.TIMEOUT)

def evaluate_sync(resolver: Resolver, ip: str, sender: str, helo: str) -> SpfEvaluation:
    try:
        query = _ResolverQuery(resolver, i=ip, s=sender, h=helo)
    except pyspf.PermError as exc:  # an IP address that does not parse
        return SpfEvaluation("permerror", str(exc), "")
    result, _code, explanation = query.check()
    return SpfEvaluation(str(result), str(explanation), str(query.d or ""))


class _ResolverQuery(pyspf.query):  # type: ignore[misc]
    """pyspf's query with its DNS made by our resolver: ``dns()`` is the one method every
    lookup goes through (TXT, A, AAAA, MX, PTR); pyspf's per-query cache and CNAME
    chasing are not needed (the resolver caches, and follows CNAMEs)."""

    def __init__(self, resolver: Resolver, **kwargs: Any) -> None:
        self._resolver = resolver
        super().__init__(**kwargs)

    def dns(
        self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False
    ) -> list[Any]:
        if not name:
            raise pyspf.PermError("empty domain in a DNS lookup")
        name = str(name).rstrip(".")
        # RFC 7208 §4.3: a name with an empty or over-long label is not looked up
        if not all(0 < len(label) < 64 for label in name.split(".")):
            return []
        answer = self._resolver.query_sync(name, qtype)
        if answer.status in _TEMP:
            raise pyspf.TempError(f"DNS {qtype} {name}: {answer.status.value}")
        result = [_to_pyspf(record) for record in answer.records] if answer.ok else []
        if not result and not ignore_void:
            # RFC 7208 §4.6.4: more than two void lookups is a permerror
            self.void_lookups += 1
            if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                raise pyspf.PermError(f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
        return result

    def validated_ptrs(self) -> list[str]:
        """RFC 7208 §5.5: a DNS error on the PTR lookup means no match, and a name whose
        address lookup fails is skipped (pyspf lets the error end the whole check)."""
        try:
            names = self.dns_ptr(self.i)[: pyspf.MAX_PTR]
        except pyspf.TempError:
            return []
        valid = []
        for name in names:
            try:
                if self.cidrmatch(self.dns_a(name, self.A), self.cidrmax):
                    valid.append(name)
            except pyspf.TempError:
                continue
        return valid


def _to_pyspf(record: object) -> object:
    """Our typed record as pyspf's dnspython driver gives it."""
    if isinstance(record, MxRecord):
        return (record.preference, record.exchange)
    if isinstance(record, TxtRecord):
        return record.strings
    return record


