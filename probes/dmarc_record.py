"""Parse one DMARC record (RFC 7489 §6.3, §6.4; DMARCbis, RFC 9989): pure, no I/O.

:func:`parse` takes the text of one TXT record published at ``_dmarc.<domain>``:

- text that does not begin with ``v=DMARC1`` is not a DMARC record; receivers discard it
  (RFC 7489 §6.6.3 step 2). :func:`parse` raises :class:`NotDmarcRecord`, whose ``kind``
  says what it was instead (an SPF record, another version, ``v`` not first, other text);
- anything else is a :class:`DmarcRecord`: the valid values in typed fields, every fault
  as a :class:`Problem` (which check id reports it, what to do, what DMARCbis does about
  it), and the corrected tag list, so a check can show the repaired record in ``fix``.

Unknown tags are ignored, as receivers must (RFC 7489 §6.3), and listed in ``unknown``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = [
    "POLICIES",
    "DmarcRecord",
    "NotDmarcRecord",
    "Problem",
    "ReportUri",
    "dmarcbis_notes",
    "parse",
    "render",
    "weaker",
]

POLICIES = ("none", "quarantine", "reject")
_STRENGTH = {"none": 0, "quarantine": 1, "reject": 2}

SYNTAX, ALIGNMENT, RUA, RUF = "dmarc.syntax", "dmarc.alignment", "dmarc.rua", "dmarc.ruf"

# RFC 7489 §6.4: dmarc-version = "v" *WSP "=" *WSP %x44 %x4d %x41 %x52 %x43 %x31 (DMARC1 is
# case-sensitive; the tag name, a quoted ABNF string, is not)
_VERSION = re.compile(r"[vV]\s*=\s*DMARC1")
_SPF = re.compile(r"v\s*=\s*spf1(?:\s|$)", re.I)
_OTHER_VERSION = re.compile(r"v\s*=\s*([^;\s]*)", re.I)
_V_LATER = re.compile(r";\s*[vV]\s*=\s*DMARC1\s*(?:;|$)")
_TAG_NAME = re.compile(r"[a-z][a-z0-9_]*")  # RFC 6376 §3.2 tag-name, names lower-cased
_PCT = re.compile(r"[0-9]{1,3}")
_DIGITS = re.compile(r"[0-9]+")
_SIZE = re.compile(r"[0-9]+[kmgt]?", re.I)  # RFC 7489 §6.4 dmarc-uri "!" size
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}", re.I)
_LOCAL = re.compile(r"[^\s@,;!?]+")

#: RFC 9989 (DMARCbis): tags it removes, and tags it adds (np first came with RFC 9091)
REMOVED_BY_DMARCBIS = ("pct", "rf", "ri")
ADDED_BY_DMARCBIS = ("np", "psd", "t")
_KNOWN = ("v", "p", "sp", "np", "adkim", "aspf", "pct", "fo", "rf", "ri", "rua", "ruf",
          "psd", "t")  # fmt: skip


class NotDmarcRecord(ValueError):
    """TXT text that receivers discard as not a DMARC record (RFC 7489 §6.6.3 step 2).

    ``kind``: ``spf`` (an SPF record), ``version`` (``v=`` something else than DMARC1),
    ``v_not_first`` (``v=DMARC1`` further in), ``other`` (no ``v=`` tag), ``empty``.
    ``fix`` is the DMARC record the text was meant to be, when one can be derived.
    """

    def __init__(self, text: str, kind: str, reason: str, fix: str | None = None) -> None:
        super().__init__(reason)
        self.text, self.kind, self.reason, self.fix = text, kind, reason, fix


@dataclass(frozen=True, slots=True)
class ReportUri:
    """A valid ``mailto:`` report destination of ``rua`` or ``ruf``."""

    uri: str
    address: str
    #: the domain part of the address, lower case: where external authorisation is asked
    domain: str
    #: the ``!size`` limit as published (e.g. ``10m``), "" when none
    size: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    """One fault: the check id reporting it, the tag, a message saying what to do, and how
    DMARCbis (RFC 9989) treats it when that differs from RFC 7489 (a sentence such as
    "a missing p means p=none")."""

    check: str
    tag: str
    message: str
    dmarcbis: str = ""


Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A DMARC record: typed values (None where a tag is absent or invalid), the problems,
    and ``fixed_tags``, the corrected tag list (``v`` excluded) that :attr:`fixed` renders."""

    text: str
    #: each tag's first occurrence, as published (names lower case, values trimmed)
    tags: Tags
    problems: tuple[Problem, ...]
    fixed_tags: Tags
    unknown: tuple[str, ...] = ()
    p: str | None = None
    sp: str | None = None
    np: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    fo: str | None = None
    rf: str | None = None
    ri: int | None = None
    psd: str | None = None
    t: str | None = None
    rua: tuple[ReportUri, ...] = ()
    ruf: tuple[ReportUri, ...] = ()
    #: False when tags were not separated as RFC 7489 §6.4 requires (a ';' missing after
    #: v=DMARC1): receivers that follow the grammar do not see the tags we recovered
    intact: bool = True

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def fixed(self) -> str:
        """The record with every problem repaired (the record itself when valid)."""
        return render(self.fixed_tags)

    def tag(self, name: str) -> str | None:
        """The value of tag ``name`` as published (first occurrence), None if absent."""
        return next((value for tag, value in self.tags if tag == name), None)

    def problems_for(self, check: str) -> tuple[Problem, ...]:
        return tuple(problem for problem in self.problems if problem.check == check)

    def with_tags(self, **changes: str | None) -> str:
        """The corrected record with tags changed (None removes one), e.g. to raise p."""
        tags = [(n, changes.get(n, v)) for n, v in self.fixed_tags]
        tags += [(n, v) for n, v in changes.items() if n not in dict(self.fixed_tags)]
        return render(tuple((n, v) for n, v in tags if v is not None))

    @property
    def effective_sp(self) -> str | None:
        """The policy for subdomains: sp, else p (RFC 7489 §6.3)."""
        return self.sp or self.p

    @property
    def effective_np(self) -> str | None:
        """The policy for non-existent subdomains: np, else sp, else p (RFC 9091 §4.1)."""
        return self.np or self.effective_sp

    def applied_policy(self, subdomain: bool = False) -> str | None:
        """The policy a receiver applies: ``none`` when p (or sp) is missing or invalid and
        a rua URI is valid, None (no DMARC at all) when neither (RFC 7489 §6.6.3 step 6)."""
        if self.intact and self.p is not None and (self.tag("sp") is None or self.sp):
            return self.effective_sp if subdomain else self.p
        return "none" if self.rua else None


