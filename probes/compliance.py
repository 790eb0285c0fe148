"""Judging probe results against a provider rulebook, and comparing two rulebook versions.

The rulebooks themselves (the types, loading and validation) live in :mod:`probes.rulebook`,
which also re-exports every public name here.

* :func:`evaluate` judges probe results against a rulebook (pure, no I/O) and returns a
  :class:`Compliance`: which requirements fail and what the provider would answer;
  :class:`ComplianceMemo` does the same for many domains, once per status pattern.
* :func:`diff`, :func:`describe`, :func:`affected` and :func:`escalated` compare two versions.

How a requirement is judged. Each check it names is, given the results:
  *met* (its status is in ``accept``), *unmet* (another status), *error* (status ``error``),
  *out of scope* (the results hold nothing of its kind: message checks in a domain audit,
  domain checks in a message audit; or the check is optional, ``"spf.result?"``, and absent),
  *unknown* (its group was not run at all: no ``dkim.*`` without a selector, no ``ptr.*``
  without a sending IP), or *error* (its group ran but this check is missing).
  ``checks`` needs all of them (unmet > error > unknown > met); ``any_of`` needs one group
  (met > error > unknown > unmet); out-of-scope checks are left out of both. A requirement
  with nothing left to judge, or only unknowns, is *not evaluated*.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from probes.catalog import CHECKS, group_of
from probes.checks import CheckResult, Status
from probes.rulebook import MESSAGE_CHECKS, CheckTerm, Reply, Requirement, Rulebook

__all__ = [
    "Compliance",
    "ComplianceMemo",
    "Outcome",
    "RequirementChange",
    "RequirementResult",
    "RulebookDiff",
    "affected",
    "describe",
    "diff",
    "escalated",
    "evaluate",
]

_SEVERITY = {"spam": 1, "tempfail": 2, "reject": 3}


# ------------------------------------------------------------- evaluation --
class Outcome(enum.StrEnum):
    MET = "met"
    UNMET = "unmet"
    ERROR = "error"
    NOT_EVALUATED = "not_evaluated"
    MANUAL = "manual"


# A check's or a combination's state. The numbers order them for checks (all needed):
# unmet > error > unknown > met > out of scope; _ANY_RANK orders them for any_of groups.
_OUT, _MET, _UNKNOWN, _ERROR, _UNMET = range(5)
_ANY_RANK = (0, 4, 2, 3, 1)  # by state: out 0, met 4, unknown 2, error 3, unmet 1


@dataclass(frozen=True, slots=True)
class RequirementResult:
    requirement: Requirement
    outcome: Outcome
    #: each named check with what the results said: a status, "missing" or "not evaluated"
    checks: tuple[tuple[str, str], ...]
    reason: str
    #: met, but only with a warn among the checks
    warned: bool = False

    @property
    def id(self) -> str:
        return self.requirement.id

    @property
    def reply(self) -> Reply | None:
        return self.requirement.reply

    def to_dict(self) -> dict[str, Any]:
        req = self.requirement
        return {"id": req.id, "title": req.title, "applies_to": req.applies_to,
                "level": req.level, "outcome": self.outcome.value, "reason": self.reason,
                "checks": dict(self.checks),
                "reply": req.reply.to_dict() if req.reply else None}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Compliance:
    """The verdict of one rulebook on one domain's (or message's) results."""

    rulebook: str
    bulk: bool
    status: Status
    results: tuple[RequirementResult, ...]

    def _ids(self, outcome: Outcome, level: str | None = None) -> list[str]:
        return [r.id for r in self.results
                if r.outcome is outcome and level in (None, r.requirement.level)]  # fmt: skip

    @property
    def failed(self) -> list[str]:
        """Required and unmet: the compliance status is fail."""
        return self._ids(Outcome.UNMET, "required")

    @property
    def warnings(self) -> list[str]:
        """Recommended and unmet."""
        return self._ids(Outcome.UNMET, "recommended")

    @property
    def errors(self) -> list[str]:
        return self._ids(Outcome.ERROR)

    @property
    def not_evaluated(self) -> list[str]:
        return self._ids(Outcome.NOT_EVALUATED)

    @property
    def manual(self) -> list[str]:
        return self._ids(Outcome.MANUAL)

    @property
    def reply(self) -> Reply | None:
        """The answer the provider would give: the harshest reply among the failed
        requirements (reject, then tempfail, then spam), the first in the file on a tie."""
        replies = [r.reply for r in self.results if r.outcome is Outcome.UNMET and r.reply]
        return max(replies, key=_severity, default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON; ``details`` only for the requirements to act on (unmet or undecided), so
        a thousand-domain report is not mostly the requirements everyone meets."""
        reply = self.reply
        return {"rulebook": self.rulebook, "bulk": self.bulk, "status": self.status.value,
                "failed": self.failed, "warnings": self.warnings, "errors": self.errors,
                "not_evaluated": self.not_evaluated, "manual": self.manual,
                "reply": reply.to_dict() if reply else None,
                "details": [r.to_dict() for r in self.results
                            if r.outcome in (Outcome.UNMET, Outcome.ERROR)]}  # fmt: skip


