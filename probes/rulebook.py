"""Provider rulebooks: what Gmail, Yahoo and Outlook require of senders, as data.

A rulebook is a TOML file ``probes/rulebooks/<provider>@<yyyy-mm>.toml`` (the format is
described in ``probes/rulebooks/README.md``). A new provider rule is a new file, not code.

* :func:`load_rulebook` and :func:`available` find, read and validate rulebooks; a malformed
  one raises :class:`RulebookError` naming the file and the key
  (``gmail@2025-11.toml: requirement[3].checks[1]: unknown check id 'spf.precense'``).
* :func:`evaluate` judges probe results against a rulebook (pure, no I/O) and returns a
  :class:`Compliance`: which requirements fail and what the provider would answer.
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

import difflib
import enum
import os
import re
import string
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import chain
from pathlib import Path
from typing import Any

from deliver.errors import PolicyError
from probes.catalog import CHECKS, group_of
from probes.checks import CheckResult, Status

__all__ = [
    "DISPOSITIONS",
    "MESSAGE_CHECKS",
    "RULEBOOK_DIR",
    "CheckTerm",
    "Compliance",
    "ComplianceMemo",
    "Limits",
    "Outcome",
    "Reply",
    "Requirement",
    "RequirementChange",
    "RequirementResult",
    "Rulebook",
    "RulebookDiff",
    "RulebookError",
    "RulebookRef",
    "affected",
    "available",
    "describe",
    "diff",
    "escalated",
    "evaluate",
    "load_rulebook",
]

RULEBOOK_DIR = Path(__file__).with_name("rulebooks")
DISPOSITIONS = ("reject", "tempfail", "spam")
APPLIES_TO = ("all", "bulk")
LEVELS = ("required", "recommended")
#: placeholders a reply text may use: the connecting IP and the domain the reply is about
PLACEHOLDERS = frozenset({"ip", "domain"})
#: checks made on a received message (check-message), not on a domain's DNS
MESSAGE_CHECKS = frozenset(
    {c for c in CHECKS if c.startswith("message.")} | {"dkim.signature", "dmarc.result"}
)
_SEVERITY = {"spam": 1, "tempfail": 2, "reject": 3}
_DEFAULT_ACCEPT = frozenset({Status.PASS, Status.WARN})

_TOP_KEYS = frozenset({"provider", "version", "effective", "title", "source", "bulk_threshold",
                       "domains", "note", "limits", "dmarc_policy", "requirement"})  # fmt: skip
_REQ_KEYS = frozenset({"id", "title", "applies_to", "level", "checks", "any_of", "accept",
                       "manual", "note", "reply"})  # fmt: skip
_REPLY_KEYS = frozenset({"code", "enhanced", "text", "text_verbatim", "disposition"})
_LIMIT_KEYS = frozenset({"messages_per_second", "connections", "reply"})
_DMARC_KEYS = frozenset({"reject", "quarantine"})
_PROVIDER_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_VERSION_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_STEM_RE = re.compile(r"([a-z0-9][a-z0-9_-]*)@(\d{4}-(?:0[1-9]|1[0-2]))")
_REQ_ID_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
# RFC 3463 §2: class.subject.detail, the class matching the reply code's first digit
_ENHANCED_RE = re.compile(r"([245])\.\d{1,3}\.\d{1,3}")
_TOML_AT_RE = re.compile(r"\s*\(at (line \d+, column \d+)\)\s*$")


class RulebookError(PolicyError):
    """A rulebook cannot be found or is malformed; names the file and the key."""

    def __str__(self) -> str:
        if not self.key:
            return f"{self.file}: {self.reason}"
        return f"{self.file}: {self.key}: {self.reason}"


# ------------------------------------------------------------------ types --
@dataclass(frozen=True, slots=True)
class Reply:
    """What the provider answers when a requirement is not met.

    ``reject`` is a 5xx, ``tempfail`` a 4xx, ``spam`` means accepted and filed as spam
    (no code, or a 2xx). ``text`` may hold ``{ip}`` and ``{domain}``; ``text_verbatim``
    says whether it is the provider's own wording or a paraphrase."""

    disposition: str
    code: int | None = None
    enhanced: str | None = None
    text: str | None = None
    text_verbatim: bool = False

    @property
    def summary(self) -> str:
        """``550 5.7.26 reject``"""
        parts = [str(self.code)] if self.code is not None else []
        if self.enhanced:
            parts.append(self.enhanced)
        return " ".join([*parts, self.disposition])

    def render(self, *, ip: str = "", domain: str = "") -> str:
        """The reply text with its placeholders filled ("" when there is none)."""
        return (self.text or "").format(ip=ip, domain=domain)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text,
                "text_verbatim": self.text_verbatim, "disposition": self.disposition}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CheckTerm:
    """A check id a requirement names; ``optional`` (written ``"id?"``): judged when the
    results hold it, left out when they do not (``spf.result`` needs ``--ip``)."""

    id: str
    optional: bool = False

    def __str__(self) -> str:
        return self.id + ("?" if self.optional else "")