def render(tags: Tags) -> str:
    """``v=DMARC1; name=value; ...``"""
    return "; ".join(["v=DMARC1", *(f"{name}={value}" for name, value in tags)])


def weaker(policy: str, than: str) -> bool:
    """``policy`` enforces less than ``than`` (none < quarantine < reject)."""
    return _STRENGTH[policy] < _STRENGTH[than]


def parse(text: str) -> DmarcRecord:
    """The DMARC record in ``text``; :class:`NotDmarcRecord` when receivers discard it."""
    body = text.strip()
    head = _VERSION.match(body)
    if head is None:
        raise _not_dmarc(text, body)
    rest = body[head.end() :]
    if rest[:1].isalnum():  # v=DMARC10, v=DMARC1x: another version
        raise _not_dmarc(text, body)
    intact = not rest.strip() or rest.lstrip().startswith(";")
    problems: list[Problem] = []
    if not intact:
        problems.append(Problem(SYNTAX, "v",
            "no ';' after v=DMARC1: tags are separated by ';' (RFC 7489 §6.4), so receivers "
            "read the next tag as part of the version and discard the record or its policy; "
            "insert '; ' after v=DMARC1"))  # fmt: skip
    return _parse_tags(text, rest.lstrip(" \t;,"), problems, intact)


def _not_dmarc(text: str, body: str) -> NotDmarcRecord:
    if not body:
        return NotDmarcRecord(text, "empty", "an empty TXT record")
    if _SPF.match(body):
        return NotDmarcRecord(text, "spf", "an SPF record (v=spf1), not a DMARC record: SPF "
                              "belongs in a TXT record at the domain itself")  # fmt: skip
    later = _V_LATER.search(body)
    if later is not None:
        rest = body[: later.start()] + ";" + body[later.end() :]
        return NotDmarcRecord(text, "v_not_first", "v=DMARC1 is not the first tag, so "
                              "receivers discard the record (RFC 7489 §6.6.3 step 2): "
                              "move v=DMARC1 to the front", _guess_fix(rest))  # fmt: skip
    version = _OTHER_VERSION.match(body)
    if version is not None:
        value = version.group(1)
        hint = ("DMARC1 is case-sensitive, RFC 7489 §6.4" if value.upper() == "DMARC1"
                else "only v=DMARC1 exists")  # fmt: skip
        return NotDmarcRecord(text, "version", f"v={value} is not v=DMARC1 ({hint}), so "
                              "receivers discard the record (RFC 7489 §6.6.3 step 2)",
                              _guess_fix(body[version.end() :]))  # fmt: skip
    return NotDmarcRecord(text, "other", "does not begin with v=DMARC1, so it is not a DMARC "
                          "record (RFC 7489 §6.6.3 step 2)")  # fmt: skip


