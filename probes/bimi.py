"""BIMI: the brand logo record at ``default._bimi.<domain>`` and the DMARC policy it needs.

BIMI is optional: without a record mail is delivered as before, only without a logo, so a
missing record passes. A record that is published but malformed fails, and so does one
whose domain lacks what receivers require before showing a logo: DMARC at enforcement
(``p=quarantine`` with ``pct=100``, or ``p=reject``; not ``sp=none``).

Record grammar (draft-brand-indicators-for-message-identification): ``v=BIMI1`` first, then
``l=`` the https URL of an SVG Tiny PS logo (empty ``l=`` with no ``a=`` declines BIMI),
``a=`` optionally the https URL of a VMC or CMC certificate (PEM). Unknown tags are ignored.
A domain without a record of its own uses its organisational domain's, as receivers do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from deliver.dns import Resolver
from probes.checks import CheckResult, ProbeContext, dns_error, error, fail, passed, warn
from probes.dmarc import discover, organizational_domain

__all__ = ["BimiRecord", "audit", "parse_record"]

SELECTOR = "default"
_SEP = re.compile(r"[ \t]*;[ \t]*")
_TAG = re.compile(r"[a-z][a-z0-9_]*")
_HOST = re.compile(r"(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+")


@dataclass(frozen=True, slots=True)
class BimiRecord:
    location: str
    authority: str

    @property
    def declined(self) -> bool:
        """``v=BIMI1; l=;`` with no authority: the domain asks for no logo to be shown."""
        return not self.location and not self.authority


def parse_record(text: str) -> tuple[BimiRecord | None, str | None, list[str]]:
    """``(record, None, notes)`` for a usable record, ``(None, reason, [])`` otherwise;
    ``notes`` are smaller problems (a logo URL not ending in .svg)."""
    fields = _SEP.split(text.strip())
    if fields and fields[-1] == "":
        fields.pop()
    if not fields or fields[0] != "v=BIMI1":
        return None, 'the record must begin with "v=BIMI1"', []
    tags: dict[str, str] = {}
    for item in fields[1:]:
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not eq or not _TAG.fullmatch(name):
            return None, f"{item!r} is not tag=value", []
        if name in tags:
            return None, f"tag {name!r} appears more than once", []
        tags[name] = value.strip()
    location, authority = tags.get("l", ""), tags.get("a", "")
    if "l" not in tags and not authority:
        return None, "the l= tag (the logo's https URL) is missing", []
    notes: list[str] = []
    for tag, url, suffix in (("l", location, ".svg"), ("a", authority, ".pem")):
        if not url:
            continue
        reason = _https_problem(tag, url)
        if reason:
            return None, reason, []
        if not urlsplit(url).path.lower().endswith(suffix):
            notes.append(f"{tag}={url} does not end in {suffix}")
    return BimiRecord(location, authority), None, notes


def _https_problem(tag: str, url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        return f"{tag}={url!r} must be an https: URL"
    if not parts.hostname or not _HOST.fullmatch(parts.hostname):
        return f"{tag}={url!r} has no valid host name"
    return None


async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]:
    """``bimi.record``, and ``bimi.dmarc`` when a record asks for a logo."""
    name = f"{SELECTOR}._bimi.{domain}"
    answer = await ctx.resolver.query(name, "TXT")
    texts = [t for t in answer.texts() if t.lower().startswith("v=bimi")]
    org = organizational_domain(domain)
    if answer.status.definitive and not texts and org != domain:
        # no record at the author domain: receivers use the organisational domain's
        name = f"{SELECTOR}._bimi.{org}"
        answer = await ctx.resolver.query(name, "TXT")
        texts = [t for t in answer.texts() if t.lower().startswith("v=bimi")]
    if not answer.status.definitive:
        return [dns_error("bimi.record", answer, f"the BIMI record {name}")]
    result, wants_logo = _judge_record(name, texts, answer.status.value)
    if not wants_logo:
        return [result]
    return [result, await _check_dmarc(ctx.resolver, domain)]


def _judge_record(name: str, texts: list[str], dns: str) -> tuple[CheckResult, bool]:
    """The record's result, and whether it asks for a logo (then DMARC is checked)."""
    if not texts:
        return passed(
            "bimi.record",
            f"no BIMI record at {name}: BIMI is optional; to show your logo next to your mail, "
            "publish an SVG logo over https and a v=BIMI1 record pointing at it (DMARC must "
            "be at enforcement first)",
            name=name,
            dns=dns,
        ), False
    if len(texts) > 1:
        return fail(
            "bimi.record",
            f"{len(texts)} BIMI records at {name}: keep exactly one",
            name=name,
            records=texts,
        ), False
    record, reason, notes = parse_record(texts[0])
    evidence: dict[str, Any] = {"name": name, "record": texts[0]}
    if record is None:
        return fail(
            "bimi.record", f"the BIMI record at {name} is malformed: {reason}", **evidence
        ), False
    if record.declined:
        return passed(
            "bimi.record", f"the BIMI record at {name} declines BIMI (empty l=)", **evidence
        ), False
    evidence.update(location=record.location, authority=record.authority)
    if notes:
        return warn(
            "bimi.record",
            f"BIMI record published, but {'; '.join(notes)}: "
            "check that the URLs serve an SVG logo and a PEM certificate",
            **evidence,
        ), True
    return passed(
        "bimi.record", f"BIMI record published (logo {record.location})", **evidence
    ), True


