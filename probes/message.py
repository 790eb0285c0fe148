"""The authentication verdict for a received message (``sokures check-message``).

:func:`check_message` verifies every DKIM signature (dkimpy, keys through our resolver),
evaluates SPF for the connecting IP (:mod:`probes.spf`), DMARC with alignment
(:mod:`probes.dmarc`), the ARC chain (:mod:`probes.arc`), and what the providers enforce
on the message itself: one From, a Message-ID, a Date, the RFC 5322 shape and, for bulk
mail, RFC 8058 one-click unsubscribe. Authentication-Results fields the receivers added
are parsed and shown (:mod:`probes.authresults`), never trusted.

Everything that reads the header section is pure (:func:`read_headers` and the
``_check_*`` functions); the lookups run concurrently. Input that is not a message at all
raises :class:`MessageFormatError` (a one-line reason, exit code 2 in the CLI); anything
else that is wrong becomes a finding.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from email.headerregistry import HeaderRegistry
from email.utils import parsedate_to_datetime
from typing import Any

import idna

from deliver.dns import Resolver
from deliver.errors import InputError
from probes import dmarc, spf
from probes.arc import ArcResult, verify_arc
from probes.authresults import AuthResults, DkimSignatureResult, parse_auth_results, verify_dkim
from probes.checks import CheckResult, Status, error, fail, passed, warn, worst

__all__ = [
    "DmarcVerdict",
    "HeaderSection",
    "MessageFormatError",
    "MessageReport",
    "SpfVerdict",
    "check_message",
    "from_address",
    "read_headers",
]


class MessageFormatError(InputError):
    """The input is not an email message (empty, or no header section)."""


# --- the header section (pure) -----------------------------------------------------------

# RFC 5322 §3.6.8: field-name = 1*ftext (printable ASCII but ":"); §4.5.3 (obsolete) also
# allowed white space before the colon
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)([ \t]*):")
_MAX_LINE = 998  # RFC 5322 §2.1.1, without the CRLF


@dataclass(frozen=True, slots=True)
class HeaderSection:
    """Header fields in order as (name, unfolded value), and what breaks RFC 5322's shape."""

    fields: tuple[tuple[str, str], ...]
    problems: tuple[str, ...] = ()
    #: "crlf", "lf" (a file stored with local line ends: not a fault) or "mixed"
    line_ends: str = "crlf"

    def all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.fields if key.lower() == wanted]

    def one(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None


def read_headers(raw: bytes) -> HeaderSection:
    """Split and check the header section; MessageFormatError if there is none at all."""
    if not raw.strip():
        raise MessageFormatError("the message is empty")
    problems = _line_problems(raw)
    fields: list[list[bytes]] = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        line = line.removesuffix(b"\r")
        if not line:
            break  # the empty line that ends the header section
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MessageFormatError("line 1 is a continuation line: not an email message")
            fields[-1][1] += line  # RFC 5322 §2.2.3: unfolding removes the line break
            continue
        match = _FIELD.match(line)
        if match is None:
            if number == 1 and line.startswith(b"From "):
                continue  # an mbox separator line, as files saved from a mailbox begin
            if not fields:
                shown = line[:60].decode("utf-8", "replace")
                raise MessageFormatError(
                    f"line {number} is not a header field ({shown!r}): not an email message"
                )
            problems.append(f"line {number} is neither a header field nor a continuation "
                            "line (RFC 5322 §2.2)")  # fmt: skip
            continue
        if match.group(2):
            problems.append(f"line {number}: white space before the colon of "
                            f"{match.group(1).decode()} is obsolete syntax "
                            "(RFC 5322 §4.5.3)")  # fmt: skip
        fields.append([match.group(1), line[match.end() :]])
    if not fields:
        raise MessageFormatError("the message has no header fields")
    decoded = tuple(
        (name.decode("ascii"), value.decode("utf-8", "replace").strip()) for name, value in fields
    )
    crlf = raw.count(b"\r\n")
    line_ends = "lf" if crlf == 0 else "crlf" if crlf == raw.count(b"\n") else "mixed"
    return HeaderSection(decoded, tuple(problems), line_ends)


def _line_problems(raw: bytes) -> list[str]:
    problems = []
    crlf, lf, cr = raw.count(b"\r\n"), raw.count(b"\n"), raw.count(b"\r")
    if crlf and lf > crlf:  # RFC 5322 §2.3: CR and LF only together, as CRLF
        problems.append(f"{lf - crlf} line(s) end in a bare LF among CRLF line ends "
                        "(RFC 5322 §2.3)")  # fmt: skip
    if cr > crlf:
        problems.append(f"{cr - crlf} bare CR character(s) (RFC 5322 §2.3)")
    if b"\0" in raw:
        problems.append("NUL characters (RFC 5322 §2.3, RFC 5321 §4.5.2)")
    long_lines = [n for n, line in enumerate(raw.split(b"\n"), 1)
                  if len(line.removesuffix(b"\r")) > _MAX_LINE]  # fmt: skip
    if long_lines:
        problems.append(f"{len(long_lines)} line(s) longer than {_MAX_LINE} characters, "
                        f"first line {long_lines[0]} (RFC 5322 §2.1.1)")  # fmt: skip
    return problems


_REGISTRY = HeaderRegistry()


def from_address(headers: HeaderSection) -> tuple[str | None, str | None]:
    """(the From address's domain, None) when there is exactly one From field with one
    address, else (None, what is wrong)."""
    values = headers.all("From")
    if not values:
        return None, "no From header field: add one (RFC 5322 §3.6.2)"
    if len(values) > 1:
        return None, f"{len(values)} From header fields: keep exactly one (RFC 5322 §3.6)"
    try:
        parsed = _REGISTRY("from", values[0])
        addresses, defects = list(parsed.addresses), list(parsed.defects)  # type: ignore[attr-defined]
    except Exception as exc:  # the stdlib parser on input it does not expect
        return None, f"the From field cannot be parsed ({exc})"
    if defects:
        return None, f"the From field is malformed ({defects[0]}): write it as Name <user@domain>"
    if len(addresses) != 1:
        return None, (f"the From field holds {len(addresses)} addresses: providers and DMARC "
                      "need exactly one (RFC 7489 §6.6.1)")  # fmt: skip
    domain = str(addresses[0].domain).lower().rstrip(".")
    if not domain:
        return None, "the From address has no domain"
    return domain, None


# --- SPF and DMARC -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpfVerdict:
    """SPF for the connecting IP; ``result`` is ``not_evaluated`` without an IP."""

    result: str
    domain: str = ""
    explanation: str = ""
    ip: str | None = None
    mail_from: str = ""
    helo: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "domain": self.domain, "explanation": self.explanation,
                "ip": self.ip, "mail_from": self.mail_from, "helo": self.helo}  # fmt: skip