def _guess_fix(rest: str) -> str | None:
    """The record that ``rest`` (the tags after the version) was meant to be."""
    record = _parse_tags(rest, rest.strip(" \t;,"), [], True)
    return record.fixed if record.tags else None


def _parse_tags(text: str, rest: str, problems: list[Problem], intact: bool) -> DmarcRecord:
    seen: dict[str, str] = {}
    for segment in rest.split(";"):
        segment = segment.strip()
        if not segment:
            continue
        name, equals, value = segment.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not equals or not _TAG_NAME.fullmatch(name):
            problems.append(Problem(SYNTAX, "", f"'{segment}' is not a tag=value pair "
                                    "(RFC 7489 §6.4): remove it"))  # fmt: skip
        elif name == "v":
            problems.append(Problem(SYNTAX, "v", "v= appears again after v=DMARC1: remove it"))
        elif name in seen:
            # RFC 7489 §6.3 takes DKIM's tag-list syntax: a repeated tag makes the whole
            # tag-list invalid (RFC 6376 §3.2)
            problems.append(Problem(SYNTAX, name, f"{name}= appears more than once "
                                    f"({name}={seen[name]}, {name}={value}), which makes the "
                                    f"record invalid (RFC 6376 §3.2): keep one"))  # fmt: skip
        else:
            seen[name] = value
    return _validate(text, seen, problems, intact)


def _validate(
    text: str, seen: dict[str, str], problems: list[Problem], intact: bool
) -> DmarcRecord:
    values: dict[str, Any] = {}
    fixed: list[tuple[str, str]] = []
    unknown: list[str] = []
    if "p" not in seen:
        problems.append(Problem(SYNTAX, "p",
            "no p tag: RFC 7489 §6.3 requires one (receivers then act as p=none when a rua "
            "URI is valid, and apply no DMARC at all otherwise, §6.6.3); add p=none",
            "a missing p means p=none"))  # fmt: skip
        fixed.append(("p", "none"))
    for name, value in seen.items():
        check = _VALIDATORS.get(name)
        if check is None:
            unknown.append(name)
            fixed.append((name, value))
            continue
        typed, repaired, problem = check(name, value)
        if problem is not None:
            problems.append(problem)
        if typed is not None:
            values[name] = typed
        if repaired is not None:
            fixed.append((name, repaired))
    return DmarcRecord(
        text=text, tags=tuple(seen.items()), problems=tuple(problems), fixed_tags=tuple(fixed),
        unknown=tuple(unknown), intact=intact, **values,
    )  # fmt: skip


# --- one validator per tag: (typed value or None, value for the fix or None to drop it,
# the problem or None) ------------------------------------------------------------------

Checked = tuple[object, str | None, Problem | None]
Validator = Callable[[str, str], Checked]


def _policy(name: str, value: str) -> Checked:
    lowered = value.lower()
    if lowered in POLICIES:
        return lowered, lowered, None
    close = difflib.get_close_matches(lowered, POLICIES, n=1, cutoff=0.6)
    wrong = f"{name}={value} is not none, quarantine or reject (RFC 7489 §6.3)"
    if close:
        guess = close[0]
        note = f"; did you mean {name}={guess}? (the fix assumes so; p=none is the safe choice)"
    elif name == "p":
        guess, note = "none", "; the fix uses p=none (monitoring) until you choose"
    else:
        guess, note = None, f"; the fix removes it, so {name} takes p's policy"
    return None, guess, Problem(SYNTAX, name, wrong + note)


def _alignment(name: str, value: str) -> Checked:
    lowered = value.lower()
    if lowered in ("r", "s"):
        return lowered, lowered, None
    what = "DKIM" if name == "adkim" else "SPF"
    guess = {"relaxed": "r", "strict": "s"}.get(lowered)
    fix = f"write {name}={guess}" if guess else f"remove it ({what} alignment is then relaxed)"
    message = f"{name}={value} is not r (relaxed) or s (strict) (RFC 7489 §6.3): {fix}"
    return None, guess, Problem(ALIGNMENT, name, message,
                                f"an invalid {name} falls back to the default r")  # fmt: skip


def _pct(name: str, value: str) -> Checked:
    removed = "pct is removed (t=y replaces pct=0)"
    if _PCT.fullmatch(value) and int(value) <= 100:
        return int(value), value, None
    if _DIGITS.fullmatch(value):
        message = f"pct={value} is outside 0-100 (RFC 7489 §6.3): write pct=100"
        return None, "100", Problem(SYNTAX, name, message, removed)
    message = f"pct={value} is not an integer 0-100 (RFC 7489 §6.3): remove it (100 applies)"
    return None, None, Problem(SYNTAX, name, message, removed)


