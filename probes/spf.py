"""SPF (RFC 7208): audit a domain's record, and evaluate it for a sending IP with pyspf.

:func:`audit` fetches the record, then every include and redirect target concurrently
(``asyncio.gather``; the resolver caches what many domains share), together with the A and
MX answers of ``a``, ``mx`` and ``exists`` terms, and hands the tree to the pure walk in
:mod:`probes.spf_record`, which counts lookups and void lookups the worst-case way and says
where evaluation stops. One result per check id; every result's evidence carries the
record, the counts and the include depth. A lookup that fails while walking makes the
checks that depend on it ``error``, never ``fail``.

Over 10 lookups, ``spf.lookups`` carries a flattened record in ``fix`` (:func:`flatten`
resolves the addresses, :func:`probes.spf_record.flatten_tree` composes). :func:`evaluate` runs
pyspf for one IP with every lookup made by our :class:`~deliver.dns.Resolver`
(``query_sync``, same nameserver and port), through a subclass of ``spf.query``: pyspf's
module-level resolver is never replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deliver.dns import DnsAnswer, DnsStatus, Resolver, TxtRecord
from probes.checks import (
    CheckResult,
    ProbeContext,
    Status,
    dns_error,
    error,
    fail,
    passed,
    warn,
)
from probes.spf_record import (
    MAX_LOOKUPS,
    MAX_VOID_LOOKUPS,
    Flattened,
    Mechanism,
    Modifier,
    SpfNode,
    Stop,
    TermError,
    Walk,
    addresses_needed,
    count_lookups,
    flatten_tree,
    has_macro,
    parse_record,
    select_records,
)

__all__ = ["RESULTS", "SpfEvaluation", "audit", "evaluate", "fetch_tree", "flatten", "verdict"]

#: pyspf results, and what each means as a check status for a sending IP
RESULTS = {
    "pass": Status.PASS,
    "softfail": Status.WARN,
    "neutral": Status.WARN,
    "fail": Status.FAIL,
    "permerror": Status.FAIL,
    "none": Status.FAIL,
    "temperror": Status.ERROR,
}
#: checks whose failure makes the domain's SPF a permerror (spf.all, spf.ptr do not)
_PERMERROR_IDS = frozenset(
    {"spf.multiple", "spf.syntax", "spf.lookups", "spf.void_lookups", "spf.loop", "spf.includes"}
)
#: how many lookup terms the audit follows before it stops walking (a verifier stops at 10)
_WALK_BUDGET = 60
#: RFC 7208 §3.4: keep the record small enough for a 512-octet UDP answer
_RECORD_OCTETS = 450
#: the terms whose lookups the audit makes (ptr and macros depend on the message)
_FETCHED = frozenset({"include", "a", "mx", "exists"})
_TEMP = (DnsStatus.SERVFAIL, DnsStatus.REFUSED, DnsStatus.TIMEOUT)
#: common misspellings of mechanisms, for the fix of an unknown mechanism
_MISTAKES = {"ipv4": "ip4", "ipv6": "ip6", "ip": "ip4", "prt": "ptr", "al": "all", "all.": "all",
             "inlcude": "include", "incude": "include", "includes": "include"}  # fmt: skip


# --- audit ---------------------------------------------------------------------------


async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]:
    """``spf.*`` results for ``domain``; ``spf.result`` per IP in ``ctx.options.ips``."""
    domain = domain.rstrip(".").lower()
    root = await _fetch(ctx.resolver, domain)
    answer = root.answer
    if not answer.status.definitive:
        return [dns_error("spf.present", answer, f"the TXT records of {domain}")]
    if not root.records:
        return [_absent(domain, root)]
    present = passed("spf.present", "an SPF record is published", record=root.records[0])
    if len(root.records) > 1:
        return [present, _multiple(domain, root.records)]
    await _expand(ctx.resolver, root, [domain], _Budget())
    walk = count_lookups(root)
    report = _Report(domain, root, walk)
    results = [
        present, passed("spf.multiple", "exactly one SPF record", **report.base),
        report.syntax(), await report.lookups(ctx.resolver), report.voids(), report.loop(),
        report.includes(), report.all(), report.ptr(), report.length(),
    ]  # fmt: skip
    if ctx.options.ips:
        results += await _ip_results(ctx.resolver, domain, ctx.options.ips)
    return results


def verdict(results: Sequence[CheckResult]) -> str:
    """What a verifier would make of the domain's record: "none", "permerror", "temperror"
    or "valid", from its ``spf.*`` results (``spf.result`` is per IP: ignored)."""
    spf = [r for r in results if r.id.startswith("spf.") and r.id != "spf.result"]
    if any(r.id == "spf.present" and r.status is Status.FAIL for r in spf):
        return "none"
    if any(r.status is Status.FAIL and r.id in _PERMERROR_IDS for r in spf):
        return "permerror"
    if any(r.status is Status.ERROR for r in spf):
        return "temperror"
    return "valid"


@dataclass(slots=True)
class _Budget:
    left: int = _WALK_BUDGET


async def _fetch(resolver: Resolver, name: str) -> SpfNode:
    answer = await resolver.query(name, "TXT")
    node = SpfNode(name, answer)
    if answer.ok:
        node.records, node.malformed = select_records(answer.texts())
        if len(node.records) == 1:
            node.record = parse_record(node.records[0])
    return node


async def fetch_tree(resolver: Resolver, domain: str) -> SpfNode:
    """The record at ``domain`` and everything it includes or redirects to, fetched."""
    domain = domain.rstrip(".").lower()
    root = await _fetch(resolver, domain)
    await _expand(resolver, root, [domain], _Budget())
    return root


async def _expand(resolver: Resolver, node: SpfNode, path: list[str], budget: _Budget) -> None:
    """Fetch what the terms of ``node`` query, all at once; then the children's, likewise.

    Stops at a term that does not parse (evaluation ends there) and at a loop: a child
    already on ``path`` is fetched (to tell a loop from a missing record) but not walked.
    """
    record = node.record
    if record is None:
        return
    node.expanded = True
    keys: list[tuple[int, bool]] = []
    jobs: list[Awaitable[SpfNode | DnsAnswer]] = []
    redirect = record.redirect
    for index, term in enumerate(record.terms):
        if isinstance(term, TermError):
            break
        target = _lookup_target(node, term, redirect)
        if target is None:
            continue
        budget.left -= 1
        if budget.left < 0:
            break
        kind = term.kind if isinstance(term, Mechanism) else "redirect"
        if kind in ("include", "redirect"):
            keys.append((index, True))
            jobs.append(_child(resolver, target, path, budget))
        else:
            keys.append((index, False))
            jobs.append(resolver.query(target, "MX" if kind == "mx" else "A"))
    if not jobs:
        return
    found = [await jobs[0]] if len(jobs) == 1 else await asyncio.gather(*jobs)
    for (index, is_child), got in zip(keys, found, strict=True):
        if is_child:
            assert isinstance(got, SpfNode)
            node.children[index] = got
        else:
            assert isinstance(got, DnsAnswer)
            node.answers[index] = got


def _lookup_target(node: SpfNode, term: object, redirect: str | None) -> str | None:
    """The name a term queries when the audit can know it (no macro), else None."""
    if isinstance(term, Mechanism):
        if term.kind not in _FETCHED or (term.domain and has_macro(term.domain)):
            return None
        return term.target(node.name)
    if redirect and isinstance(term, Modifier) and term.name == "redirect" and "%" not in redirect:
        return redirect.rstrip(".").lower()
    return None


async def _child(resolver: Resolver, name: str, path: list[str], budget: _Budget) -> SpfNode:
    node = await _fetch(resolver, name)
    if name not in path:
        await _expand(resolver, node, [*path, name], budget)
    return node


def _absent(domain: str, root: SpfNode) -> CheckResult:
    status = root.answer.status.value
    if root.malformed:
        bad = root.malformed[0]
        fixed = "v=spf1 " + bad[6:].lstrip()
        return fail(
            "spf.present",
            f"{domain} publishes {bad!r}, which is not an SPF record: 'v=spf1' must be "
            "followed by a space (RFC 7208 §4.5), so receivers find no SPF record (none); "
            "publish the corrected record",
            fixed, malformed=root.malformed, dns=status)  # fmt: skip
    gone = " does not exist (NXDOMAIN) and" if root.answer.status is DnsStatus.NXDOMAIN else ""
    return fail(
        "spf.present",
        f"{domain}{gone} publishes no SPF record: receivers cannot tell which servers may send "
        "its mail; publish a TXT record such as the one in fix, listing your senders",
        "v=spf1 mx ~all", dns=status)  # fmt: skip


def _multiple(domain: str, records: list[str]) -> CheckResult:
    return fail(
        "spf.multiple",
        f"{domain} publishes {len(records)} SPF records: receivers return permerror "
        "(RFC 7208 §4.5); merge them into one record and remove the others",
        _merged(records), records=records)  # fmt: skip


def _merged(records: list[str]) -> str | None:
    """One record with the terms of all (an ``all`` last, once), or None if they do not parse."""
    parsed = [parse_record(r) for r in records]
    if any(p.error for p in parsed):
        return None
    terms = dict.fromkeys(t.text for p in parsed for t in p.terms
                          if not (isinstance(t, Mechanism) and t.kind == "all"))  # fmt: skip
    alls = [p.all.text for p in parsed if p.all is not None]
    strictest = min(alls, key=lambda a: "-~?+".find(a[0]) if a[0] in "-~?+" else 3, default="")
    merged = " ".join(["v=spf1", *terms, *([strictest] if strictest else [])])
    return None if parse_record(merged).error else merged  # e.g. two redirects


# --- results ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Report:
    """Turns the walk into one result per check id."""

    domain: str
    root: SpfNode
    walk: Walk
    base: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.base = {"record": self.root.records[0], "lookups": self.walk.lookups,
                     "void_lookups": self.walk.voids, "depth": self.walk.depth}  # fmt: skip

    @property
    def record_text(self) -> str:
        return self.root.records[0]

    def _stop(self, *kinds: str) -> Stop | None:
        stop = self.walk.stop
        return stop if stop is not None and stop.kind in kinds else None

    def _unknown(self, check_id: str) -> CheckResult | None:
        """``error`` when a failed lookup kept the walk from reaching what this check needs."""
        stop = self._stop("dns")
        if stop is None:
            return None
        return error(check_id, f"not fully checked: {stop.message} while evaluating "
                     f"{stop.term!r} in {stop.name}; check not made beyond it",
                     term=stop.term, dns=stop.answer.status.value if stop.answer else None,
                     **self.base)  # fmt: skip

    def syntax(self) -> CheckResult:
        top = self.root.record.error if self.root.record else None
        if top is not None:
            return fail("spf.syntax", f"{top.message}: receivers return permerror for the "
                        "whole record (RFC 7208 §4.6); correct or remove the term",
                        _repaired(self.record_text, top), term=top.text, **self.base)  # fmt: skip
        stop = self._stop("syntax")
        if stop is not None:
            return fail("spf.syntax", f"{stop.message}: an error in an included record makes "
                        "the whole check a permerror; have its owner fix it or remove the "
                        "include", term=stop.term, where=stop.name, **self.base)  # fmt: skip
        return self._unknown("spf.syntax") or passed(
            "spf.syntax", "the record and the records it includes parse", **self.base
        )

    async def lookups(self, resolver: Resolver) -> CheckResult:
        walk, stop = self.walk, self._stop("mx_limit", "truncated")
        mx = sum(1 for m in _mechanisms(self.root) if m.kind == "mx")
        extra = {"mx_terms": mx, "tree": walk.tree, **self.base}
        if stop is not None and stop.kind == "mx_limit":
            return fail("spf.lookups", f"{stop.message} (RFC 7208 §4.6.4): receivers return "
                        "permerror; use ip4/ip6 terms for these hosts", term=stop.term,
                        **extra)  # fmt: skip
        if walk.lookups > MAX_LOOKUPS or stop is not None:
            return await self._too_many(resolver, extra)
        unknown = self._unknown("spf.lookups")
        if unknown is not None:
            return unknown
        notes = [f"each of the {mx} mx term(s) also costs up to 10 address lookups"] if mx else []
        if walk.stop is not None:
            notes.append(f"counted up to {walk.stop.term!r}, where evaluation stops")
        note = "".join(f"; {n}" for n in notes)
        return passed("spf.lookups", f"{walk.lookups} DNS lookup(s), within the limit of "
                      f"{MAX_LOOKUPS} (RFC 7208 §4.6.4){note}", **extra)  # fmt: skip

    async def _too_many(self, resolver: Resolver, extra: dict[str, Any]) -> CheckResult:
        stop = self.walk.stop
        more = "more than " if stop is not None and stop.kind == "truncated" else ""
        message = (
            f"{more}{self.walk.lookups} DNS lookups, over the limit of {MAX_LOOKUPS} "
            "(RFC 7208 §4.6.4): receivers stop at the 11th and return permerror; "
        )
        if stop is not None and stop.kind != "truncated":
            return fail("spf.lookups", message + f"then {stop.term!r} in {stop.name} fails too "
                        f"({stop.message}): fix it, then flatten the record", **extra)  # fmt: skip
        flat = await flatten(resolver, self.root)
        if isinstance(flat, str):
            return fail("spf.lookups", message + f"no flattened record: {flat}", **extra)
        return fail("spf.lookups", message + _flat_advice(flat), flat.render(),
                    flattened=dict(flat.records), flattened_lookups=flat.lookups,
                    **extra)  # fmt: skip

    def voids(self) -> CheckResult:
        walk = self.walk
        extra = {"void_terms": walk.void_terms, **self.base}
        if walk.voids > MAX_VOID_LOOKUPS:
            return fail("spf.void_lookups", f"{walk.voids} void lookups (no such name or no "
                        f"records), over the limit of {MAX_VOID_LOOKUPS} (RFC 7208 §4.6.4): "
                        "receivers return permerror; remove the terms naming hosts that are "
                        "gone: " + ", ".join(walk.void_terms), **extra)  # fmt: skip
        stop = self._stop("dns")
        if stop is not None and stop.answer is not None and stop.answer.rdtype != "TXT":
            return dns_error(
                "spf.void_lookups",
                stop.answer,
                f"{stop.answer.rdtype} {stop.answer.name} (for {stop.term!r} in {stop.name})",
            )
        unknown = self._unknown("spf.void_lookups")
        if unknown is not None:
            return unknown
        if walk.voids:
            return passed("spf.void_lookups", f"{walk.voids} void lookup(s), within the limit "
                          f"of {MAX_VOID_LOOKUPS}; consider removing: "
                          + ", ".join(walk.void_terms), **extra)  # fmt: skip
        return passed("spf.void_lookups", "no void lookups", **extra)

    def loop(self) -> CheckResult:
        stop = self._stop("loop")
        if stop is not None:
            return fail("spf.loop", f"{stop.message}: {stop.term!r} in {stop.name} leads back "
                        "to a record already being evaluated, a permerror; remove it",
                        term=stop.term, where=stop.name, **self.base)  # fmt: skip
        return self._unknown("spf.loop") or passed(
            "spf.loop", "no include or redirect loop", **self.base
        )

    def includes(self) -> CheckResult:
        stop = self._stop("missing", "multiple")
        extra = {"tree": self.walk.tree, **self.base}
        if stop is not None:
            return fail("spf.includes", f"{stop.message}: receivers return permerror; remove "
                        f"{stop.term!r} from {stop.name} or have the target publish one "
                        "SPF record", term=stop.term, where=stop.name, **extra)  # fmt: skip
        dns = self._stop("dns")
        if dns is not None and dns.answer is not None and dns.answer.rdtype == "TXT":
            return dns_error(
                "spf.includes",
                dns.answer,
                f"the SPF record of {dns.answer.name} (for {dns.term!r})",
            )
        targets = len(self.walk.tree) - 1
        return self._unknown("spf.includes") or passed(
            "spf.includes",
            f"{targets} include/redirect target(s), each with an SPF record",
            **extra,
        )

    def all(self) -> CheckResult:
        term = _effective_all(self.root)
        text = term.text if term else None
        record = self.root.record
        # a fix only for our own record: a redirect target's all is its owner's to change
        own = record is not None and record.error is None and record.redirect is None
        fix = _with_all(self.record_text, "~all") if own else None
        where = "" if own or record is None or record.redirect is None else (
            f" (from redirect={record.redirect})")  # fmt: skip
        if term is None:
            return warn("spf.all", f"no 'all' term{where}: mail from other servers gets "
                        "neutral, like ?all; end the record with ~all or -all", fix,
                        term=text, **self.base)  # fmt: skip
        if term.qualifier == "+":
            return fail("spf.all", f"{text!r}{where} lets any server on the Internet send as "
                        f"{self.domain}; end the record with -all or ~all", fix,
                        term=text, **self.base)  # fmt: skip
        if term.qualifier == "?":
            return warn("spf.all", f"{text!r}{where} gives neutral for any server, which "
                        "receivers treat like no SPF; use ~all or -all", fix,
                        term=text, **self.base)  # fmt: skip
        return passed("spf.all", f"ends in {text!r}{where}", term=text, **self.base)

    def ptr(self) -> CheckResult:
        top = [f"{self.domain}: {m.text}" for m in _mechanisms(self.root) if m.kind == "ptr"]
        terms = list(dict.fromkeys([*top, *self.walk.ptr_terms]))
        if terms:
            return warn("spf.ptr", "the ptr mechanism is slow and unreliable and should not "
                        "be used (RFC 7208 §5.5); list the addresses with ip4/ip6 instead: "
                        + ", ".join(terms), terms=terms, **self.base)  # fmt: skip
        return passed("spf.ptr", "no ptr mechanism", **self.base)

    def length(self) -> CheckResult:
        strings = _strings_of(self.root.answer, self.record_text)
        octets = sum(strings) if strings else len(self.record_text.encode())
        extra = {"octets": octets, "strings": strings, **self.base}
        if octets > _RECORD_OCTETS:
            return warn("spf.length", f"the record is {octets} octets, over {_RECORD_OCTETS} "
                        "(RFC 7208 §3.4): answers may not fit in UDP and some receivers fail; "
                        "move terms into an include record", **extra)  # fmt: skip
        return passed("spf.length", f"{octets} octets in {len(strings)} string(s)", **extra)


def _mechanisms(node: SpfNode) -> tuple[Mechanism, ...]:
    return node.record.mechanisms if node.record else ()


def _effective_all(node: SpfNode, hops: int = 0) -> Mechanism | None:
    """The record's ``all``, or the one its redirect target ends with (RFC 7208 §6.1)."""
    record = node.record
    if record is None or hops > MAX_LOOKUPS:
        return None
    if record.all is not None or record.redirect is None:
        return record.all
    redirect = record.modifier("redirect")
    child = node.children.get(record.terms.index(redirect)) if redirect else None
    return _effective_all(child, hops + 1) if child is not None else None


