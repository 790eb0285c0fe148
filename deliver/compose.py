"""Composing a campaign's message for one recipient.

Every message carries what the big mailbox providers require of bulk mail:
``Message-ID``, ``Date``, ``List-Unsubscribe`` with an https URL carrying a
per-recipient token and a mailto, ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
(RFC 8058), a ``Feedback-ID`` (Gmail's feedback loop), and a VERP envelope sender
that encodes the message id so a later bounce can be traced to it.

Templates are Jinja2 in a sandbox, HTML autoescaped; the text part of an HTML
campaign comes from a text template derived once from the HTML source. The
message is built as bytes directly (headers as ``(name, raw value)`` pairs, parts
quoted-printable) so the DKIM signer can sign it without parsing it again.
"""

from __future__ import annotations

import binascii
import email.policy
import email.utils
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header as EmailHeader
from html import escape
from typing import Any

from email_validator import EmailNotValidError, validate_email
from jinja2 import TemplateError, TemplateSyntaxError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from deliver.dkim import Header
from deliver.errors import HeaderInjectionError, InputError
from deliver.htmltext import html_to_text_template
from deliver.store.campaigns import CampaignRecord
from deliver.store.queue import ClaimedMessage
from deliver.tokens import TokenSigner, b36

__all__ = [
    "ComposedMessage",
    "ContactView",
    "MessageComposer",
    "SenderIdentity",
    "check_header_value",
    "compile_templates",
    "parse_from",
]

_HTML_HINT = re.compile(r"<\s*(html|body|p|div|table|br|a|h[1-6]|span|img)\b", re.I)
_FEEDBACK_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    """What the composer needs to know about the sender, from the settings."""

    domain: str
    bounce_domain: str
    bounce_prefix: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    feedback_sender: str


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    message_id: int
    rcpt: str
    envelope_from: str
    headers: list[Header]
    body: bytes

    def to_bytes(self, signatures: Sequence[bytes] = ()) -> bytes:
        """The message as sent: DKIM-Signature lines first, then headers, blank line, body."""
        parts = list(signatures)
        parts.extend(name + b":" + value for name, value in self.headers)
        parts.append(b"\r\n")
        parts.append(self.body)
        return b"".join(parts)


class ContactView:
    """A contact as templates see it: ``contact.name``, ``contact.<custom column>``.

    Not a dict, so a column called ``items`` or ``keys`` is the column, not a method.
    Unknown names are undefined (rendered empty, or handled with ``|default``).
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values


def check_header_value(what: str, value: str) -> str:
    """Refuse CR and LF where a value becomes part of a header (RFC 5322 §2.2)."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(f"{what} contains a line break (refused: header injection)")
    if "\x00" in value:
        raise HeaderInjectionError(f"{what} contains a NUL character")
    return value