class _Evidence:
    """The results of one audit, indexed once: the worst status per check id."""

    __slots__ = ("domain", "message", "scopes", "status")

    def __init__(self, results: Iterable[CheckResult]) -> None:
        status: dict[str, Status] = {}
        for result in results:
            seen = status.get(result.id)
            if seen is None or result.status.rank > seen.rank:
                status[result.id] = result.status
        self.status = status
        self.scopes = {_scope(check_id) for check_id in status}
        self.message = "message" in self.scopes
        self.domain = len(self.scopes) > self.message

    def state(self, term: CheckTerm, accept: frozenset[Status]) -> tuple[int, str]:
        status = self.status.get(term.id)
        if status is not None:
            if status in accept:  # a Status is a str: shown as "pass", "warn"...
                return _MET, status
            return (_ERROR if status is Status.ERROR else _UNMET), status
        scope = _scope(term.id)
        if term.optional or not (self.message if scope == "message" else self.domain):
            return _OUT, "not evaluated"
        if scope not in self.scopes:
            return _UNKNOWN, "not evaluated"
        return _ERROR, "missing"


_SCOPES = {c: "message" if c in MESSAGE_CHECKS else group_of(c) for c in CHECKS}
_WHY = {"ptr": "no sending IP given", "dkim": "no DKIM selector given"}


def _scope(check_id: str) -> str:
    """The check's group (spf, dkim, ptr...), or "message" for message checks."""
    return _SCOPES.get(check_id) or group_of(check_id)


def _any(states: Iterable[int]) -> int:
    return max(states, key=_ANY_RANK.__getitem__, default=_OUT)


def evaluate(
    rulebook: Rulebook, results: Sequence[CheckResult], *, bulk: bool = True
) -> Compliance:
    """Judge ``results`` (one domain's probe, or one message's check-message) against
    ``rulebook``; ``bulk``: the sender sends over ``bulk_threshold`` a day to the provider."""
    return _evaluate(rulebook, _Evidence(results), bulk)


def _evaluate(rulebook: Rulebook, evidence: _Evidence, bulk: bool) -> Compliance:
    judged = tuple(_judge(req, evidence) for req in rulebook.requirements if req.applies(bulk))
    unmet = {r.requirement.level for r in judged if r.outcome is Outcome.UNMET}
    if "required" in unmet:
        status = Status.FAIL
    elif any(r.outcome is Outcome.ERROR for r in judged):
        status = Status.ERROR
    elif unmet or any(r.warned for r in judged):
        status = Status.WARN
    else:
        status = Status.PASS
    return Compliance(rulebook.id, bulk, status, judged)


class ComplianceMemo:
    """:func:`evaluate` as JSON, memoised on all it reads: the worst status of each check id
    the rulebook names, and which check groups ran (:class:`_Evidence`).

    Auditing many domains, most share a handful of status patterns, so each rulebook is
    judged once per pattern instead of once per domain. The returned dicts are shared:
    treat them as read-only."""

    def __init__(self, *, bulk: bool = True) -> None:
        self.bulk = bulk
        self._memo: dict[tuple[object, ...], dict[str, Any]] = {}
        self._named: dict[str, tuple[str, ...]] = {}

    def __call__(self, rulebook: Rulebook, results: Sequence[CheckResult]) -> dict[str, Any]:
        return self.judge_all([rulebook], results)[rulebook.id]

    def judge_all(
        self, rulebooks: Sequence[Rulebook], results: Sequence[CheckResult]
    ) -> dict[str, dict[str, Any]]:
        """Each rulebook's verdict on one audit's ``results``, by rulebook id."""
        evidence = _Evidence(results)
        scopes = frozenset(evidence.scopes)
        out: dict[str, dict[str, Any]] = {}
        for rulebook in rulebooks:
            key = (rulebook.id, tuple(map(evidence.status.get, self._ids(rulebook))), scopes)
            hit = self._memo.get(key)
            if hit is None:
                hit = self._memo[key] = _evaluate(rulebook, evidence, self.bulk).to_dict()
            out[rulebook.id] = hit
        return out

    def _ids(self, rulebook: Rulebook) -> tuple[str, ...]:
        named = self._named.get(rulebook.id)
        if named is None:
            terms = (t for r in rulebook.requirements for t in (*r.checks, *chain(*r.any_of)))
            named = self._named[rulebook.id] = tuple(dict.fromkeys(t.id for t in terms))
        return named