def _with_all(record: str, new: str) -> str:
    words = [w for w in record.split() if w.lstrip("+-~?").lower() != "all"]
    return " ".join([*words, new])


def _repaired(record: str, bad: TermError) -> str | None:
    """The record with a misspelled mechanism corrected, or a duplicate modifier dropped."""
    if bad.message.startswith("duplicate "):
        words = record.split()
        words.pop(len(words) - 1 - words[::-1].index(bad.text))
        return " ".join(words)
    qualifier = bad.text[0] if bad.text[:1] in "+-~?" and bad.text else ""
    body = bad.text[len(qualifier) :]
    name, sep, rest = body.partition(":")
    good = _MISTAKES.get(name.lower())
    if good is None:
        return None
    fixed = qualifier + good + sep + rest
    if parse_record("v=spf1 " + fixed).error is not None:
        return None
    return " ".join(fixed if w == bad.text else w for w in record.split())


def _strings_of(answer: DnsAnswer, text: str) -> list[int]:
    for record in answer.records:
        if isinstance(record, TxtRecord) and record.text == text:
            return [len(s) for s in record.strings]
    return []


def _flat_advice(flat: Flattened) -> str:
    if len(flat.records) == 1:
        return (f"publish the flattened record in fix ({flat.lookups} lookup(s)), and "
                "re-flatten when a provider changes its addresses")  # fmt: skip
    return (
        f"the flattened record is over {_RECORD_OCTETS} octets, so split it across "
        f"include records: publish the {len(flat.records)} records in fix "
        f"({flat.lookups} lookup(s)), and re-flatten when a provider changes its addresses"
    )


