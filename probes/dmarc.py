"""DMARC: find the record a receiver would apply (RFC 7489 §6.6.3) and audit it.

:func:`discover` asks for ``_dmarc.<domain>`` and, when no DMARC record is there, for
``_dmarc.<organisational domain>`` (RFC 7489 §3.2, from the Public Suffix List of the
``publicsuffixlist`` package, offline). A lookup that fails is an ``error`` outcome, never
"missing". :func:`audit` turns the discovery into the ``dmarc.*`` checks, asking report
destinations outside the domain whether they accept its reports (RFC 7489 §7.1).
:func:`organizational_domain` and :func:`aligned` serve message evaluation too.
The record grammar lives in :mod:`probes.dmarc_record`.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from publicsuffixlist import PublicSuffixList

from deliver.dns import DnsAnswer, Resolver
from probes.checks import CheckResult, ProbeContext, Status, dns_error, fail, passed, warn
from probes.dmarc_record import (
    ALIGNMENT,
    RUA,
    RUF,
    SYNTAX,
    DmarcRecord,
    NotDmarcRecord,
    dmarcbis_notes,
    parse,
    weaker,
)

__all__ = [
    "Discarded",
    "DmarcDiscovery",
    "aligned",
    "audit",
    "discover",
    "organizational_domain",
    "verdict",
]

PRESENT, MULTIPLE, POLICY, SUBDOMAIN = "dmarc.present", "dmarc.multiple", "dmarc.policy", (
    "dmarc.subdomain_policy")  # fmt: skip
EXTERNAL, DMARCBIS = "dmarc.external_auth", "dmarc.dmarcbis"

_LOOKS_LIKE_DMARC = re.compile(r"\s*v\s*=\s*DMARC", re.I)
# RFC 7489 §7.1: the destination authorises with a record that begins with v=DMARC1
_AUTHORISES = re.compile(r"\s*v\s*=\s*DMARC1\s*(?:;|$)")


@functools.cache
def _suffixes() -> PublicSuffixList:
    # the bundled list, parsed once per process (a constant table, not a cache of results)
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The organisational domain (RFC 7489 §3.2): the public suffix plus one label.

    ``d0001.bench.test`` -> ``bench.test`` (an unlisted TLD is one label, the PSL's ``*``
    rule). A public suffix itself (``co.uk``) is its own organisational domain."""
    return _organizational(domain.lower().rstrip("."))


@functools.lru_cache(maxsize=65536)
def _organizational(name: str) -> str:
    # memoised: the PSL library IDNA-encodes every label on each call (~100 µs), and one
    # audit asks for the same names several times (policy, report destinations, BIMI)
    return _suffixes().privatesuffix(name) or name


