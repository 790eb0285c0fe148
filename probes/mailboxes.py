"""Find a seed copy by its token in a mailbox: over IMAP (real providers, the lab's
Dovecot) or directly in a Maildir++ tree (the lab without an IMAP server).

A seed copy carries its token twice: in the header ``X-Sokures-Seed: <token>`` and in the
body text. Both readers search INBOX first, then the spam folder(s), and report the first
copy found (a provider files one copy) as a :class:`Found`. Where a copy sits is decided by
one function, :func:`placement_of`, from the folder's name, its special-use attributes
(RFC 6154) and the message's keywords.

Errors::

    MailboxError (Exception)            the mailbox cannot be read: login refused, bad
    │                                   folder, protocol error; never includes the secret
    └── MailboxUnreachable (ConnectionError)   connection refused, DNS, timeout at connect

This module holds what both readers share; :mod:`probes.imap_reader` (the IMAP protocol
parsing as pure functions, and :class:`ImapReader`) and :mod:`probes.maildir_reader`
(:class:`MaildirReader`) are imported from here on first use, so either can be imported
first.
"""

from __future__ import annotations

import base64
import email.message
import email.parser
import email.policy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from probes.imap_reader import ImapReader
    from probes.maildir_reader import MaildirReader

__all__ = [
    "CATEGORIES",
    "CATEGORY_KEYWORDS",
    "PROVIDER_SPAM_FOLDERS",
    "SEED_HEADER",
    "SPAM_FOLDER_NAMES",
    "Found",
    "ImapReader",
    "MailboxError",
    "MailboxReader",
    "MailboxUnreachable",
    "MaildirReader",
    "auth_results_of",
    "body_has_token",
    "check_token",
    "decode_mutf7",
    "encode_mutf7",
    "header_has_token",
    "header_section",
    "placement_of",
    "quote",
]

SEED_HEADER = "X-Sokures-Seed"
#: Gmail's inbox tabs, in the order a copy is checked against them
CATEGORIES = ("promotions", "social", "updates", "forums")
#: the IMAP keyword naming each tab (the lab's convention, after Gmail's label names)
CATEGORY_KEYWORDS = {c: f"CATEGORY_{c.upper()}" for c in CATEGORIES}
#: spam folder names tried when the server declares no \Junk folder, most specific first
SPAM_FOLDER_NAMES = (
    "[Gmail]/Spam",
    "[Google Mail]/Spam",
    "Spam",
    "Junk",
    "Junk E-mail",
    "Junk Email",
    "Bulk",
    "Bulk Mail",
)
PROVIDER_SPAM_FOLDERS = {"gmail": "[Gmail]/Spam", "yahoo": "Bulk", "outlook": "Junk"}

_TOKEN = re.compile(r"[A-Za-z0-9]{1,128}")
_SPAM_NAMES = {n.casefold() for n in SPAM_FOLDER_NAMES}


@dataclass(frozen=True, slots=True)
class Found:
    """Where a seed copy was found."""

    placement: str  # "inbox" | "promotions" | "spam"
    folder: str  # as the server names it (decoded from modified UTF-7)
    category: str | None  # "promotions" | "social" | "updates" | "forums" in a tab
    arrived_at: float | None  # epoch seconds: INTERNALDATE, or the Maildir file's mtime
    auth_results: tuple[str, ...]  # Authentication-Results values, topmost first
    headers: bytes  # the copy's header section


class MailboxError(Exception):
    """The mailbox cannot be read; a one-line reason, never the secret."""


class MailboxUnreachable(MailboxError, ConnectionError):
    """The server cannot be reached: connection refused, DNS failure, connect timeout."""


class MailboxReader:
    """What both readers do: :meth:`connect` (log in, or check the Maildir is there),
    :meth:`find` a token, :meth:`close`; a context manager through close."""

    def connect(self) -> None:
        raise NotImplementedError

    def find(self, token: str) -> Found | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- placement -------------------------------------------------------------------------


def placement_of(
    folder: str, attributes: Iterable[str] = (), keywords: Iterable[str] = ()
) -> tuple[str, str | None]:
    """(placement, category) of a copy in ``folder`` carrying ``keywords``.

    A folder is spam when it has the ``\\Junk`` special-use attribute (RFC 6154 §2) or a
    known spam name; elsewhere a ``CATEGORY_*`` keyword puts the copy in a tab, and the
    Promotions tab is its own placement.
    """
    if "\\junk" in {a.casefold() for a in attributes} or folder.casefold() in _SPAM_NAMES:
        return "spam", None
    held = {k.upper() for k in keywords}
    category = next((c for c in CATEGORIES if CATEGORY_KEYWORDS[c] in held), None)
    return ("promotions" if category == "promotions" else "inbox"), category


def check_token(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise MailboxError("a seed token is 1 to 128 ASCII letters and digits")
    return token


# -- messages --------------------------------------------------------------------------


def header_section(raw: bytes) -> bytes:
    """The header section of a message, up to and including the empty line."""
    match = re.search(rb"\r?\n\r?\n", raw)
    return raw if match is None else raw[: match.end()]


def _headers(header: bytes) -> email.message.Message:
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header)


def auth_results_of(header: bytes) -> tuple[str, ...]:
    """The Authentication-Results values (RFC 8601), topmost first, unfolded."""
    values = _headers(header).get_all("Authentication-Results") or []
    return tuple(" ".join(str(v).split()) for v in values)


def header_has_token(header: bytes, token: str) -> bool:
    values = _headers(header).get_all(SEED_HEADER) or []
    return any(str(v).strip() == token for v in values)


def body_has_token(raw: bytes, token: str) -> bool:
    """The token in the body text, raw or after transfer decoding (like IMAP BODY)."""
    body = raw[len(header_section(raw)) :]
    if token.encode().lower() in body.lower():
        return True
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and token.encode().lower() in payload.lower():
            return True
    return False


# -- modified UTF-7 (RFC 3501 §5.1.3) and quoting ----------------------------------------


def encode_mutf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_mutf7(name: str) -> str:
    """A mailbox name from modified UTF-7; malformed runs are kept as they are."""

    def decode(match: re.Match[str]) -> str:
        run = match.group(1)
        if not run:
            return "&"
        data = run.replace(",", "/")
        try:
            return base64.b64decode(data + "=" * (-len(data) % 4)).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return match.group(0)

    return re.sub(r"&([A-Za-z0-9+,]*)-", decode, name)


def quote(text: str) -> str:
    """An IMAP quoted string (RFC 3501 §4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def __getattr__(name: str) -> Any:
    # the readers import this module: load them on first use, not at import (no cycle)
    if name == "ImapReader":
        from probes.imap_reader import ImapReader

        return ImapReader
    if name == "MaildirReader":
        from probes.maildir_reader import MaildirReader

        return MaildirReader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
