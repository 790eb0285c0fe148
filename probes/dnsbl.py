"""DNS blocklists: are the sending IPs or the domain listed?

For each IP in ``ctx.options.ips`` and each zone in ``dnsbl_ip_zones`` the A record of the
reversed address under the zone is looked up (``4.3.2.1.zen.example`` for 1.2.3.4, the 32
reversed nibbles for IPv6, RFC 5782 §2.1, §2.4); for the domain and each zone in
``dnsbl_domain_zones``, ``<domain>.<zone>`` (RFC 5782 §2.3). One ``dnsbl.listed`` result
covers every query, with one evidence entry per listing.

What an answer means (RFC 5782 §2.1, and the lists' own documentation):

* NXDOMAIN (or no A record): not listed;
* 127.0.0.2 and up within 127.0.0.0/8: listed (``fail``), with the list's TXT reason;
* the codes lists use to refuse a query, not listed but not checked either (``error``):
  127.0.0.1 (many lists, e.g. URIBL, for blocked resolvers), 127.255.255.0/24 (Spamhaus:
  .252 typing error in the DNSBL name, .254 query via a public/open resolver, .255
  excessive number of queries), 127.0.1.255 (Spamhaus DBL: IP queries prohibited);
* anything outside 127.0.0.0/8: ``error`` (an expired list whose zone now answers every
  name, or a resolver that rewrites NXDOMAIN);
* a failed lookup (SERVFAIL, timeout): ``error``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deliver.dns import DnsStatus, Resolver
from probes.checks import CheckResult, ProbeContext, error, fail, passed
from probes.ptr import is_ip

__all__ = ["REFUSALS", "DnsblAnswer", "audit", "classify", "lookup", "query_name"]

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_SPAMHAUS_ERRORS = ipaddress.ip_network("127.255.255.0/24")
#: refusal codes: the query was not answered, so nothing is known about the listing
REFUSALS = {
    "127.0.0.1": "the list refused the query (127.0.0.1: blocked or unregistered resolver)",
    "127.0.1.255": "the list refused an IP query in a domain zone (127.0.1.255)",
    "127.255.255.252": "typing error in the DNSBL name (127.255.255.252)",
    "127.255.255.254": "query via a public/open resolver, which the list refuses "
    "(127.255.255.254): use your own resolver",
    "127.255.255.255": "excessive number of queries (127.255.255.255)",
}


def query_name(subject: str, zone: str) -> str:
    """The name to look up: reversed octets or nibbles for an IP, ``<domain>.<zone>`` for
    a domain."""
    zone = zone.strip().rstrip(".")
    try:
        address = ipaddress.ip_address(subject)
    except ValueError:
        return f"{subject.rstrip('.')}.{zone}"
    reverse = address.reverse_pointer
    suffix = ".in-addr.arpa" if address.version == 4 else ".ip6.arpa"
    return f"{reverse.removesuffix(suffix)}.{zone}"


def classify(addresses: Sequence[str]) -> tuple[str, str]:
    """``("listed", codes)``, ``("refused", reason)`` or ``("bogus", reason)``."""
    listed: list[str] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return "bogus", f"answer {text!r} is not an IPv4 address"
        if text in REFUSALS:
            return "refused", REFUSALS[text]
        if address in _SPAMHAUS_ERRORS:
            return "refused", f"the list answered with its error code {text}"
        if address not in _LOOPBACK or text == "127.0.0.0":
            return "bogus", (
                f"answered {text}, outside 127.0.0.0/8: the list may have "
                "expired and now answer every name; stop querying it"
            )
        listed.append(text)
    return "listed", ", ".join(listed)


@dataclass(frozen=True, slots=True)
class DnsblAnswer:
    subject: str
    zone: str
    name: str
    #: "clear", "listed", "refused", "bogus" or "failed"
    outcome: str
    detail: str = ""
    reason: str | None = None

    def to_evidence(self) -> dict[str, Any]:
        kind = "domain" if self.subject and not is_ip(self.subject) else "ip"
        out: dict[str, Any] = {
            kind: self.subject,
            "zone": self.zone,
            "query": self.name,
            "outcome": self.outcome,
        }
        if self.detail:
            out["detail"] = self.detail
        if self.reason is not None:
            out["reason"] = self.reason
        return out


async def lookup(resolver: Resolver, subject: str, zone: str) -> DnsblAnswer:
    """One blocklist query, and the TXT reason when the subject is listed."""
    name = query_name(subject, zone)
    answer = await resolver.query(name, "A")
    if answer.status in (DnsStatus.NXDOMAIN, DnsStatus.NODATA):
        return DnsblAnswer(subject, zone, name, "clear")
    if not answer.ok:
        detail = f"{answer.status.value}{f' ({answer.detail})' if answer.detail else ''}"
        return DnsblAnswer(subject, zone, name, "failed", detail)
    outcome, detail = classify(answer.addresses())
    if outcome != "listed":
        return DnsblAnswer(subject, zone, name, outcome, detail)
    txt = await resolver.query(name, "TXT")
    reason = " ".join(txt.texts())[:500] if txt.ok else None
    return DnsblAnswer(subject, zone, name, "listed", detail, reason)


async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]:
    """``dnsbl.listed`` over every (IP, IP zone) and (domain, domain zone) pair; no result
    when no zone applies."""
    options = ctx.options
    pairs = [(ip, zone) for ip in dict.fromkeys(options.ips) for zone in options.dnsbl_ip_zones]
    pairs += [(domain, zone) for zone in options.dnsbl_domain_zones]
    if not pairs:
        return []
    invalid = [ip for ip in dict.fromkeys(options.ips) if not is_ip(ip)]
    pairs = [(s, z) for s, z in pairs if s not in invalid]
    answers = await asyncio.gather(*(lookup(ctx.resolver, s, z) for s, z in pairs))
    return [_judge(answers, invalid)]


def _judge(answers: Sequence[DnsblAnswer], invalid: Sequence[str]) -> CheckResult:
    listed = [a for a in answers if a.outcome == "listed"]
    unknown = [a for a in answers if a.outcome in ("refused", "bogus", "failed")]
    evidence: dict[str, Any] = {
        "listings": [a.to_evidence() for a in listed],
        "not_checked": [a.to_evidence() for a in unknown],
        "queries": len(answers),
    }
    if invalid:
        evidence["invalid_ips"] = list(invalid)
    if listed:
        shown = "; ".join(
            f"{a.subject} on {a.zone} ({a.detail}{f': {a.reason}' if a.reason else ''})"
            for a in listed
        )
        return fail(
            "dnsbl.listed",
            f"listed: {shown}; find and stop the cause, then ask "
            "each list for removal (the TXT reason usually links to its form)",
            **evidence,
        )
    if unknown or invalid:
        parts = [f"{a.subject} on {a.zone}: {a.detail}" for a in unknown]
        parts += [f"{ip} is not an IP address" for ip in invalid]
        return error(
            "dnsbl.listed",
            f"blocklist queries not answered: {'; '.join(parts)}; check not made for those",
            **evidence,
        )
    return passed("dnsbl.listed", f"not listed ({len(answers)} blocklist queries)", **evidence)