_OUTCOMES = {_MET: Outcome.MET, _UNMET: Outcome.UNMET, _ERROR: Outcome.ERROR}


def _judge(req: Requirement, evidence: _Evidence) -> RequirementResult:
    if req.manual:
        return RequirementResult(req, Outcome.MANUAL, (), "checked by hand: not evaluated")
    seen = [evidence.state(term, req.accept) for term in req.terms]
    states = [state for state, _ in seen]
    parts = []
    if req.checks:
        parts.append(max([states[i] for i in req._checks_at], default=_OUT))
    if req.any_of:
        parts.append(_any(max([states[i] for i in g], default=_OUT) for g in req._groups_at))
    state = max(parts)
    rows = [(label, shown, st) for label, (st, shown) in zip(req.labels, seen, strict=True)]
    warned = state == _MET and any(shown == "warn" for _, shown, _ in rows)
    outcome = _OUTCOMES.get(state, Outcome.NOT_EVALUATED)
    checks = tuple((label, str(shown)) for label, shown, _ in rows)
    return RequirementResult(req, outcome, checks, _reason(state, rows, evidence), warned)


def _reason(state: int, rows: Sequence[tuple[str, str, int]], evidence: _Evidence) -> str:
    def listed(wanted: int) -> str:
        return ", ".join(f"{label} {shown}" for label, shown, st in rows if st == wanted)

    if state == _MET:
        warned = ", ".join(label for label, shown, _ in rows if shown == "warn")
        return f"met (warn: {warned})" if warned else "met"
    if state == _UNMET:
        return f"not met: {listed(_UNMET)}"
    if state == _ERROR:
        return f"could not be decided: {listed(_ERROR)}"
    if state == _UNKNOWN:
        groups = sorted({_scope(label.rstrip("?")) for label, _, st in rows if st == _UNKNOWN})
        why = "; ".join(f"no {g} results ({_WHY.get(g, 'check group skipped')})" for g in groups)
        return f"not evaluated: {why}"
    if evidence.domain and not evidence.message:
        return "not evaluated: needs a received message (sokures check-message)"
    return "not evaluated: needs a domain audit (sokures probe)"


# ----------------------------------------------------------------- diffing --
@dataclass(frozen=True, slots=True)
class RequirementChange:
    old: Requirement
    new: Requirement
    #: what changed: title, applies_to, level, manual, checks, any_of, accept, note,
    #: reply (code, enhanced code or disposition), reply.text
    fields: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.new.id


@dataclass(frozen=True, slots=True)
class RulebookDiff:
    old: Rulebook
    new: Rulebook
    added: tuple[Requirement, ...]
    removed: tuple[Requirement, ...]
    changed: tuple[RequirementChange, ...]
    #: rulebook-wide settings that changed: (name, old, new) as text
    settings: tuple[tuple[str, str, str], ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.settings)

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old.id, "new": self.new.id,
                "added": [r.id for r in self.added], "removed": [r.id for r in self.removed],
                "changed": [{"id": c.id, "fields": list(c.fields), "old": c.old.to_dict(),
                             "new": c.new.to_dict()} for c in self.changed],
                "settings": [{"name": n, "old": o, "new": v} for n, o, v in self.settings],
                "lines": describe(self)}  # fmt: skip


def diff(old: Rulebook, new: Rulebook) -> RulebookDiff:
    """What changed from ``old`` to ``new``, requirements paired by id."""
    old_ids = {r.id: r for r in old.requirements}
    new_ids = {r.id: r for r in new.requirements}
    changed = []
    for req in new.requirements:
        before = old_ids.get(req.id)
        if before is not None:
            fields = _changed_fields(before, req)
            if fields:
                changed.append(RequirementChange(before, req, fields))
    settings = tuple((name, _setting(old, name), _setting(new, name)) for name in _SETTINGS
                     if _setting(old, name) != _setting(new, name))  # fmt: skip
    return RulebookDiff(
        old, new,
        added=tuple(r for r in new.requirements if r.id not in old_ids),
        removed=tuple(r for r in old.requirements if r.id not in new_ids),
        changed=tuple(changed), settings=settings,
    )  # fmt: skip


def _changed_fields(old: Requirement, new: Requirement) -> tuple[str, ...]:
    names = ("title", "applies_to", "level", "manual", "checks", "any_of", "accept", "note")
    fields = [name for name in names if getattr(old, name) != getattr(new, name)]
    if _reply_key(old.reply) != _reply_key(new.reply):
        fields.append("reply")
    if (old.reply and old.reply.text) != (new.reply and new.reply.text):
        fields.append("reply.text")
    return tuple(fields)


def _reply_key(reply: Reply | None) -> tuple[Any, ...] | None:
    return (reply.code, reply.enhanced, reply.disposition) if reply else None


