"""What every probe returns: a :class:`CheckResult` with a stable dotted id and a status.

``error`` is not ``fail``: it means the check could not be made (a DNS timeout, SERVFAIL,
a refused query, an HTTPS fetch that did not complete), never that a record is missing.
Tools that confused the two told people their records were gone while a resolver hiccuped.

Check modules (:mod:`probes.spf`, :mod:`probes.dkim`, :mod:`probes.dmarc`, …) each expose
``async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]``; they share the
one resolver in the context, so concurrent checks of many domains reuse its cache.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from deliver.dns import DnsAnswer

if TYPE_CHECKING:
    import httpx

    from deliver.dns import Resolver

__all__ = [
    "CheckResult",
    "ProbeContext",
    "ProbeOptions",
    "Status",
    "dns_error",
    "error",
    "fail",
    "passed",
    "warn",
    "worst",
]


class Status(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Severity for sorting and summaries: pass < warn < error < fail."""
        return _RANK[self]


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.ERROR: 2, Status.FAIL: 3}


def _frozen(evidence: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(evidence))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One finding. ``message`` says what is wrong and what to do, in a sentence a person
    can act on; ``fix`` is the corrected record or setting when one can be derived
    (a flattened SPF record, a DMARC record with the bad tag repaired); ``evidence`` holds
    what was seen (the record, the counts, the DNS status), JSON-serialisable."""

    id: str
    status: Status
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    fix: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        object.__setattr__(self, "evidence", _frozen(self.evidence))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        """The inverse of :meth:`to_dict` (a JSON report read back)."""
        return cls(data["id"], Status(data["status"]), data.get("message", ""),
                   data.get("evidence") or {}, data.get("fix"))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status.value,
            "message": self.message,
            "evidence": dict(self.evidence),
        }
        if self.fix is not None:
            out["fix"] = self.fix
        return out


def passed(id: str, message: str, fix: str | None = None, **evidence: Any) -> CheckResult:
    return CheckResult(id, Status.PASS, message, evidence, fix)


def warn(id: str, message: str, fix: str | None = None, **evidence: Any) -> CheckResult:
    return CheckResult(id, Status.WARN, message, evidence, fix)


def fail(id: str, message: str, fix: str | None = None, **evidence: Any) -> CheckResult:
    return CheckResult(id, Status.FAIL, message, evidence, fix)


def error(id: str, message: str, **evidence: Any) -> CheckResult:
    return CheckResult(id, Status.ERROR, message, evidence)


def dns_error(id: str, answer: DnsAnswer, what: str = "") -> CheckResult:
    """``error`` for a lookup that could not be made (SERVFAIL, REFUSED, TIMEOUT)."""
    subject = what or f"{answer.rdtype} {answer.name}"
    detail = f" ({answer.detail})" if answer.detail else ""
    return error(
        id,
        f"could not look up {subject}: {answer.status.value}{detail}; check not made",
        name=answer.name,
        type=answer.rdtype,
        dns=answer.status.value,
    )


def worst(results: Sequence[CheckResult]) -> Status:
    """The most severe status among ``results`` (pass when there are none)."""
    return max((r.status for r in results), key=lambda s: s.rank, default=Status.PASS)


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """What to probe besides the domain's own records; built once at the edge (CLI)."""

    #: DKIM selectors to check (given, from sokures.toml, or found in a sample message)
    selectors: tuple[str, ...] = ()
    #: the IP addresses mail is sent from: PTR/FCrDNS, SPF evaluation, DNSBL
    ips: tuple[str, ...] = ()
    #: public keys derived from the private keys in sokures.toml, by selector
    #: (DER SubjectPublicKeyInfo for RSA, raw 32 bytes for Ed25519), to compare with DNS
    local_keys: Mapping[str, bytes] = field(default_factory=dict)
    #: DNSBL zones for IP addresses (e.g. zen.spamhaus.org) and for domains (dbl.spamhaus.org)
    dnsbl_ip_zones: tuple[str, ...] = ()
    dnsbl_domain_zones: tuple[str, ...] = ()
    #: fetch the MTA-STS policy over HTTPS (off: only the TXT record is checked)
    fetch_mta_sts: bool = True
    #: check groups to leave out, e.g. {"dnsbl", "mta_sts"}
    skip: frozenset[str] = frozenset()


@dataclass(slots=True)
class ProbeContext:
    """Shared by every check of one run: one resolver (one cache), one HTTP client."""

    resolver: Resolver
    options: ProbeOptions = field(default_factory=ProbeOptions)
    #: for MTA-STS policies; None = policies are not fetched
    http: httpx.AsyncClient | None = None