async def _evaluate_spf(
    resolver: Resolver, ip: str | None, mail_from: str, helo: str
) -> SpfVerdict:
    if ip is None:
        return SpfVerdict("not_evaluated", ip=ip, mail_from=mail_from, helo=helo)
    if not mail_from and not helo:
        return SpfVerdict("none", "", "no MAIL FROM nor HELO identity given", ip, mail_from, helo)
    found = await spf.evaluate(resolver, ip, mail_from, helo)
    return SpfVerdict(found.result, found.domain, found.explanation, ip, mail_from, helo)


@dataclass(frozen=True, slots=True)
class DmarcVerdict:
    """DMARC for the From domain (RFC 7489 §6.6): result pass, fail, none (no policy),
    permerror or temperror, with the alignment that decided it and the policy applied."""

    result: str
    from_domain: str | None = None
    policy_domain: str | None = None
    record: str | None = None
    #: the policy that applies to this From domain (p, or sp for a subdomain)
    policy: str | None = None
    #: what the receiver is asked to do with this message: none, quarantine or reject
    disposition: str = "none"
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    dkim_aligned: tuple[str, ...] = ()
    spf_aligned: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "from_domain": self.from_domain,
                "policy_domain": self.policy_domain, "record": self.record,
                "policy": self.policy, "disposition": self.disposition, "pct": self.pct,
                "adkim": self.adkim, "aspf": self.aspf,
                "dkim_aligned": list(self.dkim_aligned), "spf_aligned": self.spf_aligned,
                "reason": self.reason}  # fmt: skip


def _dns_name(domain: str) -> str | None:
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