def _summary(reply: Reply | None) -> str:
    return reply.summary if reply else "none"


_SETTINGS = ("bulk_threshold", "domains", "limits", "dmarc_policy.reject",
             "dmarc_policy.quarantine")  # fmt: skip


def _setting(book: Rulebook, name: str) -> str:
    if name == "bulk_threshold":
        return str(book.bulk_threshold)
    if name == "domains":
        return ", ".join(book.domains) or "none"
    if name == "dmarc_policy.reject":
        return _summary(book.dmarc_reject)
    if name == "dmarc_policy.quarantine":
        return _summary(book.dmarc_quarantine)
    limits = book.limits
    if limits is None:
        return "none"
    rate = f"{limits.messages_per_second:g}/s" if limits.messages_per_second else "no rate"
    conns = f", {limits.connections} connections" if limits.connections else ""
    return f"{rate}{conns}, reply {_summary(limits.reply)}"


def describe(change: RulebookDiff) -> list[str]:
    """Lines a person can read, e.g.
    ``auth.dmarc_alignment: reply 421 4.7.32 tempfail -> 550 5.7.32 reject``."""
    lines = [f"added {r.id} ({r.applies_to} senders): {r.title}; reply {_summary(r.reply)}"
             for r in change.added]  # fmt: skip
    lines += [f"removed {r.id} ({r.applies_to} senders): {r.title}" for r in change.removed]
    for item in change.changed:
        shown = [f for f in item.fields if f not in ("note", "reply.text")] or item.fields
        if "reply" in shown:
            shown = [f for f in shown if f != "reply.text"]
        lines += [_field_line(item, name) for name in shown]
    lines += [f"{name}: {old} -> {new}" for name, old, new in change.settings]
    return lines


def _field_line(item: RequirementChange, name: str) -> str:
    old, new, head = item.old, item.new, f"{item.id}: "
    if name == "reply":
        both = old.reply is not None and new.reply is not None
        text = " (text changed)" if both and "reply.text" in item.fields else ""
        return f"{head}reply {_summary(old.reply)} -> {_summary(new.reply)}{text}"
    if name == "checks":
        before, after = [str(t) for t in old.checks], [str(t) for t in new.checks]
        delta = [f"+ {t}" for t in after if t not in before]
        delta += [f"- {t}" for t in before if t not in after]
        return f"{head}checks {', '.join(delta) or 'reordered'}"
    if name == "any_of":
        return f"{head}any_of {_groups_text(old.any_of)} -> {_groups_text(new.any_of)}"
    if name == "accept":
        return f"{head}accept {_accept_text(old)} -> {_accept_text(new)}"
    if name in ("applies_to", "level", "manual"):
        return f"{head}{name} {getattr(old, name)} -> {getattr(new, name)}"
    return f"{head}{name.replace('.', ' ')} changed"


def _groups_text(groups: tuple[tuple[CheckTerm, ...], ...]) -> str:
    return " | ".join("[" + ", ".join(str(t) for t in g) + "]" for g in groups) or "none"


def _accept_text(req: Requirement) -> str:
    return ", ".join(sorted(s.value for s in req.accept))


def affected(
    old: Rulebook,
    new: Rulebook,
    results_by_domain: Mapping[str, Sequence[CheckResult]],
    bulk: bool = True,
) -> dict[str, list[str]]:
    """Domains compliant under ``old`` (pass or warn) that fail under ``new``, each with
    the requirements that newly fail."""
    out: dict[str, list[str]] = {}
    for domain, results in results_by_domain.items():
        before = evaluate(old, results, bulk=bulk)
        if before.status not in (Status.PASS, Status.WARN):
            continue
        after = evaluate(new, results, bulk=bulk)
        if after.status is Status.FAIL:
            out[domain] = [rid for rid in after.failed if rid not in before.failed]
    return out


def escalated(
    old: Rulebook,
    new: Rulebook,
    results_by_domain: Mapping[str, Sequence[CheckResult]],
    bulk: bool = True,
) -> dict[str, list[str]]:
    """Domains failing a requirement under both versions whose reply got harsher
    (none < spam < tempfail < reject), with those requirements: mail that was deferred or
    filed as spam and is now refused (gmail@2024-02 -> gmail@2025-11)."""
    out: dict[str, list[str]] = {}
    for domain, results in results_by_domain.items():
        before = set(evaluate(old, results, bulk=bulk).failed)
        harsher = [rid for rid in evaluate(new, results, bulk=bulk).failed if rid in before
                   and _severity(new.requirement(rid).reply)
                   > _severity(old.requirement(rid).reply)]  # fmt: skip
        if harsher:
            out[domain] = harsher
    return out


def _severity(reply: Reply | None) -> int:
    return _SEVERITY[reply.disposition] if reply else 0