def _options(allowed: tuple[str, ...], what: str) -> Validator:
    def check(name: str, value: str) -> Checked:
        parts = [part.strip().lower() for part in value.split(":")]
        good = [part for part in parts if part in allowed]
        if good and len(good) == len(parts):
            return ":".join(good), ":".join(good), None
        bad = ", ".join(repr(part) for part in parts if part not in allowed)
        keep = ":".join(good) or None
        action = f"write {name}={keep}" if keep else "remove it"
        message = f"{name}={value}: {bad} not {what} (RFC 7489 §6.3): {action}"
        return None, keep, Problem(SYNTAX, name, message, _removal(name))

    return check


def _removal(name: str) -> str:
    return f"{name} is removed" if name in REMOVED_BY_DMARCBIS else ""


def _interval(name: str, value: str) -> Checked:
    if _DIGITS.fullmatch(value) and int(value) < 2**32:
        return int(value), value, None
    message = f"ri={value} is not a number of seconds (RFC 7489 §6.3): remove it (86400 applies)"
    return None, None, Problem(SYNTAX, name, message, _removal(name))


def _flag(allowed: tuple[str, ...]) -> Validator:
    def check(name: str, value: str) -> Checked:
        lowered = value.lower()
        if lowered in allowed:
            return lowered, lowered, None
        choices = " or ".join(allowed)
        message = f"{name}={value} is not {choices} (RFC 9989 DMARCbis): remove it"
        return None, None, Problem(SYNTAX, name, message)

    return check


def _uris(name: str, value: str) -> Checked:
    check = RUA if name == "rua" else RUF
    if not value:
        return (), None, Problem(check, name, f"{name}= is empty: give a mailto: URI or remove it")
    good: list[ReportUri] = []
    kept: list[str] = []
    faults: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        uri, repaired, fault = _uri(item)
        if uri is not None:
            good.append(uri)
        if repaired:
            kept.append(repaired)
        if fault:
            faults.append(fault)
    if not faults:
        return tuple(good), ",".join(kept), None
    what = "aggregate" if name == "rua" else "failure"
    message = f"{name} (where {what} reports go): " + "; ".join(faults)
    return tuple(good), ",".join(kept) or None, Problem(check, name, message)


def _uri(item: str) -> tuple[ReportUri | None, str, str]:
    """(the URI when valid, the item as the fix keeps it, what is wrong)"""
    if not item:
        return None, "", "an empty URI: remove the extra ','"
    uri, bang, size = item.rpartition("!") if "!" in item else (item, "", "")
    if bang and not _SIZE.fullmatch(size):
        return None, "", f"{item!r} has an invalid size limit !{size} (e.g. !10m): remove it"
    scheme, colon, target = uri.partition(":")
    if not colon or scheme.lower() != "mailto":
        if "@" in uri and not colon and _address(uri):
            fixed = f"mailto:{uri}" + (f"!{size}" if bang else "")
            return None, fixed, f"{item!r} is not a URI: write {fixed} (RFC 7489 §6.4)"
        return None, "", f"{item!r} is not a mailto: URI, the only kind receivers send reports to"
    address = unquote(target.split("?", 1)[0])
    domain = _address(address)
    if domain is None:
        return None, "", f"{item!r} is not a mailto: URI with a valid address: remove or fix it"
    return ReportUri(item, address, domain, size if bang else ""), item, ""


def _address(address: str) -> str | None:
    """The domain of ``local@domain`` lower-cased, or None when it is not an address."""
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return None
    return domain.lower().rstrip(".")


_VALIDATORS: dict[str, Validator] = {
    "p": _policy, "sp": _policy, "np": _policy, "adkim": _alignment, "aspf": _alignment,
    "pct": _pct, "fo": _options(("0", "1", "d", "s"), "one of 0, 1, d, s"),
    "rf": _options(("afrf",), "afrf"), "ri": _interval, "rua": _uris, "ruf": _uris,
    "psd": _flag(("y", "n", "u")), "t": _flag(("y", "n")),
}  # fmt: skip
assert set(_VALIDATORS) == set(_KNOWN) - {"v"}


def dmarcbis_notes(record: DmarcRecord) -> list[str]:
    """What changes for this record under DMARCbis (RFC 9989), one sentence each."""
    notes = [f"{name}= is removed: DMARCbis receivers ignore it" + (
                 " (t=y replaces pct=0 for testing; pct=100 can simply go)" if name == "pct"
                 else "") for name, _ in record.tags if name in REMOVED_BY_DMARCBIS]  # fmt: skip
    notes += [f"{name}= is new in DMARCbis: RFC 7489 receivers ignore it"
              for name, _ in record.tags if name in ADDED_BY_DMARCBIS]  # fmt: skip
    notes += [p.dmarcbis for p in record.problems
              if p.dmarcbis and p.tag not in REMOVED_BY_DMARCBIS]  # fmt: skip
    return notes