async def _discover(resolver: Resolver, domain: str | None) -> dmarc.DmarcDiscovery | None:
    name = _dns_name(domain) if domain else None
    return await dmarc.discover(resolver, name) if name else None


def _dmarc_verdict(
    from_domain: str | None,
    problem: str | None,
    found: dmarc.DmarcDiscovery | None,
    signatures: list[DkimSignatureResult],
    spf_result: SpfVerdict,
) -> DmarcVerdict:
    if from_domain is None or found is None:
        reason = problem or f"the From domain {from_domain!r} is not a valid domain name"
        return DmarcVerdict("permerror", from_domain, reason=reason)
    if found.outcome == "error":
        return DmarcVerdict("temperror", from_domain, reason=found.problem)
    if found.outcome == "missing":
        return DmarcVerdict("none", from_domain, reason=found.problem)
    if found.outcome != "found" or found.record is None:
        return DmarcVerdict("permerror", from_domain, found.policy_domain, reason=found.problem)
    record = found.record
    # RFC 7489 §6.3: sp applies to subdomains of the domain whose record was found
    policy = record.effective_sp if found.from_org else record.p
    domain = found.domain
    dkim_ok = tuple(dict.fromkeys(
        s.domain.lower() for s in signatures
        if s.result == "pass" and dmarc.aligned(s.domain, domain, record.adkim)
    ))  # fmt: skip
    spf_ok = spf_result.result == "pass" and dmarc.aligned(spf_result.domain, domain, record.aspf)
    passing = bool(dkim_ok) or spf_ok
    return DmarcVerdict(
        "pass" if passing else "fail", from_domain, found.policy_domain, record.text,
        policy, "none" if passing else (policy or "none"), record.pct, record.adkim,
        record.aspf, dkim_ok, spf_ok,
        "" if passing else "no DKIM signature or SPF pass aligned with the From domain",
    )  # fmt: skip


# --- the checks (pure) ---------------------------------------------------------------------

