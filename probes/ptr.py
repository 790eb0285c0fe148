"""Reverse DNS of the sending IPs: a PTR record, forward-confirmed (FCrDNS), not generic.

Gmail, Yahoo and Outlook all want the connecting IP to have a PTR record whose name
resolves back to that IP (forward-confirmed reverse DNS); Gmail rejects mail from an IP
without one (550 5.7.25). A PTR that looks like an ISP's generic name for a dynamic address
("c-73-12-34-56.hsd1.example.net", "dsl-pool-...") passes FCrDNS but is scored as a
residential sender, so it is reported as a warning.

:func:`fcrdns` is the one code path for forward-confirmed reverse DNS; :mod:`probes.mx`
uses it for the MX addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deliver.dns import DnsAnswer, DnsStatus, Resolver
from probes.checks import CheckResult, ProbeContext, error, fail, passed, warn

__all__ = ["ReverseDns", "audit", "fcrdns", "is_ip", "judge", "looks_generic", "reverse_name"]

#: PTR names checked forward per address (a long PTR RRset is itself a misconfiguration)
MAX_PTR_NAMES = 10

#: labels ISPs use in generic names for dynamic or residential addresses
_GENERIC_WORDS = re.compile(
    r"(?:^|[.\-_\d])"
    r"(?:dyn|dynamic|dynip|pool|dsl|adsl|vdsl|xdsl|dhcp|dialup|dial|ppp|pppoe|cable|"
    r"broadband|cpe|customer|client|residential|unassigned)"
    r"(?:$|[.\-_\d])"
)
_DIGITS = re.compile(r"\d+")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address



def is_ip(text: str) -> bool:
    """``text`` is an IPv4 or IPv6 address (not a host name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

def reverse_name(ip: str) -> str:
    """The PTR owner name: ``4.3.2.1.in-addr.arpa``, or the nibbles under ``ip6.arpa``.

    Raises ValueError when ``ip`` is not an address."""
    return ipaddress.ip_address(ip).reverse_pointer


def looks_generic(name: str, ip: str) -> bool:
    """True when a PTR name looks like an ISP's generic name for a dynamic address:
    it holds all four octets of the IPv4 address (in either order, or as 12 digits),
    or a word such as ``dynamic``, ``pool`` or ``dsl``."""
    lowered = name.lower()
    if _GENERIC_WORDS.search(lowered):
        return True
    address = ipaddress.ip_address(ip)
    if address.version != 4:
        return address.exploded.replace(":", "") in lowered.replace("-", "")
    octets = [int(part) for part in str(address).split(".")]
    groups = _DIGITS.findall(lowered)
    if "".join(f"{o:03d}" for o in octets) in groups:
        return True
    numbers = [int(group) for group in groups if len(group) <= 3]
    return _contains_run(numbers, octets) or _contains_run(numbers, octets[::-1])


def _contains_run(numbers: Sequence[int], run: Sequence[int]) -> bool:
    width = len(run)
    return any(list(numbers[i : i + width]) == list(run) for i in range(len(numbers) - width + 1))


@dataclass(frozen=True, slots=True)
class ReverseDns:
    """What reverse and forward lookups of one address found."""

    ip: str
    reverse_name: str
    #: the PTR lookup's status (OK, NXDOMAIN, NODATA, or a failure)
    ptr_status: DnsStatus
    #: the PTR names, without final dot
    names: tuple[str, ...] = ()
    #: the PTR names whose A/AAAA records include the address
    confirmed: tuple[str, ...] = ()
    #: the first lookup that could not be made (PTR, or a forward one), if any
    failure: DnsAnswer | None = None
    #: ``ip`` is not an IP address
    invalid: bool = False

    @property
    def has_ptr(self) -> bool:
        return bool(self.names)

    @property
    def is_confirmed(self) -> bool:
        return bool(self.confirmed)

    @property
    def unknown(self) -> bool:
        """The lookups that would decide could not be made."""
        return self.failure is not None and not self.confirmed

    @property
    def generic(self) -> bool:
        return any(looks_generic(name, self.ip) for name in self.names)

    def to_evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ip": self.ip,
            "reverse_name": self.reverse_name,
            "ptr": list(self.names),
            "confirmed": list(self.confirmed),
            "dns": self.ptr_status.value,
        }
        if self.failure is not None:
            out["failed_lookup"] = f"{self.failure.rdtype} {self.failure.name}"
            out["failed_status"] = self.failure.status.value
        return out