def aligned(a: str, b: str, mode: str) -> bool:
    """Identifier alignment (RFC 7489 §3.1): ``s``/``strict`` the same name, ``r``/``relaxed``
    the same organisational domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode in ("s", "strict"):
        return a == b
    if mode in ("r", "relaxed"):
        return a == b or organizational_domain(a) == organizational_domain(b)
    raise ValueError(f"alignment mode must be r, s, relaxed or strict, not {mode!r}")


@dataclass(frozen=True, slots=True)
class Discarded:
    """A TXT record at a ``_dmarc`` name that receivers discard (not a DMARC record)."""

    name: str
    text: str
    kind: str
    reason: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class DmarcDiscovery:
    """Which DMARC record applies to ``domain``, and how it was found.

    ``outcome``: ``found`` (``record`` is set), ``missing``, ``multiple`` (several DMARC
    records at ``found_at``: none applies, RFC 7489 §6.6.3) or ``error`` (a lookup could
    not be made: ``failed`` is that answer)."""

    domain: str
    org_domain: str
    outcome: str
    record: DmarcRecord | None = None
    #: the DMARC records (text beginning with v=DMARC1) at ``found_at``
    texts: tuple[str, ...] = ()
    #: the name the records were found at, e.g. ``_dmarc.example.com``
    found_at: str | None = None
    #: the record is the organisational domain's (none at the domain itself)
    from_org: bool = False
    #: why no record applies, for a person ("" when one does)
    problem: str = ""
    #: the status of the lookup that decided the outcome
    dns: str = "ok"
    #: TXT records at _dmarc names that receivers discard (SPF, v=DMARC2, v not first, ...)
    discarded: tuple[Discarded, ...] = ()
    #: DMARC-looking TXT records at the domain itself (looked up only when none applies)
    apex: tuple[str, ...] = ()
    failed: DnsAnswer | None = None

    @property
    def policy_domain(self) -> str | None:
        """The domain whose record applies (the domain or its organisational domain)."""
        return self.found_at.removeprefix("_dmarc.") if self.found_at else None


async def discover(resolver: Resolver, domain: str) -> DmarcDiscovery:
    """Policy discovery as a receiver does it (RFC 7489 §6.6.3 steps 1-5)."""
    domain = domain.lower().rstrip(".")
    org = organizational_domain(domain)
    names = [domain] if org == domain else [domain, org]
    discarded: tuple[Discarded, ...] = ()
    first: DnsAnswer | None = None
    for name in names:
        where = f"_dmarc.{name}"
        answer = await resolver.query(where, "TXT")
        first = first or answer
        if not answer.status.definitive:
            problem = f"could not look up TXT {where}: {answer.status.value}"
            return DmarcDiscovery(domain, org, "error", found_at=where, problem=problem,
                                  from_org=name != domain, dns=answer.status.value,
                                  failed=answer)  # fmt: skip
        records, dropped = _split(answer)
        if records:
            return _decided(domain, org, answer, records, discarded, from_org=name != domain)
        discarded += dropped
    apex = await resolver.query(domain, "TXT")
    at_apex = tuple(t for t in apex.texts() if _LOOKS_LIKE_DMARC.match(t))
    assert first is not None
    return DmarcDiscovery(domain, org, "missing", problem=_missing(domain, org, discarded, at_apex),
                          dns=first.status.value, discarded=discarded, apex=at_apex)  # fmt: skip


def _split(answer: DnsAnswer) -> tuple[list[DmarcRecord], tuple[Discarded, ...]]:
    """The DMARC records among the TXT records at a _dmarc name, and the others, which
    receivers discard (RFC 7489 §6.6.3 step 2)."""
    records: list[DmarcRecord] = []
    dropped: list[Discarded] = []
    for text in answer.texts():
        try:
            records.append(parse(text))
        except NotDmarcRecord as exc:
            dropped.append(Discarded(answer.name, text, exc.kind, exc.reason, exc.fix))
    return records, tuple(dropped)


def _decided(
    domain: str, org: str, answer: DnsAnswer, records: list[DmarcRecord],
    discarded: tuple[Discarded, ...], *, from_org: bool,
) -> DmarcDiscovery:  # fmt: skip
    texts = tuple(r.text for r in records)
    common: dict[str, Any] = {"texts": texts, "found_at": answer.name, "from_org": from_org,
                              "dns": answer.status.value, "discarded": discarded}  # fmt: skip
    if len(records) > 1:
        problem = (f"{len(records)} DMARC records at {answer.name}: receivers apply none of "
                   "them (RFC 7489 §6.6.3 step 5)")  # fmt: skip
        return DmarcDiscovery(domain, org, "multiple", problem=problem, **common)
    return DmarcDiscovery(domain, org, "found", record=records[0], **common)


def _missing(domain: str, org: str, discarded: tuple[Discarded, ...], apex: tuple[str, ...]) -> str:
    where = f"_dmarc.{domain}" + (f" nor at _dmarc.{org}" if org != domain else "")
    parts = [f"no DMARC record at {where}"]
    for item in discarded:
        parts.append(f"the TXT record at {item.name} ({_short(item.text)}) is {item.reason}"
                     if item.kind == "spf" else
                     f"the TXT record at {item.name} ({_short(item.text)}) is not a DMARC "
                     f"record: {item.reason}")  # fmt: skip
    if apex:
        parts.append(f"a DMARC record is published at {domain} itself, where receivers never "
                     f"look (RFC 7489 §6.1): publish it at _dmarc.{domain} instead")  # fmt: skip
    return "; ".join(parts)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the checks --------------------------------------------------------------------------


async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]:
    """The ``dmarc.*`` checks for ``domain``."""
    found = await discover(ctx.resolver, domain)
    if found.outcome == "error":
        assert found.failed is not None
        return [dns_error(PRESENT, found.failed, f"the DMARC record (TXT {found.found_at})")]
    if found.outcome == "missing":
        return [_missing_result(found)]
    if found.outcome == "multiple":
        return [_present(found), _multiple(found)]
    record = found.record
    assert record is not None
    return [
        _present(found), passed(MULTIPLE, f"one DMARC record at {found.found_at}"),
        _syntax(found, record), _policy(found, record), _subdomain(record),
        _alignment(record), _rua(found, record), _ruf(record),
        await _external(ctx.resolver, found, record), _dmarcbis(record),
    ]  # fmt: skip


def _suggested(domain: str) -> str:
    return f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"


def _missing_result(found: DmarcDiscovery) -> CheckResult:
    fix = next((item.fix for item in found.discarded if item.fix), None)
    if fix is None and found.apex:
        fix = _fix_of(found.apex[0])
    if fix or found.apex:
        action = ""
    elif found.discarded:
        action = f"; replace it with a DMARC record, e.g. {_suggested(found.domain)}"
    else:
        action = (f": publish one at _dmarc.{found.domain}, e.g. {_suggested(found.domain)}, "
                  "and raise p once the aggregate reports are clean")  # fmt: skip
    return fail(PRESENT, found.problem + action, fix or _suggested(found.domain),
                **_present_evidence(found))  # fmt: skip


def _fix_of(text: str) -> str | None:
    try:
        return parse(text).fixed
    except NotDmarcRecord as exc:
        return exc.fix


def _present_evidence(found: DmarcDiscovery) -> dict[str, Any]:
    return {
        "found_at": found.found_at, "records": list(found.texts), "org_domain": found.org_domain,
        "from_org": found.from_org, "dns": found.dns,
        "discarded": [{"name": d.name, "text": d.text, "kind": d.kind, "reason": d.reason}
                      for d in found.discarded],
        "apex": list(found.apex),
    }  # fmt: skip


def _present(found: DmarcDiscovery) -> CheckResult:
    evidence = _present_evidence(found)
    if found.discarded:  # the domain's own record is broken: the org's applies meanwhile
        own = found.discarded[0]
        message = (f"the TXT record at {own.name} is not a DMARC record: {own.reason}; "
                   f"receivers discard it and apply the record at {found.found_at} "
                   "instead")  # fmt: skip
        return fail(PRESENT, message, own.fix or _suggested(found.domain), **evidence)
    if found.from_org:
        message = (f"no record at _dmarc.{found.domain}; the organisational domain's record at "
                   f"{found.found_at} applies (RFC 7489 §6.6.3)")  # fmt: skip
        return passed(PRESENT, message, **evidence)
    count = len(found.texts)
    what = "a DMARC record" if count == 1 else f"{count} DMARC records"
    more = "" if count == 1 else " (see dmarc.multiple)"
    return passed(PRESENT, f"{what} at {found.found_at}{more}", **evidence)


def _multiple(found: DmarcDiscovery) -> CheckResult:
    fix = _fix_of(found.texts[0])
    message = f"{found.problem}: keep exactly one and remove the others"
    return fail(MULTIPLE, message, fix, found_at=found.found_at, records=list(found.texts))


def _record_evidence(record: DmarcRecord, **more: Any) -> dict[str, Any]:
    return {"record": record.text, "tags": dict(record.tags), **more}


def _faults(record: DmarcRecord, check: str, fixing: str) -> CheckResult | None:
    problems = record.problems_for(check)
    if not problems:
        return None
    bis = [p.dmarcbis for p in problems if p.dmarcbis]
    message = "; ".join(p.message for p in problems)
    if bis:
        message += " (under DMARCbis, RFC 9989: " + "; ".join(bis) + ")"
    return fail(check, f"{message}; {fixing}", record.fixed, **_record_evidence(
        record, problems=[p.message for p in problems], dmarcbis=bis, unknown=list(record.unknown),
    ))  # fmt: skip


def _syntax(found: DmarcDiscovery, record: DmarcRecord) -> CheckResult:
    bad = _faults(record, SYNTAX, "publish the corrected record")
    if bad is not None:
        return bad
    message = f"the record at {found.found_at} is valid"
    if record.unknown:
        names = ", ".join(f"{n}=" for n in record.unknown)
        message += f"; unknown tags {names} are ignored by receivers (RFC 7489 §6.3)"
    return passed(SYNTAX, message, **_record_evidence(record, unknown=list(record.unknown)))


def _policy(found: DmarcDiscovery, record: DmarcRecord) -> CheckResult:
    applied = record.applied_policy(subdomain=found.from_org)
    tag = "sp" if found.from_org and record.sp else "p"
    evidence = _record_evidence(record, applied=applied, pct=record.pct, tag=tag)
    published = record.sp if tag == "sp" else record.p
    if applied is None or applied != published:
        result = ("no DMARC policy at all" if applied is None else f"p={applied}")
        message = (f"receivers apply {result}: the record has no valid p or sp"
                   + ("" if record.intact else " they can read") + " (RFC 7489 §6.6.3 step 6); "
                   "publish the corrected record (see dmarc.syntax)")  # fmt: skip
        return warn(POLICY, message, record.fixed, **evidence)
    whose = (f" (the organisational domain's {tag}=, from {found.found_at})"
             if found.from_org else "")  # fmt: skip
    if applied == "none":
        message = (f"{tag}=none{whose}: monitoring only, nothing is quarantined or rejected; "
                   "move to quarantine, then reject, once the aggregate reports are "
                   "clean")  # fmt: skip
        return warn(POLICY, message, record.with_tags(**{tag: "quarantine"}), **evidence)
    if applied == "quarantine" and record.pct < 100:
        message = (f"p=quarantine with pct={record.pct}{whose}: only {record.pct}% of failing "
                   "mail is quarantined, the rest is delivered as under p=none; remove pct "
                   "(100 applies; DMARCbis removes pct)")  # fmt: skip
        return warn(POLICY, message, record.with_tags(pct=None), **evidence)
    sampled = (f" with pct={record.pct} (the rest is quarantined, RFC 7489 §6.6.4)"
               if record.pct < 100 else "")  # fmt: skip
    return passed(POLICY, f"{tag}={applied}{whose}{sampled}: mail failing DMARC is "
                  + ("rejected" if applied == "reject" else "quarantined"), **evidence)  # fmt: skip


def _subdomain(record: DmarcRecord) -> CheckResult:
    evidence = _record_evidence(record, sp=record.sp, np=record.np,
                                effective_sp=record.effective_sp,
                                effective_np=record.effective_np)  # fmt: skip
    invalid = [f"{n}={record.tag(n)}" for n in ("sp", "np")
               if record.tag(n) is not None and getattr(record, n) is None]  # fmt: skip
    if invalid:
        message = (f"{' and '.join(invalid)} not valid (see dmarc.syntax)"
                   + ("; with sp invalid receivers act as p=none for all mail (RFC 7489 §6.6.3)"
                      if record.tag("sp") is not None and record.sp is None else ""))  # fmt: skip
        return warn(SUBDOMAIN, message, record.fixed, **evidence)
    p = record.p
    weak = [n for n in ("sp", "np") if p and getattr(record, n) and weaker(getattr(record, n), p)]
    if weak and p:
        names = " and ".join(f"{n}={getattr(record, n)}" for n in weak)
        message = (f"{names} weaker than p={p}: mail from subdomains (which anyone can invent) "
                   f"is not held to p={p}; remove {' and '.join(weak)} so subdomains "
                   "follow p")  # fmt: skip
        return warn(SUBDOMAIN, message, record.with_tags(**dict.fromkeys(weak)), **evidence)
    if p is None:
        return passed(SUBDOMAIN, "no sp or np: subdomains follow p, which is not valid "
                      "(see dmarc.policy)", **evidence)  # fmt: skip
    return passed(SUBDOMAIN, f"subdomains get {record.effective_sp}, non-existent subdomains "
                  f"{record.effective_np}", **evidence)  # fmt: skip


def _alignment(record: DmarcRecord) -> CheckResult:
    bad = _faults(record, ALIGNMENT, "publish the corrected record")
    if bad is not None:
        return bad
    mode = {"r": "relaxed", "s": "strict"}
    return passed(ALIGNMENT, f"DKIM alignment {mode[record.adkim]}, SPF alignment "
                  f"{mode[record.aspf]}", adkim=record.adkim, aspf=record.aspf)  # fmt: skip


def _rua(found: DmarcDiscovery, record: DmarcRecord) -> CheckResult:
    bad = _faults(record, RUA, "publish the corrected record")
    if bad is not None:
        return bad
    if not record.rua:
        address = f"mailto:dmarc-reports@{found.policy_domain}"
        message = ("no rua: no receiver sends you aggregate reports, so you cannot see who "
                   f"sends as your domain before raising p; add rua={address}")  # fmt: skip
        return warn(RUA, message, record.with_tags(rua=address), **_record_evidence(record))
    uris = [u.uri for u in record.rua]
    return passed(RUA, "aggregate reports go to " + ", ".join(uris), rua=uris)


def _ruf(record: DmarcRecord) -> CheckResult:
    bad = _faults(record, RUF, "publish the corrected record")
    if bad is not None:
        return bad
    if not record.ruf:
        return passed(RUF, "no ruf: failure reports are optional (few receivers send them)")
    uris = [u.uri for u in record.ruf]
    return passed(RUF, "failure reports go to " + ", ".join(uris), ruf=uris)


async def _external(resolver: Resolver, found: DmarcDiscovery, record: DmarcRecord) -> CheckResult:
    """RFC 7489 §7.1: a destination outside the policy domain's organisational domain must
    publish ``<policy-domain>._report._dmarc.<destination>`` TXT ``v=DMARC1``."""
    domain = found.policy_domain or found.domain
    own = organizational_domain(domain)
    destinations = sorted({u.domain for u in (*record.rua, *record.ruf)
                           if organizational_domain(u.domain) != own})  # fmt: skip
    if not destinations:
        return passed(EXTERNAL, f"no report destination outside {own}: no authorisation needed")
    names = [f"{domain}._report._dmarc.{dest}" for dest in destinations]
    answers = await asyncio.gather(*(resolver.query(name, "TXT") for name in names))
    refused = [a for a in answers if a.status.definitive
               and not any(_AUTHORISES.match(t) for t in a.texts())]  # fmt: skip
    failed = [a for a in answers if not a.status.definitive]
    evidence: dict[str, Any] = {"destinations": destinations,
                "lookups": {a.name: a.status.value for a in answers},
                "unauthorised": [a.name for a in refused]}  # fmt: skip
    if refused:
        hosts = ", ".join(a.name.split("._report._dmarc.", 1)[1] for a in refused)
        needed = "; ".join(f'{a.name} TXT "v=DMARC1"' for a in refused)
        message = (f"reports will not be sent to {hosts}: no {needed} record authorises "
                   f"{domain}'s reports there (RFC 7489 §7.1); ask the destination to publish "
                   f"it, or send reports to an address under {own}")  # fmt: skip
        if failed:
            message += "; could not check " + ", ".join(a.name for a in failed)
        return warn(EXTERNAL, message, needed, **evidence)
    if failed:
        return dns_error(EXTERNAL, failed[0], f"the report authorisation TXT {failed[0].name}")
    return passed(EXTERNAL, "external report destinations authorise the reports: "
                  + ", ".join(destinations), **evidence)  # fmt: skip


def _dmarcbis(record: DmarcRecord) -> CheckResult:
    notes = dmarcbis_notes(record)
    message = ("under DMARCbis (RFC 9989): " + "; ".join(notes) if notes
               else "nothing in this record changes under DMARCbis (RFC 9989)")  # fmt: skip
    return passed(DMARCBIS, message, notes=notes)


def verdict(results: Sequence[CheckResult]) -> str:
    """``valid`` | ``missing`` | ``invalid`` | ``error``, for comparison with ground truth.

    ``error`` when the record could not be looked up; ``missing`` when nothing DMARC-like
    is published at _dmarc; ``invalid`` on any other failed check (a discarded record, a
    bad tag, several records); ``valid`` otherwise (warnings included)."""
    present = next((r for r in results if r.id == PRESENT), None)
    if present is None or present.status is Status.ERROR:
        return "error"
    if any(r.status is Status.FAIL and r.id != PRESENT for r in results):
        return "invalid"
    if present.status is Status.FAIL:
        return "invalid" if present.evidence.get("discarded") else "missing"
    return "valid"
