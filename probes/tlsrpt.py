"""SMTP TLS Reporting (RFC 8460): the ``_smtp._tls.<domain>`` TXT record.

With TLS-RPT, senders report the TLS failures they meet when delivering to the domain
(MTA-STS and DANE policy failures, expired certificates): without it an MTA-STS policy that
blocks mail goes unnoticed. ``tlsrpt.record`` checks the record's presence and grammar
(§3): ``v=TLSRPTv1`` first, one ``rua=`` with ``mailto:`` or ``https:`` URIs.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from probes.checks import CheckResult, ProbeContext, dns_error, fail, passed, warn

__all__ = ["audit", "parse_record"]

_SEP = re.compile(r"[ \t]*;[ \t]*")
_URI_SEP = re.compile(r"[ \t]*,[ \t]*")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_ADDRESS = re.compile(r"[^\s@]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+")
_HOST = re.compile(r"(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+")


def parse_record(text: str) -> tuple[tuple[str, ...], str | None]:
    """``(rua URIs, None)`` for a valid record, ``((), reason)`` otherwise."""
    fields = _SEP.split(text.strip())
    if fields and fields[-1] == "":
        fields.pop()  # §3: a trailing field-delim is allowed
    if not fields or fields[0] != "v=TLSRPTv1":
        return (), 'the record must begin with "v=TLSRPTv1"'
    seen: dict[str, str] = {}
    for item in fields[1:]:
        name, eq, value = item.partition("=")
        if name == "rua" and eq:
            pass  # URIs are checked below; they may hold characters extensions may not
        elif not eq or not _EXT_NAME.fullmatch(name) or not _EXT_VALUE.fullmatch(value):
            return (), f"field {item!r} is not name=value"
        if name in seen:
            return (), f"field {name!r} appears more than once"
        seen[name] = value
    if "rua" not in seen:
        return (), "the rua= field is missing: it says where reports go"
    uris = tuple(_URI_SEP.split(seen["rua"].strip()))
    for uri in uris:
        reason = _uri_problem(uri)
        if reason:
            return (), reason
    return uris, None


def _uri_problem(uri: str) -> str | None:
    # §3: rua takes mailto: (RFC 6068) and https: URIs; commas and semicolons inside a URI
    # must be percent-encoded, so an empty item means a stray separator
    if not uri:
        return "rua holds an empty URI (a stray comma?)"
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme == "mailto":
        address = unquote(rest.split("?", 1)[0])
        if not _ADDRESS.fullmatch(address):
            return f"{uri!r} is not a mailto: URI with an e-mail address"
        return None
    if scheme == "https":
        parts = urlsplit(uri)
        if not parts.hostname or not _HOST.fullmatch(parts.hostname):
            return f"{uri!r} is not an https: URL with a host name"
        return None
    return f"{uri!r}: rua URIs must be mailto: or https: (RFC 8460 §3)"


async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]:
    """``tlsrpt.record``."""
    name = f"_smtp._tls.{domain}"
    fix = f'{name}. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"'
    answer = await ctx.resolver.query(name, "TXT")
    if not answer.status.definitive:
        return [dns_error("tlsrpt.record", answer, f"the TLS-RPT record {name}")]
    # §3: records not beginning with v=TLSRPTv1 are discarded; the prefix is matched loosely
    # here so that a miscased version is reported rather than ignored
    texts = [t for t in answer.texts() if t.lower().startswith("v=tlsrpt")]
    if not texts:
        return [
            warn(
                "tlsrpt.record",
                f"no TLS-RPT record at {name}: publish one so that senders report TLS delivery "
                "failures to you (recommended with MTA-STS, RFC 8460)",
                fix=fix,
                name=name,
                dns=answer.status.value,
            )
        ]
    if len(texts) > 1:
        return [
            fail(
                "tlsrpt.record",
                f"{len(texts)} TLS-RPT records at {name}: with more than one, senders send no "
                "reports (RFC 8460 §3); keep exactly one",
                fix=fix,
                name=name,
                records=texts,
            )
        ]
    uris, reason = parse_record(texts[0])
    if reason is not None:
        return [
            fail(
                "tlsrpt.record",
                f"the TLS-RPT record at {name} is malformed: {reason}",
                fix=fix,
                name=name,
                record=texts[0],
            )
        ]
    return [
        passed(
            "tlsrpt.record",
            f"TLS-RPT reports go to {', '.join(uris)}",
            name=name,
            record=texts[0],
            rua=list(uris),
        )
    ]