async def fcrdns(resolver: Resolver, ip: str) -> ReverseDns:
    """Forward-confirmed reverse DNS of ``ip``: its PTR names, and those whose A (IPv4)
    or AAAA (IPv6) records include it. Never raises for DNS failures: they are kept
    in ``failure``."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ReverseDns(ip, "", DnsStatus.NXDOMAIN, invalid=True)
    rname = address.reverse_pointer
    answer = await resolver.query(rname, "PTR")
    if not answer.ok:
        failed = None if answer.status.definitive else answer
        return ReverseDns(str(address), rname, answer.status, failure=failed)
    names = tuple(dict.fromkeys(r for r in answer.records if isinstance(r, str) and r))
    rdtype = "A" if address.version == 4 else "AAAA"
    forwards = await asyncio.gather(
        *(resolver.query(name, rdtype) for name in names[:MAX_PTR_NAMES])
    )
    confirmed: list[str] = []
    failure: DnsAnswer | None = None
    for name, forward in zip(names, forwards, strict=False):
        if forward.ok and _includes(forward.addresses(), address):
            confirmed.append(name)
        elif not forward.status.definitive and failure is None:
            failure = forward
    return ReverseDns(str(address), rname, answer.status, names, tuple(confirmed), failure)


def _includes(addresses: Sequence[str], address: _Address) -> bool:
    for text in addresses:
        try:
            if ipaddress.ip_address(text) == address:
                return True
        except ValueError:
            continue
    return False


# --- the sending IPs' checks -----------------------------------------------------------


async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]:
    """``ptr.present`` and ``ptr.fcrdns`` for ``ctx.options.ips`` (none given: no results)."""
    ips = tuple(dict.fromkeys(ctx.options.ips))
    if not ips:
        return []
    return judge(await asyncio.gather(*(fcrdns(ctx.resolver, ip) for ip in ips)))


def judge(found: Sequence[ReverseDns]) -> list[CheckResult]:
    """``ptr.present`` and ``ptr.fcrdns`` for what :func:`fcrdns` found (the lab's
    receivers judge the connecting IP with it)."""
    return [_present(found), _forward(found)]


def _present(found: Sequence[ReverseDns]) -> CheckResult:
    evidence = [r.to_evidence() for r in found]
    invalid = [r.ip for r in found if r.invalid]
    missing = [r.ip for r in found if not r.has_ptr and not r.invalid and r.failure is None]
    failed = [r.ip for r in found if not r.has_ptr and r.failure is not None]
    generic = [r.ip for r in found if r.generic]
    if missing:
        return fail(
            "ptr.present",
            f"no PTR record for {_list(missing)}: ask whoever assigns the address (hosting "
            "provider or ISP) to publish a PTR naming a host whose A/AAAA record points back "
            "to it; Gmail rejects mail from IPs without one (550 5.7.25)",
            ips=evidence,
        )
    if invalid:
        return error("ptr.present", f"not an IP address: {_list(invalid)}", ips=evidence)
    if failed:
        return error(
            "ptr.present",
            f"could not look up the PTR record of {_list(failed)}; check not made",
            ips=evidence,
        )
    if generic:
        names = sorted({n for r in found if r.generic for n in r.names})
        return warn(
            "ptr.present",
            f"the PTR name of {_list(generic)} looks generic ({_list(names)}), like an ISP's "
            "name for a dynamic address: Gmail and Outlook score such senders as residential; "
            "publish a PTR naming your mail host (e.g. mail.<your domain>)",
            ips=evidence,
        )
    return passed("ptr.present", f"every sending IP has a PTR record ({len(found)})", ips=evidence)


def _forward(found: Sequence[ReverseDns]) -> CheckResult:
    evidence = [r.to_evidence() for r in found]
    usable = [r for r in found if not r.invalid]
    unconfirmed = [r for r in usable if not r.is_confirmed and not r.unknown]
    unknown = [r.ip for r in usable if r.unknown]
    if unconfirmed:
        parts = [
            f"{r.ip} (PTR {_list(r.names)} does not resolve back to it)"
            if r.has_ptr
            else f"{r.ip} (no PTR)"
            for r in unconfirmed
        ]
        return fail(
            "ptr.fcrdns",
            f"reverse DNS is not forward-confirmed for {'; '.join(parts)}: the PTR name must "
            "have an A/AAAA record holding the same IP",
            ips=evidence,
        )
    if unknown:
        return error(
            "ptr.fcrdns",
            f"could not confirm reverse DNS for {_list(unknown)}; check not made",
            ips=evidence,
        )
    if len(usable) < len(found):
        invalid = [r.ip for r in found if r.invalid]
        return error("ptr.fcrdns", f"not an IP address: {_list(invalid)}", ips=evidence)
    return passed("ptr.fcrdns", "every sending IP's PTR name resolves back to it", ips=evidence)


def _list(items: Sequence[str]) -> str:
    return ", ".join(items)