async def flatten(resolver: Resolver, root: SpfNode) -> Flattened | str:
    """The flattened record for a fetched tree (:func:`fetch_tree`), or why there is none."""
    names = sorted(addresses_needed(root))
    questions = [(name, rdtype) for name in names for rdtype in ("A", "AAAA")]
    answers = await asyncio.gather(*(resolver.query(n, t) for n, t in questions))
    addresses: dict[str, list[str]] = {}
    for (name, rdtype), answer in zip(questions, answers, strict=True):
        if not answer.status.definitive:
            return f"the {rdtype} lookup of {name} failed ({answer.status.value})"
        addresses.setdefault(name, []).extend(answer.addresses())
    return flatten_tree(root, addresses)


# --- evaluation with pyspf (probes.spf_eval) -------------------------------------------


@dataclass(frozen=True, slots=True)
class SpfEvaluation:
    #: pass | fail | softfail | neutral | none | permerror | temperror
    result: str
    explanation: str
    #: the domain whose record was evaluated (the MAIL FROM domain, or the HELO name)
    domain: str


async def evaluate(resolver: Resolver, ip: str, sender: str, helo: str = "") -> SpfEvaluation:
    """check_host() for ``ip`` and ``sender`` (or ``helo`` when the sender is empty), by
    pyspf in a thread, every lookup made through ``resolver``."""
    from probes.spf_eval import evaluate_sync  # pyspf is imported only when needed

    return await asyncio.to_thread(evaluate_sync, resolver, ip, sender, helo)


async def _ip_results(resolver: Resolver, domain: str, ips: Sequence[str]) -> list[CheckResult]:
    sender = f"postmaster@{domain}"
    found = await asyncio.gather(*(evaluate(resolver, ip, sender) for ip in ips))
    results = []
    for ip, evaluation in zip(ips, found, strict=True):
        status = RESULTS.get(evaluation.result, Status.FAIL)
        message = f"SPF {evaluation.result} for {ip} sending as {domain}"
        if status is not Status.PASS:
            message += f" ({evaluation.explanation})" if evaluation.explanation else ""
            message += f"; authorise {ip} in the record (ip4:/ip6:) or send from a listed server"
        results.append(CheckResult("spf.result", status, message,
                                   {"ip": ip, "result": evaluation.result,
                                    "explanation": evaluation.explanation}))  # fmt: skip
    return results