@dataclass(frozen=True, slots=True)
class Requirement:
    id: str
    title: str
    applies_to: str
    checks: tuple[CheckTerm, ...] = ()
    any_of: tuple[tuple[CheckTerm, ...], ...] = ()
    accept: frozenset[Status] = _DEFAULT_ACCEPT
    manual: bool = False
    #: "recommended": unmet makes the compliance status warn, not fail
    level: str = "required"
    reply: Reply | None = None
    note: str | None = None
    #: every check named, once, in order; where ``checks`` and ``any_of`` find them in it
    terms: tuple[CheckTerm, ...] = field(init=False, repr=False, compare=False)
    labels: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _checks_at: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _groups_at: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # once per load, so evaluate() does no hashing of terms
        terms = tuple(dict.fromkeys((*self.checks, *(t for g in self.any_of for t in g))))
        at = {term: i for i, term in enumerate(terms)}
        object.__setattr__(self, "terms", terms)
        object.__setattr__(self, "labels", tuple(str(t) for t in terms))
        object.__setattr__(self, "_checks_at", tuple(at[t] for t in self.checks))
        object.__setattr__(self, "_groups_at", tuple(tuple(at[t] for t in g) for g in self.any_of))

    def applies(self, bulk: bool) -> bool:
        return self.applies_to == "all" or bulk

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "applies_to": self.applies_to,
            "level": self.level, "manual": self.manual,
            "checks": [str(t) for t in self.checks],
            "any_of": [[str(t) for t in group] for group in self.any_of],
            "accept": sorted(s.value for s in self.accept),
            "reply": self.reply.to_dict() if self.reply else None, "note": self.note,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Limits:
    """Rates for the local lab's stand-in of the provider (providers do not publish them)."""

    messages_per_second: float | None = None
    connections: int | None = None
    reply: Reply | None = None


