"""Importing contacts from CSV: streamed, validated, de-duplicated, merged in batches.

Columns: ``email`` (required), ``name``, ``phone``, ``locale``; every other column is
a custom field available to templates as ``contact.<column>``. Addresses are checked
for syntax only (no DNS, with email-validator); phone numbers must be valid and are
stored in E.164 (phonenumbers; numbers without a ``+`` need ``--region``).
A bad row is reported with its line number and reason and the rest is imported.
Memory stays bounded whatever the file size: one batch is held at a time.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from deliver.errors import InputError
from deliver.store.contacts import ContactRow, ContactStore, MergeCounts

__all__ = ["BadRow", "ContactImporter", "ImportReport", "validate_row"]

#: column names people use, mapped to ours
_ALIASES = {
    "email": "email",
    "e-mail": "email",
    "email_address": "email",
    "email address": "email",
    "mail": "email",
    "name": "name",
    "full_name": "name",
    "full name": "name",
    "phone": "phone",
    "phone_number": "phone",
    "phone number": "phone",
    "mobile": "phone",
    "locale": "locale",
    "language": "locale",
    "lang": "locale",
}
_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_MAX_BAD_KEPT = 10_000
csv.field_size_limit(1 << 20)


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


@dataclass
class ImportReport:
    source: str
    list_name: str
    rows: int = 0
    counts: MergeCounts = field(default_factory=MergeCounts)
    bad_count: int = 0
    #: the first bad rows (at most 10,000 are kept; ``bad_count`` counts them all)
    bad: list[BadRow] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "list": self.list_name,
            "rows": self.rows,
            "inserted": self.counts.inserted,
            "updated": self.counts.updated,
            "duplicates": self.counts.duplicates,
            "bad": self.bad_count,
            "bad_rows": [{"line": b.line, "reason": b.reason} for b in self.bad],
            "seconds": round(self.seconds, 3),
        }


def _header(raw: list[str], source: str) -> list[str]:
    names = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in raw]
    if "email" not in names:
        raise InputError(
            "no email column in the header (expected: email, name, phone, locale, ...)",
            line=1,
            source=source,
        )
    seen: set[str] = set()
    for i, n in enumerate(names):
        if not n:
            raise InputError(f"column {i + 1} has no name", line=1, source=source)
        if n in seen:
            raise InputError(f"column {n!r} appears twice", line=1, source=source)
        seen.add(n)
    return names


def validate_row(
    values: dict[str, str], line: int, region: str | None, test_domains: bool = False
) -> ContactRow:
    """A clean :class:`ContactRow`, or ``ValueError`` with the reason."""
    for key, value in values.items():
        # PostgreSQL cannot store NUL in text, and no header or template wants one
        if "\x00" in value:
            raise ValueError(f"NUL character in {key}")
    for key in ("email", "name", "locale", "phone"):
        if "\r" in values.get(key, "") or "\n" in values.get(key, ""):
            raise ValueError(f"line break inside {key} (refused: it would end up in a header)")
    raw_email = values.get("email", "").strip()
    if not raw_email:
        raise ValueError("empty email")
    try:
        # allow_smtputf8=False: an internationalized local part needs SMTPUTF8 (RFC 6531)
        # end to end, which sokures does not send yet; say so now rather than bounce later
        checked = validate_email(
            raw_email,
            check_deliverability=False,
            test_environment=test_domains,
            allow_smtputf8=False,
        )
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address {raw_email!r}: {exc}") from None
    email = checked.ascii_email or checked.normalized
    name = values.get("name", "").strip() or None
    if name and len(name) > 256:
        raise ValueError("name longer than 256 characters")
    phone = _phone(values.get("phone", "").strip(), region)
    locale = values.get("locale", "").strip() or None
    if locale:
        if not _LOCALE_RE.match(locale):
            raise ValueError(f"invalid locale {locale!r} (expected e.g. en, fr-CA)")
        locale = locale.replace("_", "-")
    custom = {
        k: v for k, v in values.items() if k not in ("email", "name", "phone", "locale") and v != ""
    }
    return ContactRow(
        line=line,
        email=email,
        email_key=email.lower(),
        domain=checked.ascii_domain.lower(),
        name=name,
        phone=phone,
        locale=locale,
        fields=custom,
    )


def _phone(raw: str, region: str | None) -> str | None:
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if region or raw.startswith("+") else " (no country code: give --region)"
        raise ValueError(f"invalid phone number {raw!r}: {exc._msg}{hint}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"invalid phone number {raw!r}")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


class ContactImporter:
    def __init__(
        self,
        store: ContactStore,
        *,
        region: str | None = None,
        test_domains: bool = False,
        batch_size: int = 2000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.region = region
        self.test_domains = test_domains
        self.batch_size = batch_size
        self.clock = clock

    def run(
        self,
        path: Path,
        list_name: str = "default",
        *,
        progress: Callable[[int], None] | None = None,
        on_bad: Callable[[BadRow], None] | None = None,
    ) -> ImportReport:
        """Import ``path`` into ``list_name``. ``progress`` gets bytes read so far."""
        started = time.monotonic()
        report = ImportReport(source=str(path), list_name=list_name)
        try:
            raw = path.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None
        with raw:
            dialect = _sniff(raw)
            # surrogateescape: a byte that is not UTF-8 spoils its own row only (a strict
            # decoder fails a whole read buffer, rows and line numbers with it)
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
            # the header is checked before anything is written: a bad file changes nothing
            reader, names = _open_reader(text, dialect, str(path))
            now = self.clock()
            list_id = self.store.ensure_list(list_name, now)
            import_id = self.store.start_import(str(path), list_id, now)
            batch: list[ContactRow] = []
            for item in self._rows(reader, names, report):
                if isinstance(item, BadRow):
                    self._bad(report, item, on_bad)
                    continue
                batch.append(item)
                if len(batch) >= self.batch_size:
                    report.counts.add(self.store.merge(batch, import_id, list_id, self.clock()))
                    batch = []
                    if progress:
                        progress(raw.tell())
            if batch:
                report.counts.add(self.store.merge(batch, import_id, list_id, self.clock()))
            if progress:
                progress(raw.tell())
            self.store.finish_import(
                import_id,
                self.clock(),
                rows=report.rows,
                counts=report.counts,
                bad=report.bad_count,
            )
        report.seconds = time.monotonic() - started
        return report

    def _rows(
        self, reader: Any, names: list[str], report: ImportReport
    ) -> Iterator[ContactRow | BadRow]:
        line = reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield BadRow(line, f"unreadable row: {exc}")
                line = reader.line_num + 1
                continue
            start, line = line, reader.line_num + 1
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            report.rows += 1
            if _not_utf8(values):
                yield BadRow(start, "not UTF-8 text")
                continue
            if len(values) != len(names):
                yield BadRow(start, f"{len(values)} fields, the header has {len(names)}")
                continue
            try:
                yield validate_row(
                    dict(zip(names, values, strict=True)), start, self.region, self.test_domains
                )
            except ValueError as exc:
                yield BadRow(start, str(exc))

    @staticmethod
    def _bad(report: ImportReport, bad: BadRow, on_bad: Callable[[BadRow], None] | None) -> None:
        report.bad_count += 1
        if len(report.bad) < _MAX_BAD_KEPT:
            report.bad.append(bad)
        if on_bad:
            on_bad(bad)


def _open_reader(
    text: io.TextIOWrapper, dialect: type[csv.Dialect], source: str
) -> tuple[Any, list[str]]:
    """A CSV reader past the header, and the header's column names (checked)."""
    reader = csv.reader(text, dialect=dialect)
    try:
        first = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable header: {exc}", line=1, source=source) from None
    if first is None:
        raise InputError("empty file", source=source)
    if _not_utf8(first):
        raise InputError("header is not UTF-8 text", line=1, source=source)
    return reader, _header(first, source)


def _not_utf8(values: list[str]) -> bool:
    """True when a value holds a byte the decoder escaped (U+DC80..U+DCFF): valid UTF-8
    never decodes to a lone surrogate."""
    return any(_ESCAPED_BYTE.search(v) for v in values)


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _sniff(raw: io.BufferedReader) -> type[csv.Dialect]:
    """Comma, semicolon or tab, from the header line; quoting as in RFC 4180."""
    first_line = raw.peek(4096)[:4096].split(b"\n", 1)[0].decode("utf-8", "replace")
    delimiter = max(",;\t", key=first_line.count) if first_line else ","

    class Dialect(csv.excel):
        pass

    Dialect.delimiter = delimiter
    return Dialect
