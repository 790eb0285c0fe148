"""MX records: published, not null, each host addressable, not a CNAME, reverse DNS in order.

A sending domain needs working MX hosts even if it never receives newsletters: bounces
(to the envelope sender) and replies come back through them, and receivers such as Yahoo
check that the From domain can receive mail. One result per check id, with the hosts and
addresses aggregated into its evidence.

Lookups: the MX RRset, then A and AAAA of every host at once, then the reverse DNS of every
address at once (:func:`probes.ptr.fcrdns`, the one FCrDNS code path). A host reached
through a CNAME is seen in the A/AAAA answers' ``cnames``, so it costs no extra query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deliver.dns import DnsAnswer, DnsStatus, MxRecord, Resolver
from probes.checks import CheckResult, ProbeContext, Status, dns_error, error, fail, passed, warn
from probes.ptr import ReverseDns, fcrdns, is_ip

__all__ = ["VERDICTS", "MxHost", "audit", "verdict"]

#: what :func:`verdict` returns, in order of precedence after "ok"
VERDICTS = ("ok", "null", "no_address", "no_ptr", "ptr_mismatch", "cname", "missing", "error")

_NULL_MX_FIX = "0 ."


@dataclass(frozen=True, slots=True)
class MxHost:
    """One MX host and what its A and AAAA lookups found."""

    name: str
    preference: int
    addresses: tuple[str, ...]
    #: the CNAME chain the address lookups followed (empty: the name holds the records)
    cnames: tuple[str, ...]
    #: the first address lookup that could not be made, if any
    failure: DnsAnswer | None

    @property
    def unknown(self) -> bool:
        """No address found, and a lookup failed: whether it has one is not known."""
        return not self.addresses and self.failure is not None


async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]:
    """``mx.present``, ``mx.null``, ``mx.address``, ``mx.cname``, ``mx.ptr``, ``mx.fcrdns``."""
    answer = await ctx.resolver.query(domain, "MX")
    if answer.status is DnsStatus.NXDOMAIN:
        return [
            fail(
                "mx.present",
                f"{domain} does not exist (NXDOMAIN): mail to and from it cannot work; "
                "publish the domain and its MX records",
                dns=answer.status.value,
            )
        ]
    if answer.status is DnsStatus.NODATA:
        return [_implicit_mx(domain)]
    if not answer.ok:
        return [dns_error("mx.present", answer, f"the MX records of {domain}")]
    records = sorted(
        (r for r in answer.records if isinstance(r, MxRecord)),
        key=lambda r: (r.preference, r.exchange.lower()),
    )
    shown = [f"{r.preference} {r.exchange or '.'}" for r in records]
    if any(not r.exchange for r in records):
        return _null_mx(domain, records, shown)
    present = passed("mx.present", f"{len(records)} MX record(s) published", mx=shown)
    not_null = passed("mx.null", "no null MX: the domain accepts mail", mx=shown)
    hosts = await _resolve_hosts(ctx.resolver, records)
    results = [present, not_null, _address(hosts), _cname(hosts)]
    addresses = tuple(dict.fromkeys(a for h in hosts for a in h.addresses))
    reverse = await asyncio.gather(*(fcrdns(ctx.resolver, a) for a in addresses))
    results += [_ptr(hosts, reverse), _forward(hosts, reverse)]
    return results


def _implicit_mx(domain: str) -> CheckResult:
    # RFC 5321 §5.1: without MX, the domain's own A/AAAA is used as an implicit MX.
    return warn(
        "mx.present",
        f"{domain} publishes no MX record: mail falls back to its A/AAAA record (implicit "
        "MX, RFC 5321 §5.1), which is rarely a mail server; publish an MX record naming "
        "the host that receives your bounces and replies",
        fix=f"{domain}. MX 10 mail.{domain}.",
        dns=DnsStatus.NODATA.value,
    )


def _null_mx(domain: str, records: Sequence[MxRecord], shown: list[str]) -> list[CheckResult]:
    # RFC 7505 §3: a null MX is the only MX record, preference 0, exchange "."; it says
    # the domain accepts no mail, so bounces and replies to a sending domain are lost.
    alone = len(records) == 1
    extra = "" if alone else (" and it is mixed with other MX records, which RFC 7505 §3 forbids")
    return [
        passed("mx.present", "MX published: a null MX (see mx.null)", mx=shown),
        fail(
            "mx.null",
            f"{domain} publishes a null MX ({_NULL_MX_FIX}, RFC 7505): it accepts no mail, so "
            f"bounces and replies to mail it sends cannot come back{extra}; replace it with "
            "MX records naming your mail hosts",
            fix=f"{domain}. MX 10 mail.{domain}.",
            mx=shown,
        ),
    ]


async def _resolve_hosts(resolver: Resolver, records: Sequence[MxRecord]) -> list[MxHost]:
    preference: dict[str, int] = {}
    for record in records:
        preference.setdefault(record.exchange.lower(), record.preference)
    names = list(preference)
    answers = await asyncio.gather(
        *(resolver.query(name, rdtype) for name in names for rdtype in ("A", "AAAA"))
    )
    hosts = []
    for index, name in enumerate(names):
        pair = answers[2 * index : 2 * index + 2]
        addresses = tuple(a for answer in pair if answer.ok for a in answer.addresses())
        cnames = next((answer.cnames for answer in pair if answer.cnames), ())
        failure = next((a for a in pair if not a.status.definitive), None)
        hosts.append(MxHost(name, preference[name], addresses, cnames, failure))
    return hosts


def _host_evidence(host: MxHost) -> dict[str, Any]:
    out: dict[str, Any] = {
        "host": host.name,
        "preference": host.preference,
        "addresses": list(host.addresses),
    }
    if host.cnames:
        out["cnames"] = list(host.cnames)
    if host.failure is not None:
        out["failed_lookup"] = f"{host.failure.rdtype} {host.failure.name}"
        out["failed_status"] = host.failure.status.value
    return out


def _address(hosts: Sequence[MxHost]) -> CheckResult:
    evidence = [_host_evidence(h) for h in hosts]
    missing = [h.name for h in hosts if not h.addresses and h.failure is None]
    unknown = [h.name for h in hosts if h.unknown]
    literal = [name for name in missing if is_ip(name)]
    hint = (
        f"; {', '.join(literal)} is an IP address, but an MX must name a host "
        "(RFC 5321 §5.1): publish an A record for a host name and point the MX at it"
        if literal
        else ""
    )
    if missing and len(missing) == len(hosts):
        return fail(
            "mx.address",
            f"no MX host has an A or AAAA record ({', '.join(missing)}): no mail can be "
            f"delivered to the domain; publish addresses for them{hint}",
            hosts=evidence,
        )
    if missing:
        return warn(
            "mx.address",
            f"MX host(s) without an A or AAAA record: {', '.join(missing)}; publish their "
            f"addresses or remove those MX records{hint}",
            hosts=evidence,
        )
    if unknown:
        return error(
            "mx.address",
            f"could not look up the addresses of {', '.join(unknown)}; check not made",
            hosts=evidence,
        )
    return passed("mx.address", "every MX host has an address", hosts=evidence)


def _cname(hosts: Sequence[MxHost]) -> CheckResult:
    aliased = [h for h in hosts if h.cnames]
    evidence = [_host_evidence(h) for h in hosts]
    if aliased:
        shown = ", ".join(f"{h.name} -> {h.cnames[-1]}" for h in aliased)
        return warn(
            "mx.cname",
            f"MX target is a CNAME (RFC 2181 §10.3): {shown}; point the MX record at the "
            "canonical name instead, some senders refuse aliases",
            hosts=evidence,
        )
    unknown = [h.name for h in hosts if h.unknown]
    if unknown:
        return error(
            "mx.cname", f"could not look up {', '.join(unknown)}; check not made", hosts=evidence
        )
    return passed("mx.cname", "no MX target is a CNAME", hosts=evidence)


def _owners(hosts: Sequence[MxHost]) -> Mapping[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for host in hosts:
        for address in host.addresses:
            owners.setdefault(address, []).append(host.name)
    return owners


def _reverse_evidence(hosts: Sequence[MxHost], found: Sequence[ReverseDns]) -> list[Any]:
    owners = _owners(hosts)
    return [{**r.to_evidence(), "hosts": owners.get(r.ip, [])} for r in found]


def _ptr(hosts: Sequence[MxHost], found: Sequence[ReverseDns]) -> CheckResult:
    evidence = _reverse_evidence(hosts, found)
    if not found:
        return passed("mx.ptr", "no MX address to check", addresses=evidence)
    missing = [r.ip for r in found if not r.has_ptr and r.failure is None]
    failed = [r.ip for r in found if not r.has_ptr and r.failure is not None]
    if missing:
        return warn(
            "mx.ptr",
            f"MX address has no PTR: {', '.join(missing)}; ask the address's provider to "
            "publish a PTR naming the MX host (mail servers that check it may refuse "
            "connections from or to it)",
            addresses=evidence,
        )
    if failed:
        return error(
            "mx.ptr",
            f"could not look up the PTR of {', '.join(failed)}; check not made",
            addresses=evidence,
        )
    return passed("mx.ptr", f"every MX address has a PTR record ({len(found)})", addresses=evidence)


def _forward(hosts: Sequence[MxHost], found: Sequence[ReverseDns]) -> CheckResult:
    evidence = _reverse_evidence(hosts, found)
    with_ptr = [r for r in found if r.has_ptr]
    if not with_ptr:
        if found and all(r.failure is None for r in found):
            return warn(
                "mx.fcrdns", "no MX address has a PTR to confirm (see mx.ptr)", addresses=evidence
            )
        if found:
            return error(
                "mx.fcrdns",
                "could not look up the MX addresses' PTR records; check not made",
                addresses=evidence,
            )
        return passed("mx.fcrdns", "no MX address to check", addresses=evidence)
    mismatch = [r for r in with_ptr if not r.is_confirmed and not r.unknown]
    if mismatch:
        shown = "; ".join(f"{r.ip} -> {', '.join(r.names)}" for r in mismatch)
        return warn(
            "mx.fcrdns",
            f"PTR does not resolve back (FCrDNS mismatch): {shown}; give each PTR name an "
            "A/AAAA record holding the address, or point the PTR at the MX host's name",
            addresses=evidence,
        )
    unknown = [r.ip for r in with_ptr if r.unknown]
    if unknown:
        return error(
            "mx.fcrdns",
            f"could not confirm the PTR names of {', '.join(unknown)}; check not made",
            addresses=evidence,
        )
    return passed(
        "mx.fcrdns", "every MX address's PTR name resolves back to it", addresses=evidence
    )


# --- benchmark verdict ---------------------------------------------------------------

#: check id and the statuses that give a verdict, in order of precedence
_PRECEDENCE: tuple[tuple[str, frozenset[Status], str], ...] = (
    ("mx.null", frozenset({Status.FAIL}), "null"),
    ("mx.address", frozenset({Status.WARN, Status.FAIL}), "no_address"),
    ("mx.ptr", frozenset({Status.WARN, Status.FAIL}), "no_ptr"),
    ("mx.fcrdns", frozenset({Status.WARN, Status.FAIL}), "ptr_mismatch"),
    ("mx.cname", frozenset({Status.WARN, Status.FAIL}), "cname"),
    ("mx.present", frozenset({Status.WARN, Status.FAIL}), "missing"),
)


def verdict(results: Sequence[CheckResult]) -> str:
    """One word for the benchmark's ground truth: the first problem by the precedence of
    :data:`VERDICTS` ("error" when a check could not be made and nothing else is wrong)."""
    status = {r.id: r.status for r in results if r.id.startswith("mx.")}
    for check_id, statuses, word in _PRECEDENCE:
        if status.get(check_id) in statuses:
            return word
    if Status.ERROR in status.values():
        return "error"
    return "ok"