# --- DMARC, as BIMI needs it (found by probes.dmarc.discover) ---------------------------


async def _check_dmarc(resolver: Resolver, domain: str) -> CheckResult:
    found = await discover(resolver, domain)
    if found.outcome == "error":
        if found.failed is not None:
            return dns_error("bimi.dmarc", found.failed, f"the DMARC record of {domain}")
        return error("bimi.dmarc", f"{found.problem}; check not made")
    if found.outcome == "missing":
        return fail(
            "bimi.dmarc",
            f"{domain} has no DMARC record: BIMI needs DMARC at "
            "enforcement; publish one with p=quarantine or p=reject",
            fix=f'_dmarc.{domain}. TXT "v=DMARC1; p=quarantine"',
        )
    if found.record is None:  # several records: none applies
        return fail(
            "bimi.dmarc",
            f"{found.problem}; BIMI needs one DMARC record at enforcement",
            records=list(found.texts),
        )
    record, text = found.record, found.record.text
    owner = found.policy_domain or domain
    subdomain = owner != domain
    policy = record.applied_policy(subdomain=subdomain)
    evidence: dict[str, Any] = {
        "dmarc_domain": owner,
        "record": text,
        "policy": policy,
        "pct": record.pct,
    }
    enforced = policy == "reject" or (policy == "quarantine" and record.pct == 100)
    if not enforced:
        shown = f"p={policy}" if policy else "no valid p="
        if policy == "quarantine":
            shown += f" with pct={record.pct}"
        # a subdomain gets its policy from the parent's sp=; pct applies to both
        raise_to = {"sp" if subdomain else "p": "quarantine", "pct": None}
        return fail(
            "bimi.dmarc",
            f"DMARC for {domain} is not at enforcement ({shown}): "
            "receivers show BIMI logos only with p=quarantine at pct=100 or p=reject",
            fix=f'_dmarc.{owner}. TXT "{record.with_tags(**raise_to)}"',
            **evidence,
        )
    if not subdomain and record.sp == "none":
        return fail(
            "bimi.dmarc",
            f"the DMARC record of {domain} has sp=none: BIMI requires "
            "subdomains to be at enforcement too; remove sp= or raise it",
            fix=f'_dmarc.{owner}. TXT "{record.with_tags(sp=None)}"',
            **evidence,
        )
    return passed(
        "bimi.dmarc", f"DMARC is at enforcement (p={policy}), as BIMI requires", **evidence
    )