@dataclass(frozen=True, slots=True)
class Rulebook:
    provider: str
    version: str
    effective: date
    title: str
    sources: tuple[str, ...]
    requirements: tuple[Requirement, ...]
    bulk_threshold: int = 5000
    #: the recipient domains the provider serves (gmail.com, googlemail.com)
    domains: tuple[str, ...] = ()
    limits: Limits | None = None
    #: what the provider answers when a message fails the sending domain's DMARC p=reject
    #: or p=quarantine (RFC 7489 §6.3); applied by DMARC itself, not a requirement
    dmarc_reject: Reply | None = None
    dmarc_quarantine: Reply | None = None
    note: str | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return f"{self.provider}@{self.version}"

    def requirement(self, requirement_id: str) -> Requirement:
        for req in self.requirements:
            if req.id == requirement_id:
                return req
        raise KeyError(requirement_id)

    def applicable(self, bulk: bool = True) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requirements if r.applies(bulk))

    def summary(self) -> dict[str, Any]:
        """One line's worth, for ``rules list``."""
        return {"id": self.id, "provider": self.provider, "version": self.version,
                "effective": self.effective.isoformat(), "title": self.title,
                "requirements": len(self.requirements), "bulk_threshold": self.bulk_threshold,
                "sources": list(self.sources)}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-serialisable, for ``rules show --json``."""
        limits = self.limits
        return {
            **self.summary(), "domains": list(self.domains), "note": self.note,
            "limits": None if limits is None else {
                "messages_per_second": limits.messages_per_second,
                "connections": limits.connections,
                "reply": limits.reply.to_dict() if limits.reply else None},
            "dmarc_policy": {"reject": self.dmarc_reject and self.dmarc_reject.to_dict(),
                             "quarantine": self.dmarc_quarantine
                             and self.dmarc_quarantine.to_dict()},
            "requirements": [r.to_dict() for r in self.requirements],
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class RulebookRef:
    """A rulebook file found by :func:`available` (not parsed yet)."""

    provider: str
    version: str
    path: Path

    @property
    def id(self) -> str:
        return f"{self.provider}@{self.version}"


# ---------------------------------------------------------------- finding --
def available(directory: str | os.PathLike[str] | None = None) -> list[RulebookRef]:
    """The rulebooks in ``directory`` (default: the shipped ones), by provider and version.

    Only files named ``<provider>@<yyyy-mm>.toml`` count; they are not parsed here."""
    folder = Path(directory) if directory is not None else RULEBOOK_DIR
    if not folder.is_dir():
        raise RulebookError(str(folder), "", "not a directory of rulebooks")
    refs = []
    for path in folder.glob("*@*.toml"):
        match = _STEM_RE.fullmatch(path.stem)
        if match:
            refs.append(RulebookRef(match[1], match[2], path))
    return sorted(refs, key=lambda r: (r.provider, r.version))


def load_rulebook(
    ref: str | os.PathLike[str], *, directory: str | os.PathLike[str] | None = None
) -> Rulebook:
    """Load and validate a rulebook.

    ``ref`` is a path to a ``.toml`` file, or an id looked up in ``directory`` (default:
    the shipped rulebooks): ``gmail@2024-02`` (also the file stem), ``gmail@latest`` or
    ``gmail`` (the newest version)."""
    if isinstance(ref, os.PathLike) or str(ref).endswith(".toml"):
        return _load_file(Path(ref))
    provider, _, version = str(ref).partition("@")
    refs = [r for r in available(directory) if r.provider == provider]
    if version in ("", "latest") and refs:
        return _load_file(refs[-1].path)
    for found in refs:
        if found.version == version:
            return _load_file(found.path)
    known = ", ".join(r.id for r in available(directory)) or "none"
    raise RulebookError(str(ref), "", f"no such rulebook (available: {known})")


def _load_file(path: Path) -> Rulebook:
    src = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulebookError(src, "", f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        at = _TOML_AT_RE.search(text)
        where = at[1] if at else ""
        raise RulebookError(src, where, f"invalid TOML: {_TOML_AT_RE.sub('', text)}") from None
    return _parse(raw, src, path)


# ---------------------------------------------------------------- parsing --
def _parse(raw: dict[str, Any], src: str, path: Path | None) -> Rulebook:
    _no_unknown(src, raw, "", _TOP_KEYS)
    provider = _str(src, raw, "provider", required=True)
    version = _str(src, raw, "version", required=True)
    if not _PROVIDER_RE.fullmatch(provider):
        raise RulebookError(src, "provider", f"{provider!r}: use lowercase letters, digits, - _")
    if not _VERSION_RE.fullmatch(version):
        raise RulebookError(src, "version", f"{version!r} is not yyyy-mm")
    stem = _STEM_RE.fullmatch(path.stem) if path is not None else None
    if stem and (stem[1], stem[2]) != (provider, version):
        raise RulebookError(src, "version" if stem[1] == provider else "provider",
                            f"'{provider}@{version}' does not match the file name")  # fmt: skip
    requirements = raw.get("requirement")
    if not isinstance(requirements, list) or not requirements:
        raise RulebookError(src, "requirement", "needs at least one [[requirement]] table")
    reqs = tuple(_requirement(src, item, i) for i, item in enumerate(requirements))
    _unique_ids(src, reqs)
    threshold = _int(src, raw, "bulk_threshold", 5000)
    if threshold < 1:
        raise RulebookError(src, "bulk_threshold", "must be a positive number of messages a day")
    dmarc = _table(src, raw.get("dmarc_policy", {}), "dmarc_policy", _DMARC_KEYS)
    return Rulebook(
        provider=provider, version=version, effective=_date(src, raw),
        title=_str(src, raw, "title", required=True), sources=_sources(src, raw),
        requirements=reqs, bulk_threshold=threshold,
        domains=tuple(_str_list(src, raw.get("domains", []), "domains")),
        limits=_limits(src, raw["limits"]) if "limits" in raw else None,
        dmarc_reject=_reply(src, dmarc["reject"], "dmarc_policy.reject")
        if "reject" in dmarc else None,
        dmarc_quarantine=_reply(src, dmarc["quarantine"], "dmarc_policy.quarantine")
        if "quarantine" in dmarc else None,
        note=_str(src, raw, "note"), path=path,
    )  # fmt: skip


def _requirement(src: str, raw: Any, index: int) -> Requirement:
    where = f"requirement[{index}]"
    table = _table(src, raw, where, _REQ_KEYS)
    rid = _str(src, table, "id", where, required=True)
    if not _REQ_ID_RE.fullmatch(rid):
        raise RulebookError(src, f"{where}.id", f"{rid!r}: use a dotted lowercase id (auth.spf)")
    applies_to = _str(src, table, "applies_to", where, required=True)
    if applies_to not in APPLIES_TO:
        raise RulebookError(src, f"{where}.applies_to", f"{applies_to!r} is not all or bulk")
    level = _str(src, table, "level", where) or "required"
    if level not in LEVELS:
        raise RulebookError(src, f"{where}.level", f"{level!r} is not required or recommended")
    checks = _terms(src, table["checks"], f"{where}.checks") if "checks" in table else ()
    any_of = _groups(src, table["any_of"], f"{where}.any_of") if "any_of" in table else ()
    manual = _bool(src, table, "manual", where)
    if manual and (checks or any_of):
        key = "checks" if checks else "any_of"
        raise RulebookError(src, f"{where}.{key}", "a manual requirement names no checks")
    if not manual and not (checks or any_of):
        raise RulebookError(src, where, f"{rid!r} needs checks or any_of (or manual = true)")
    return Requirement(
        id=rid, title=_str(src, table, "title", where, required=True), applies_to=applies_to,
        checks=checks, any_of=any_of, accept=_accept(src, table, where), manual=manual,
        level=level, note=_str(src, table, "note", where),
        reply=_reply(src, table["reply"], f"{where}.reply") if "reply" in table else None,
    )  # fmt: skip


def _terms(src: str, raw: Any, where: str) -> tuple[CheckTerm, ...]:
    names = _str_list(src, raw, where)
    if not names:
        raise RulebookError(src, where, "must list at least one check id")
    terms: list[CheckTerm] = []
    for i, name in enumerate(names):
        check_id, optional = (name[:-1], True) if name.endswith("?") else (name, False)
        if check_id not in CHECKS:
            close = difflib.get_close_matches(check_id, CHECKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RulebookError(src, f"{where}[{i}]", f"unknown check id {check_id!r}{hint}")
        if any(t.id == check_id for t in terms):
            raise RulebookError(src, f"{where}[{i}]", f"{check_id!r} is listed twice")
        terms.append(CheckTerm(check_id, optional))
    return tuple(terms)


def _groups(src: str, raw: Any, where: str) -> tuple[tuple[CheckTerm, ...], ...]:
    if not isinstance(raw, list) or not raw:
        raise RulebookError(src, where, "must be a list of check-id lists ([[...], [...]])")
    return tuple(_terms(src, group, f"{where}[{i}]") for i, group in enumerate(raw))


def _accept(src: str, table: Mapping[str, Any], where: str) -> frozenset[Status]:
    if "accept" not in table:
        return _DEFAULT_ACCEPT
    names = _str_list(src, table["accept"], f"{where}.accept")
    bad = [n for n in names if n not in ("pass", "warn")]
    if not names or bad:
        raise RulebookError(src, f"{where}.accept", "list pass and/or warn")
    return frozenset(Status(n) for n in names)


def _reply(src: str, raw: Any, where: str) -> Reply:
    table = _table(src, raw, where, _REPLY_KEYS)
    disposition = _str(src, table, "disposition", where, required=True)
    if disposition not in DISPOSITIONS:
        raise RulebookError(src, f"{where}.disposition",
                            f"{disposition!r} is not one of {', '.join(DISPOSITIONS)}")  # fmt: skip
    code = _int(src, table, "code", None, where)
    wanted = {"reject": (500, 599, "a 5xx"), "tempfail": (400, 499, "a 4xx")}.get(disposition)
    if wanted and (code is None or not wanted[0] <= code <= wanted[1]):
        raise RulebookError(src, f"{where}.code", f"a {disposition} reply needs {wanted[2]} code")
    if disposition == "spam" and code is not None and not 200 <= code <= 299:
        raise RulebookError(src, f"{where}.code", "spam means accepted: leave code out or use 250")
    enhanced = _str(src, table, "enhanced", where)
    if enhanced is not None:
        match = _ENHANCED_RE.fullmatch(enhanced)
        problem = ("needs a code" if code is None
                   else "is not class.subject.detail (RFC 3463)" if not match
                   else f"does not fit code {code}" if match[1] != str(code)[0]
                   else "")  # fmt: skip
        if problem:
            raise RulebookError(src, f"{where}.enhanced", f"{enhanced!r} {problem}")
    text = _str(src, table, "text", where)
    if text is not None:
        _check_text(src, text, f"{where}.text")
    verbatim = _bool(src, table, "text_verbatim", where)
    if verbatim and text is None:
        raise RulebookError(src, f"{where}.text_verbatim", "set without a text")
    return Reply(disposition, code, enhanced, text, verbatim)


def _check_text(src: str, text: str, where: str) -> None:
    if "\r" in text or "\n" in text:
        raise RulebookError(src, where, "one line: the server splits long replies itself")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise RulebookError(src, where, f"{exc}; write a literal brace as {{{{ or }}}}") from None
    for name in names:
        if name not in PLACEHOLDERS:
            known = "{ip}, {domain}"
            raise RulebookError(src, where, f"unknown placeholder {{{name}}}: use {known}")


def _limits(src: str, raw: Any) -> Limits:
    table = _table(src, raw, "limits", _LIMIT_KEYS)
    rate = table.get("messages_per_second")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or rate <= 0):  # fmt: skip
        raise RulebookError(src, "limits.messages_per_second", "must be a positive number")
    connections = _int(src, table, "connections", None, "limits")
    if connections is not None and connections < 1:
        raise RulebookError(src, "limits.connections", "must be at least 1")
    reply = _reply(src, table["reply"], "limits.reply") if "reply" in table else None
    return Limits(float(rate) if rate is not None else None, connections, reply)


def _unique_ids(src: str, reqs: Sequence[Requirement]) -> None:
    seen: dict[str, int] = {}
    for i, req in enumerate(reqs):
        if req.id in seen:
            first = seen[req.id]
            raise RulebookError(src, f"requirement[{i}].id",
                                f"duplicate id {req.id!r} (also requirement[{first}])")  # fmt: skip
        seen[req.id] = i


def _date(src: str, raw: Mapping[str, Any]) -> date:
    value = raw.get("effective")
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    if value is None:
        raise RulebookError(src, "effective", "missing (the date the rules apply from)")
    raise RulebookError(src, "effective", f"{value!r} is not a date (2024-02-01)")


def _sources(src: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    value = raw.get("source")
    urls = [value] if isinstance(value, str) else _str_list(src, value, "source")
    if not urls or any(not u.startswith(("https://", "http://")) for u in urls):
        raise RulebookError(src, "source", "give the provider's page(s) as http(s) URLs")
    return tuple(urls)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _table(src: str, raw: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RulebookError(src, where, "must be a table")
    _no_unknown(src, raw, where, allowed)
    return raw


def _no_unknown(src: str, raw: Mapping[str, Any], where: str, allowed: frozenset[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RulebookError(src, _join(where, unknown[0]), f"unknown key{hint}")


def _str(src: str, table: Mapping[str, Any], key: str, where: str = "",
         *, required: bool = False) -> Any:  # fmt: skip
    value = table.get(key)
    if value is None:
        if required:
            raise RulebookError(src, _join(where, key), "missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise RulebookError(src, _join(where, key), "must be a non-empty string")
    return value


def _int(src: str, table: Mapping[str, Any], key: str, default: Any, where: str = "") -> Any:
    value = table.get(key, default)
    if value is not default and (isinstance(value, bool) or not isinstance(value, int)):
        raise RulebookError(src, _join(where, key), "must be a whole number")
    return value


def _bool(src: str, table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise RulebookError(src, _join(where, key), "must be true or false")
    return value


def _str_list(src: str, raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise RulebookError(src, where, "must be a list of strings")
    return raw


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
    evidence = _Evidence(results)
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
    """:func:`evaluate` as JSON, memoised on all it reads: the worst status per check id.

    Auditing many domains, most share a handful of status patterns, so each rulebook is
    judged once per pattern instead of once per domain. The returned dicts are shared:
    treat them as read-only."""

    def __init__(self, *, bulk: bool = True) -> None:
        self.bulk = bulk
        self._memo: dict[tuple[object, ...], dict[str, Any]] = {}
        self._named: dict[str, tuple[str, ...]] = {}
        #: the last results summarised: one audit is judged by each rulebook in turn
        self._last: tuple[Sequence[CheckResult], dict[str, Status], frozenset[str]] | None = None

    def _summary(self, results: Sequence[CheckResult]) -> tuple[dict[str, Status], frozenset[str]]:
        last = self._last
        if last is not None and last[0] is results:
            return last[1], last[2]
        worst: dict[str, Status] = {}
        for result in results:
            seen = worst.get(result.id)
            if seen is None or result.status.rank > seen.rank:
                worst[result.id] = result.status
        scopes = frozenset(_scope(i) for i in worst)
        self._last = (results, worst, scopes)
        return worst, scopes

    def __call__(self, rulebook: Rulebook, results: Sequence[CheckResult]) -> dict[str, Any]:
        worst, scopes = self._summary(results)
        named = self._named.get(rulebook.id)
        if named is None:
            named = self._named[rulebook.id] = tuple(
                dict.fromkeys(
                    t.id for r in rulebook.requirements for t in (*r.checks, *chain(*r.any_of))
                )
            )
        # _Evidence reads the statuses of the ids named, and which scopes are present
        key = (rulebook.id, tuple(worst.get(i) for i in named), scopes)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = evaluate(rulebook, results, bulk=self.bulk).to_dict()
        return hit


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
