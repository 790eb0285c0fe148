"""Provider rulebooks: what Gmail, Yahoo and Outlook require of senders, as data.

A rulebook is a TOML file ``probes/rulebooks/<provider>@<yyyy-mm>.toml`` (the format is
described in ``probes/rulebooks/README.md``). A new provider rule is a new file, not code.

* :func:`load_rulebook` and :func:`available` find, read and validate rulebooks; a malformed
  one raises :class:`RulebookError` naming the file and the key
  (``gmail@2025-11.toml: requirement[3].checks[1]: unknown check id 'spf.precense'``).
* :func:`evaluate` (judging probe results against a rulebook) and :func:`diff`,
  :func:`describe`, :func:`affected`, :func:`escalated` (comparing two versions) live in
  :mod:`probes.compliance`, which builds on the types here; they are re-exported from this
  module, imported on first use (see the end of the module).
"""

from __future__ import annotations

import difflib
import os
import re
import string
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deliver.errors import PolicyError
from probes.catalog import CHECKS
from probes.checks import Status

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


# ------------------------------------------------------- probes.compliance --
# Evaluation and diffing live in probes.compliance, which imports the types above. Its
# names are still part of this module's API: imported on first use (PEP 562), so that
# either module may be imported first without an import cycle.
_COMPLIANCE_NAMES = frozenset({
    "Compliance", "ComplianceMemo", "Outcome", "RequirementChange", "RequirementResult",
    "RulebookDiff", "affected", "describe", "diff", "escalated", "evaluate",
})  # fmt: skip

if TYPE_CHECKING:
    from probes.compliance import (
        Compliance,
        ComplianceMemo,
        Outcome,
        RequirementChange,
        RequirementResult,
        RulebookDiff,
        affected,
        describe,
        diff,
        escalated,
        evaluate,
    )
else:

    def __getattr__(name: str) -> Any:
        if name not in _COMPLIANCE_NAMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from probes import compliance

        value = getattr(compliance, name)
        globals()[name] = value  # later lookups skip this function
        return value
