"""What a lab provider does with a message: the decision, pure, from the rulebook.

The receiver (:mod:`lab.providers`) gathers the evidence the way a real provider does:
the authentication verdict of the message through the project's own verification path
(:func:`probes.message.check_message`: DKIM with dkimpy, SPF with pyspf, DMARC with
alignment), forward-confirmed reverse DNS of the connecting IP (:func:`probes.ptr.fcrdns`)
and a content score (:mod:`lab.content`). :func:`decide` then applies the provider's
rulebook (``probes/rulebooks``), the same file ``sokures probe`` audits against:

1. every unmet requirement that applies (all senders, or bulk senders when the message is
   bulk mail) has the provider's reply; the sending domain's DMARC policy adds its own
   (``[dmarc_policy]``: p=reject answered like Gmail's 550 5.7.26, p=quarantine to spam);
2. the harshest reply wins (reject, then tempfail, then spam), as the provider answers
   the first rule that stops the message;
3. a reject or tempfail is the SMTP answer to DATA; a spam disposition files the copy in
   the spam folder; otherwise a message that still fails authentication (DMARC fails
   under p=none, or neither SPF nor DKIM passes) or whose content score reaches the
   threshold is filed as spam, bulk mail with List-Unsubscribe goes to the Promotions tab
   where the provider has tabs (Gmail), and the rest to the inbox.

Per recipient, :func:`place` adds the lab's mailbox conventions: ``junk*`` users have a
personal filter that files this sender as spam, ``blackhole*`` mail is accepted and
silently dropped (the seed shows it as missing).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.content import ContentScore
from probes.checks import CheckResult
from probes.compliance import evaluate
from probes.message import MessageReport
from probes.rulebook import Reply, Rulebook

__all__ = ["Decision", "Placement", "decide", "place", "smtp_reply"]

_SEVERITY = {"spam": 1, "tempfail": 2, "reject": 3}
_DEFAULT_CODE = {"reject": 550, "tempfail": 451}


class Placement:
    INBOX = "inbox"
    PROMOTIONS = "promotions"
    SPAM = "spam"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Decision:
    """``action``: accept, reject (5xx) or tempfail (4xx); ``reply`` the SMTP reply for
    the latter two; ``placement`` where an accepted copy goes; ``reasons`` why."""

    action: str
    placement: str | None
    reply: str | None = None
    reasons: tuple[str, ...] = ()
    #: the requirement ids (or "dmarc_policy.reject") behind the decision
    rules: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "placement": self.placement, "reply": self.reply,
                "reasons": list(self.reasons), "rules": list(self.rules)}  # fmt: skip


def smtp_reply(reply: Reply, *, ip: str, domain: str, width: int = 76) -> str:
    """The reply as the provider writes it: code, enhanced code and the text, wrapped into
    a multi-line reply (RFC 5321 §4.2.1: ``550-5.7.26 ...`` lines, the last ``550 ...``)."""
    code = reply.code or _DEFAULT_CODE.get(reply.disposition, 550)
    prefix = f"{reply.enhanced} " if reply.enhanced else ""
    text = reply.render(ip=ip, domain=domain) or "Message refused"
    lines = textwrap.wrap(text, width) or [text]
    return "\r\n".join(
        f"{code}{' ' if i == len(lines) - 1 else '-'}{prefix}{line}" for i, line in enumerate(lines)
    )


def decide(
    rulebook: Rulebook | None,
    report: MessageReport,
    ptr_checks: Sequence[CheckResult],
    content: ContentScore,
    *,
    ip: str,
    spam_threshold: float,
    tabs: bool,
    session: Mapping[str, bool] | None = None,
) -> Decision:
    """The provider's decision on one message (see the module docstring). ``session``:
    requirements only the SMTP session can judge (a probe marks them manual), by id, and
    whether the session met them (``{"transport.tls": False}``)."""
    domain = report.from_domain or ""
    candidates: list[tuple[Reply, str, str]] = []
    if rulebook is not None:
        for req in rulebook.applicable(report.bulk):
            met = (session or {}).get(req.id)
            if met is False and req.reply is not None:
                candidates.append((req.reply, req.id, f"{req.title}: not met by this session"))
        # judged apart: in one evidence set, the PTR results (a domain check group) would
        # make the DNS checks beside the message's own (spf.*, dkim.* in any_of) unknown
        # instead of out of scope, and an unauthenticated message would not be unmet
        seen: set[str] = set()
        for evidence in (report.checks, ptr_checks):
            for result in evaluate(rulebook, evidence, bulk=report.bulk).results:
                reply = result.requirement.reply
                if result.outcome.value == "unmet" and reply and result.id not in seen:
                    seen.add(result.id)
                    candidates.append((reply, result.id, result.reason))
        dmarc_reply = {"reject": rulebook.dmarc_reject, "quarantine": rulebook.dmarc_quarantine}
        policy = dmarc_reply.get(report.dmarc.disposition)
        if report.dmarc.result == "fail" and policy is not None:
            why = f"DMARC fails for {domain} and its policy asks to {report.dmarc.disposition}"
            candidates.append((policy, f"dmarc_policy.{report.dmarc.disposition}", why))
    if candidates:
        # the deciding reply first: the harshest, the first in the rulebook on a tie
        candidates.sort(key=lambda c: -_SEVERITY[c[0].disposition])
        reply = candidates[0][0]
        rules = tuple(c[1] for c in candidates)
        reasons = tuple(c[2] for c in candidates)
        if reply.disposition != "spam":
            return Decision(reply.disposition, None, smtp_reply(reply, ip=ip, domain=domain),
                            reasons, rules)  # fmt: skip
        return Decision("accept", Placement.SPAM, None, reasons, rules)
    failed = _authentication_failure(report)
    if failed:
        return Decision("accept", Placement.SPAM, None, (failed,), ("authentication",))
    if content.spam(spam_threshold):
        why = f"content {content.describe()} >= {spam_threshold:g}"
        return Decision("accept", Placement.SPAM, None, (why,), ("content",))
    if tabs and report.bulk and _has_unsubscribe(report):
        why = "bulk mail with List-Unsubscribe: the Promotions tab"
        return Decision("accept", Placement.PROMOTIONS, None, (why,), ("tabs",))
    return Decision("accept", Placement.INBOX)


def _authentication_failure(report: MessageReport) -> str | None:
    """Accepted but failing authentication: filed as spam, as the providers do with mail
    their rules let through (DMARC p=none failures, or no SPF or DKIM pass at all)."""
    if report.dmarc.result == "fail":
        return f"DMARC fails for {report.from_domain} (policy {report.dmarc.policy or 'none'})"
    if report.spf.result != "pass" and not any(s.result == "pass" for s in report.dkim):
        return "neither SPF nor DKIM passes"
    return None


def _has_unsubscribe(report: MessageReport) -> bool:
    return any(
        c.id == "message.list_unsubscribe" and c.evidence.get("list_unsubscribe")
        for c in report.checks
    )


def place(decision: Decision, rcpt: str) -> tuple[str, str | None]:
    """Where this recipient's copy goes, and why when a mailbox convention decided it."""
    local = rcpt.split("@", 1)[0].lower()
    if local.startswith("blackhole"):
        return Placement.DROPPED, "accepted and silently dropped (lab mailbox 'blackhole*')"
    if local.startswith("junk") and decision.placement != Placement.SPAM:
        return Placement.SPAM, "the recipient's own filter files this sender as spam ('junk*')"
    return decision.placement or Placement.INBOX, None