def parse_from(value: str) -> tuple[str | None, str]:
    """``"News <news@example.com>"`` or ``news@example.com`` → (name, address), validated."""
    check_header_value("--from", value)
    name, addr = email.utils.parseaddr(value)
    if not addr or "@" not in addr:
        raise InputError(f"--from {value!r} is not an address")
    try:
        checked = validate_email(addr, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InputError(f"--from {addr!r} is not a valid address: {exc}") from None
    if checked.ascii_email is None:  # a UTF-8 local part needs SMTPUTF8 (RFC 6531)
        raise InputError(f"--from {addr!r}: internationalized addresses (SMTPUTF8) are not sent")
    return (name or None), checked.ascii_email


def _environment(html: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=html, undefined=Undefined, keep_trailing_newline=True)
    return env


def compile_templates(source: str, file_name: str, subject: str) -> tuple[str | None, str]:
    """(HTML template, text template) from a template file's source, both checked.

    A file is HTML when its name ends in .html/.htm or its content has HTML tags.
    """
    check_header_value("--subject", subject)
    is_html = file_name.lower().endswith((".html", ".htm")) or bool(_HTML_HINT.search(source))
    html = source if is_html else None
    # the source as written first: Jinja's errors carry the line, the text part's would not
    _check_syntax("subject", subject, "--subject", html=False)
    if html is not None:
        _check_syntax("template", html, file_name, html=True)
    try:
        text = html_to_text_template(source) if is_html else source
    except InputError as exc:  # it knows the line, not the file
        raise InputError(exc.reason, line=exc.line, source=file_name) from None
    _check_syntax("text part", text, file_name, html=False)
    return html, text


def _check_syntax(what: str, src: str, where: str, *, html: bool) -> None:
    try:
        _environment(html).parse(src)
    except TemplateSyntaxError as exc:
        raise InputError(f"{what}: {exc.message}", line=exc.lineno, source=where) from None


class MessageComposer:
    """Renders and builds one campaign's messages; cheap to call once per recipient."""

    def __init__(
        self, campaign: CampaignRecord, sender: SenderIdentity, tokens: TokenSigner
    ) -> None:
        self.campaign = campaign
        self.sender = sender
        self.tokens = tokens
        self._subject = _environment(False).from_string(campaign.subject)
        # most subjects are fixed text: no need to render them per recipient
        self._fixed_subject = campaign.subject if not _JINJA.search(campaign.subject) else None
        self._text = _environment(False).from_string(campaign.text_template)
        self._html = (
            _environment(True).from_string(campaign.html_template)
            if campaign.html_template
            else None
        )
        self._from = _address(b"From", campaign.from_name, campaign.from_addr)
        feedback = ":".join(
            _FEEDBACK_UNSAFE.sub("-", part)
            for part in (
                f"c{campaign.id}",
                campaign.list_name,
                "newsletter",
                sender.feedback_sender,
            )
        )
        self._feedback = _header(b"Feedback-ID", feedback)
        self._unsub_post = (b"List-Unsubscribe-Post", b" List-Unsubscribe=One-Click\r\n")
        self._date_cache: tuple[int, Header] = (-1, (b"", b""))
        local, _, domain = sender.unsubscribe_mailto.partition("@")
        self._mailto = (local, domain)

    def render_context(self, msg: ClaimedMessage) -> dict[str, Any]:
        token = self.tokens.unsubscribe(self.campaign.id, msg.contact_id)
        base = self.sender.unsubscribe_url
        url = base.replace("{token}", token) if "{token}" in base else f"{base.rstrip('/')}/{token}"
        values = {
            **msg.fields,
            "email": msg.rcpt,
            "name": msg.name or "",
            "phone": msg.phone or "",
            "locale": msg.locale or "",
        }
        return {
            "contact": ContactView(values),
            "email": msg.rcpt,
            "name": msg.name or "",
            "unsubscribe_url": url,
            "unsubscribe_mailto": f"{self._mailto[0]}+{token}@{self._mailto[1]}",
            "campaign": ContactView({"id": self.campaign.id, "name": self.campaign.name}),
        }

    def compose(
        self,
        msg: ClaimedMessage,
        now: float,
        *,
        extra_headers: Sequence[tuple[str, str]] = (),
        footer: str | None = None,
    ) -> ComposedMessage:
        """Build the message; ``InputError`` if rendering fails for this recipient.

        ``extra_headers`` and ``footer`` (a line added at the end of the text and the HTML)
        mark a copy, as seed-placement tests do with their token."""
        ctx = self.render_context(msg)
        try:
            subject = self._fixed_subject or self._subject.render(ctx)
            text = self._text.render(ctx)
            html = self._html.render(ctx) if self._html is not None else None
        except TemplateError as exc:
            raise InputError(f"template failed for {msg.rcpt}: {exc}") from None
        except Exception as exc:  # the template's own arithmetic: {{ a / b }} with b = 0
            raise InputError(
                f"template failed for {msg.rcpt}: {type(exc).__name__}: {exc}"
            ) from None
        if footer is not None:
            text = f"{text.rstrip()}\n\n{footer}\n"
            if html is not None:
                tail = f'<p style="font-size:11px;color:#888">{escape(footer)}</p>'
                at = html.lower().rfind("</body>")
                html = html[:at] + tail + html[at:] if at >= 0 else html + tail
        check_header_value("rendered subject", subject)
        check_header_value("contact name", msg.name or "")  # it goes into To
        if not msg.rcpt.isascii():  # a UTF-8 local part needs SMTPUTF8 (RFC 6531)
            raise InputError(f"{msg.rcpt}: internationalized addresses (SMTPUTF8) are not sent")
        tag = self.tokens.message_id_tag(msg.id)
        headers = [
            self._from,
            _address(b"To", msg.name, msg.rcpt),
            _header(b"Subject", subject),
            self._date(now),
            _header(b"Message-ID", self._message_id(msg.id, tag)),
            (b"MIME-Version", b" 1.0\r\n"),
            _header(b"List-Unsubscribe", _list_unsubscribe(ctx)),
            self._unsub_post,
            self._feedback,
        ]
        for name, value in extra_headers:
            headers.append(_header(check_header_value("header name", name).encode(), value))
        if html is None:
            encoding, body = _encode_part(text, None)
            headers.append((b"Content-Type", b" text/plain; charset=utf-8\r\n"))
            headers.append((b"Content-Transfer-Encoding", b" " + encoding + b"\r\n"))
        else:
            boundary = f"=_sk_{b36(msg.id)}_{tag}"
            headers.append(
                _header(b"Content-Type", f'multipart/alternative; boundary="{boundary}"')
            )
            body = _alternative(boundary.encode("ascii"), text, html)
        verp = self.tokens.verp_local(self.sender.bounce_prefix, msg.id)
        envelope = f"{verp}@{self.sender.bounce_domain}"
        return ComposedMessage(msg.id, msg.rcpt, envelope, headers, body)

    def _message_id(self, message_id: int, tag: str) -> str:
        return f"<{b36(message_id)}.{b36(self.campaign.id)}.{tag}@{self.sender.domain}>"

    def _date(self, now: float) -> Header:
        second = int(now)
        if self._date_cache[0] != second:
            value = email.utils.format_datetime(datetime.fromtimestamp(second, UTC))
            self._date_cache = (second, (b"Date", f" {value}\r\n".encode("ascii")))
        return self._date_cache[1]


def _list_unsubscribe(ctx: Mapping[str, Any]) -> str:
    """RFC 2369 with RFC 8058 one-click: the https URL first, then the mailto."""
    mailto = f"mailto:{ctx['unsubscribe_mailto']}?subject=unsubscribe"
    return f"<{ctx['unsubscribe_url']}>, <{mailto}>"


def _address(name: bytes, display: str | None, addr: str) -> Header:
    """From/To. A long non-ASCII name needs several encoded-words of at most 75 characters
    (RFC 2047 §2): formataddr writes one, however long; the email policy splits it."""
    value = email.utils.formataddr((display or "", addr), charset="utf-8")
    if (display or "").isascii():
        return _header(name, value)
    folded = email.policy.SMTP.fold(name.decode("ascii"), value)
    return name, folded[len(name) + 1 :].encode("ascii")


def _header(name: bytes, value: str) -> Header:
    """A header as (name, raw value): RFC 2047 for non-ASCII, folded near 78 columns."""
    if value.isascii():
        if len(name) + 2 + len(value) <= 78:
            return name, b" " + value.encode("ascii") + b"\r\n"
        return name, _fold_ascii(len(name) + 1, value)
    encoded = EmailHeader(value, "utf-8", header_name=name.decode("ascii")).encode(linesep="\r\n")
    return name, b" " + encoded.encode("ascii") + b"\r\n"


def _fold_ascii(used: int, value: str) -> bytes:
    """Fold at spaces so lines stay under 78 columns where the words allow (RFC 5322 §2.2.3)."""
    lines: list[str] = []
    line = ""
    width = 78 - used - 1
    for word in value.split(" "):
        candidate = f"{line} {word}" if line else word
        if len(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
            width = 77
    lines.append(line)
    return (" " + "\r\n ".join(lines) + "\r\n").encode("ascii")


_JINJA = re.compile(r"\{[{%#]")
_MAX_LINE = 998  # RFC 5322 §2.1.1: characters a line, CRLF excluded
_TRAILING_BLANKS = re.compile(r"[ \t]+\n")


def _encode_part(text: str, boundary: bytes | None) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding, encoded body) of a text part, CRLF line ends.

    ASCII text with no overlong line goes as ``7bit`` (RFC 2045 §2.7), with trailing
    blanks removed: relays strip them, which would break a simple-canonicalized body
    hash. Anything else is quoted-printable (lines of at most 76, RFC 2045 §6.7).
    """
    data = text.replace("\r\n", "\n").replace("\r", "\n")
    if not data.endswith("\n"):
        data += "\n"
    # (split/len and substring tests run in C; the equivalent regexes cost ~100 µs a part)
    if data.isascii() and max(map(len, data.split("\n"))) <= _MAX_LINE:
        if " \n" in data or "\t\n" in data:
            data = _TRAILING_BLANKS.sub("\n", data)
        raw = data.encode("ascii").replace(b"\n", b"\r\n")
        if boundary is None or boundary not in raw:
            return b"7bit", raw
    return b"quoted-printable", binascii.b2a_qp(data.encode("utf-8"), istext=True).replace(
        b"\n", b"\r\n"
    )


def _alternative(boundary: bytes, text: str, html: str) -> bytes:
    """multipart/alternative, text first (RFC 2046 §5.1.4: the preferred part comes last).

    The boundary carries a secret MAC, and a 7bit part that happens to contain it is
    sent quoted-printable instead, where "=_" cannot occur."""
    parts = [b"--", boundary]
    for subtype, content in ((b"plain", text), (b"html", html)):
        encoding, body = _encode_part(content, boundary)
        parts += [
            b"\r\nContent-Type: text/",
            subtype,
            b"; charset=utf-8\r\nContent-Transfer-Encoding: ",
            encoding,
            b"\r\n\r\n",
            body,
            b"--",
            boundary,
        ]
    parts.append(b"--\r\n")
    return b"".join(parts)