# RFC 5322 §3.6: fields that occur at most once (From, Date, Message-ID are checked apart)
_SINGLE = ("Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "References", "Subject")
_MSG_ID = re.compile(r"<[^<>\s@]+@[^<>\s]+>\Z")  # RFC 5322 §3.6.4 msg-id, loosely
_URI = re.compile(r"<([^<>]*)>")
_ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058 §3.1


def _check_shape(headers: HeaderSection) -> CheckResult:
    problems = list(headers.problems)
    for name in _SINGLE:
        count = len(headers.all(name))
        if count > 1:
            problems.append(f"{count} {name} fields where at most one is allowed (RFC 5322 §3.6)")
    evidence: dict[str, Any] = {"problems": problems, "line_ends": headers.line_ends}
    if problems:
        message = f"the message is not well formed: {'; '.join(problems)}; fix the composer"
        return fail("message.rfc5322", message, **evidence)
    note = " (the file has LF line ends, as stored on disk)" if headers.line_ends == "lf" else ""
    return passed("message.rfc5322", f"the header section is well formed{note}", **evidence)


def _check_from(domain: str | None, problem: str | None, headers: HeaderSection) -> CheckResult:
    shown = headers.all("From")
    if domain is None:
        return fail("message.from", problem or "no usable From address", values=shown)
    return passed("message.from", f"one From address, domain {domain}", values=shown,
                  domain=domain)  # fmt: skip


def _check_message_id(headers: HeaderSection) -> CheckResult:
    values = headers.all("Message-ID")
    if not values:
        return fail("message.message_id", "no Message-ID field: add one (RFC 5322 §3.6.4); "
                    "Gmail refuses mail without it", values=values)  # fmt: skip
    if len(values) > 1:
        return fail("message.message_id", f"{len(values)} Message-ID fields: keep exactly one "
                    "(RFC 5322 §3.6)", values=values)  # fmt: skip
    if not _MSG_ID.match(values[0]):
        return warn("message.message_id", f"Message-ID {values[0]!r} is not of the form "
                    "<unique@domain> (RFC 5322 §3.6.4)", values=values)  # fmt: skip
    return passed("message.message_id", f"Message-ID {values[0]}", values=values)


def _check_date(headers: HeaderSection) -> CheckResult:
    values = headers.all("Date")
    if len(values) != 1:
        what = "no Date field" if not values else f"{len(values)} Date fields"
        return fail("message.date", f"{what}: the message needs exactly one (RFC 5322 §3.6.1)",
                    values=values)  # fmt: skip
    try:
        when = parsedate_to_datetime(values[0])
    except (TypeError, ValueError, IndexError):
        return fail("message.date", f"Date {values[0]!r} is not a valid date "
                    "(RFC 5322 §3.3): write e.g. 'Mon, 2 Feb 2026 10:00:00 +0000'",
                    values=values)  # fmt: skip
    return passed("message.date", f"Date {values[0]}", values=values, parsed=when.isoformat())


def _check_signatures(signatures: list[DkimSignatureResult], domain: str | None) -> CheckResult:
    evidence: dict[str, Any] = {"signatures": [s.to_dict() for s in signatures]}
    shown = "; ".join(f"d={s.domain} s={s.selector}: {s.result}"
                      + (f" ({s.reason})" if s.reason else "") for s in signatures)  # fmt: skip
    if not signatures:
        sign_as = f" (d={domain})" if domain else ""
        return fail("dkim.signature", f"the message is not DKIM-signed: sign it with a key "
                    f"published under the From domain{sign_as}", **evidence)  # fmt: skip
    if any(s.result == "pass" for s in signatures):
        return passed("dkim.signature", f"DKIM: {shown}", **evidence)
    if any(s.result == "temperror" for s in signatures):
        return error("dkim.signature", f"DKIM could not be verified: {shown}", **evidence)
    return fail("dkim.signature", f"no DKIM signature verifies: {shown}", **evidence)


def _check_spf(verdict: SpfVerdict, auth_results: tuple[AuthResults, ...]) -> CheckResult:
    evidence = verdict.to_dict()
    if verdict.result == "not_evaluated":
        seen = next((f"{a.authserv_id} reported spf={e.result}" for a in auth_results
                     if (e := a.result_of("spf")) is not None), "")  # fmt: skip
        note = f" ({seen}, not verified)" if seen else ""
        return warn("message.spf", "SPF not evaluated: give --ip (the connecting server's "
                    f"address) and --mail-from to evaluate it{note}", **evidence)  # fmt: skip
    status = spf.RESULTS.get(verdict.result, Status.FAIL)
    who = f"{verdict.ip} sending as {verdict.mail_from or 'postmaster@' + verdict.helo}"
    message = f"SPF {verdict.result} for {who}"
    if verdict.explanation and status is not Status.PASS:
        message += f" ({verdict.explanation})"
    if verdict.result == "none":
        message += f": publish an SPF record for {verdict.domain or 'the sender domain'}"
    elif verdict.result in ("fail", "softfail", "neutral"):
        message += f": authorise {verdict.ip} in the SPF record of {verdict.domain}"
    elif verdict.result == "permerror":
        message += f": repair the SPF record of {verdict.domain} (sokures probe shows how)"
    return CheckResult("message.spf", status, message, evidence)


def _check_dmarc(verdict: DmarcVerdict, spf_result: SpfVerdict) -> CheckResult:
    evidence = verdict.to_dict()
    domain = verdict.from_domain
    if verdict.result == "pass":
        by = [f"DKIM d={d}" for d in verdict.dkim_aligned]
        by += ["SPF"] if verdict.spf_aligned else []
        return passed("dmarc.result", f"DMARC pass for {domain}: aligned {', '.join(by)} "
                      f"(adkim={verdict.adkim}, aspf={verdict.aspf})", **evidence)  # fmt: skip
    if verdict.result == "temperror":
        return error("dmarc.result", f"DMARC not evaluated: {verdict.reason}", **evidence)
    if verdict.result == "none":
        org = dmarc.organizational_domain(domain or "")
        return fail("dmarc.result", f"no DMARC policy for {domain} ({verdict.reason}): "
                    f"publish one at _dmarc.{org}", **evidence)  # fmt: skip
    if verdict.result == "permerror":
        return fail("dmarc.result", f"DMARC cannot be applied: {verdict.reason}", **evidence)
    unverified = " (SPF not evaluated: no --ip)" if spf_result.ip is None else ""
    share = f" ({verdict.pct}% of failing mail)" if verdict.pct < 100 else ""
    message = (f"DMARC fail for {domain}: no DKIM signature with d= aligned to it "
               f"(adkim={verdict.adkim}) verifies and SPF is not an aligned pass "
               f"(aspf={verdict.aspf}){unverified}; policy {verdict.policy or 'none'}: the "
               f"receiver is asked to {_DISPOSITION.get(verdict.disposition, 'deliver')} it"
               f"{share}. Sign with d={domain} (or its organisational domain if adkim=r)"
               )  # fmt: skip
    return fail("dmarc.result", message, **evidence)


_DISPOSITION = {"quarantine": "put it in spam", "reject": "reject"}


def _check_arc(arc: ArcResult) -> CheckResult:
    evidence = arc.to_dict()
    if arc.error is not None:
        return error("message.arc", f"the ARC chain could not be validated: {arc.error}",
                     **evidence)  # fmt: skip
    if arc.cv == "none":
        return passed("message.arc", "no ARC header fields (the message was not forwarded "
                      "through an ARC sealer)", **evidence)  # fmt: skip
    if arc.cv == "pass":
        return passed("message.arc", f"the ARC chain of {arc.instances} set(s) validates",
                      **evidence)  # fmt: skip
    return fail("message.arc", f"the ARC chain fails ({arc.reason}): receivers ignore what "
                "the forwarders reported (RFC 8617 §5.2)", **evidence)  # fmt: skip


def _bulk_of(headers: HeaderSection) -> tuple[bool, str]:
    for name in ("List-Unsubscribe", "List-Id", "Feedback-ID"):
        if headers.all(name):
            return True, f"{name} field"
    precedence = (headers.one("Precedence") or "").strip().lower()
    if precedence in ("bulk", "list"):
        return True, f"Precedence: {precedence}"
    return False, "no List-Unsubscribe, List-Id, Feedback-ID or Precedence: bulk field"


def _check_list_unsubscribe(
    headers: HeaderSection, bulk: bool, why: str, signatures: list[DkimSignatureResult]
) -> CheckResult:
    values, posts = headers.all("List-Unsubscribe"), headers.all("List-Unsubscribe-Post")
    evidence: dict[str, Any] = {"bulk": bulk, "bulk_reason": why, "list_unsubscribe": values,
                "list_unsubscribe_post": posts}  # fmt: skip
    if not bulk:
        return passed("message.list_unsubscribe", f"not bulk mail ({why}): one-click "
                      "unsubscribe not required", **evidence)  # fmt: skip
    problem = _one_click_problem(values, posts, signatures)
    if problem:
        fix = "List-Unsubscribe: <https://.../unsubscribe/TOKEN>, <mailto:...>\r\n" \
              f"List-Unsubscribe-Post: {_ONE_CLICK}"  # fmt: skip
        return fail("message.list_unsubscribe", f"bulk mail ({why}) {problem}", fix, **evidence)
    return passed("message.list_unsubscribe", "one-click unsubscribe (RFC 8058) with an https "
                  "URI, signed by DKIM", **evidence)  # fmt: skip


def _one_click_problem(
    values: list[str], posts: list[str], signatures: list[DkimSignatureResult]
) -> str:
    if not values:
        return "without List-Unsubscribe: add it with an https URI and one-click (RFC 8058)"
    if len(values) > 1 or len(posts) > 1:
        return "with several List-Unsubscribe(-Post) fields: keep one of each"
    if not any(u.strip().lower().startswith("https://") for u in _URI.findall(values[0])):
        return "whose List-Unsubscribe has no https URI: one-click needs one (RFC 8058 §3.1)"
    if not posts or posts[0].strip() != _ONE_CLICK:
        return f"without 'List-Unsubscribe-Post: {_ONE_CLICK}' (RFC 8058 §3.1): add it"
    both = {"list-unsubscribe", "list-unsubscribe-post"}
    signed = [s for s in signatures if s.result == "pass" and both <= set(s.signed_headers)]
    if not signed:  # RFC 8058 §4: a valid DKIM signature must cover both fields
        return ("whose List-Unsubscribe and List-Unsubscribe-Post are not covered by a valid "
                "DKIM signature (RFC 8058 §4): sign both")  # fmt: skip
    return ""


def _check_auth_results(auth_results: tuple[AuthResults, ...]) -> CheckResult:
    evidence: dict[str, Any] = {"headers": [a.to_dict() for a in auth_results]}
    if not auth_results:
        return passed("message.auth_results", "no Authentication-Results field (the message "
                      "did not pass through a receiver that adds one); shown for information",
                      **evidence)  # fmt: skip
    shown = "; ".join(
        f"{a.authserv_id}: " + (", ".join(f"{e.method}={e.result}" for e in a.results) or "none")
        for a in auth_results if a.error is None
    )  # fmt: skip
    broken = [a for a in auth_results if a.error is not None]
    if broken:
        return warn("message.auth_results", f"{len(broken)} Authentication-Results field(s) "
                    f"cannot be parsed ({broken[0].error}); {shown}", **evidence)  # fmt: skip
    return passed("message.auth_results", f"receivers reported {shown} (shown, not trusted)",
                  **evidence)  # fmt: skip


def _return_path(headers: HeaderSection) -> str:
    """The envelope sender the receiver recorded (RFC 5321 §4.4): "" for <> or none."""
    value = headers.one("Return-Path") or ""
    found = _URI.search(value)
    return (found.group(1) if found else value).strip()


# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageReport:
    """The checks (``message.*``, ``dkim.signature``, ``dmarc.result``) and the structured
    verdict behind them."""

    checks: tuple[CheckResult, ...]
    from_domain: str | None
    dkim: tuple[DkimSignatureResult, ...]
    spf: SpfVerdict
    dmarc: DmarcVerdict
    arc: ArcResult
    auth_results: tuple[AuthResults, ...]
    bulk: bool
    #: the Subject field, to name the message in listings
    subject: str | None = None
    #: the header section as read (a receiver reads its own fields from it, once)
    headers: HeaderSection | None = None

    @property
    def status(self) -> Status:
        return worst(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "subject": self.subject,
            "from_domain": self.from_domain,
            "bulk": self.bulk,
            "checks": [c.to_dict() for c in self.checks],
            "dkim": [s.to_dict() for s in self.dkim],
            "spf": self.spf.to_dict(),
            "dmarc": self.dmarc.to_dict(),
            "arc": self.arc.to_dict(),
            "auth_results": [a.to_dict() for a in self.auth_results],
        }


async def check_message(
    resolver: Resolver,
    raw: bytes,
    *,
    ip: str | None = None,
    helo: str | None = None,
    mail_from: str | None = None,
    bulk: bool | None = None,
) -> MessageReport:
    """The authentication verdict for ``raw`` as received from ``ip`` (HELO ``helo``,
    MAIL FROM ``mail_from``, by default the Return-Path field). ``bulk`` None: decided
    from the List-Unsubscribe, List-Id, Feedback-ID and Precedence fields.

    Raises :class:`MessageFormatError` when ``raw`` is not an email message at all."""
    headers = read_headers(raw)
    sender = _return_path(headers) if mail_from is None else mail_from
    from_domain, from_problem = from_address(headers)
    signatures, arc, spf_result, found = await asyncio.gather(
        verify_dkim(resolver, raw),
        verify_arc(resolver, raw),
        _evaluate_spf(resolver, ip, sender, helo or ""),
        _discover(resolver, from_domain),
    )
    verdict = _dmarc_verdict(from_domain, from_problem, found, signatures, spf_result)
    auth_results = tuple(parse_auth_results(v) for v in headers.all("Authentication-Results"))
    is_bulk, why = _bulk_of(headers) if bulk is None else (bulk, "as given")
    checks = (
        _check_shape(headers),
        _check_from(from_domain, from_problem, headers),
        _check_message_id(headers),
        _check_date(headers),
        _check_signatures(signatures, from_domain),
        _check_spf(spf_result, auth_results),
        _check_dmarc(verdict, spf_result),
        _check_arc(arc),
        _check_list_unsubscribe(headers, is_bulk, why, signatures),
        _check_auth_results(auth_results),
    )
    return MessageReport(checks, from_domain, tuple(signatures), spf_result, verdict, arc,
                         auth_results, is_bulk, headers.one("Subject"), headers)  # fmt: skip
