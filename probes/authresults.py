"""Authentication results of a received message: its DKIM signatures verified, and the
Authentication-Results fields (RFC 8601) the receivers wrote, parsed.

Signatures are verified by dkimpy, which looks keys up through a ``dnsfunc(name,
timeout=...)`` argument: :class:`KeyLookup` is that function, backed by
:meth:`deliver.dns.Resolver.query_sync` (dkimpy is synchronous, so verification runs in a
worker thread); nothing is patched globally. A lookup that fails (timeout, SERVFAIL,
REFUSED) raises :class:`KeyLookupFailed`, which dkimpy does not catch (unlike its own
DnsTimeoutError, which it turns into a plain "does not verify"), so a DNS failure comes
out as ``temperror`` rather than as a failed signature.

Authentication-Results fields are shown, never trusted: anyone can add one before the
message reaches the receiver, so :mod:`probes.message` computes its own verdict.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import authres
import dkim as dkimpy
import dkim.util

from deliver.dns import DnsAnswer, DnsStatus, Resolver
from probes.dkim import KeyInspection, inspect_record

__all__ = [
    "AuthResults",
    "AuthResultsEntry",
    "DkimSignatureResult",
    "KeyLookup",
    "KeyLookupFailed",
    "ReasonLog",
    "parse_auth_results",
    "verify_dkim",
]


# --- dkimpy's access to DNS and its reasons --------------------------------------------


class KeyLookupFailed(Exception):
    """A key record could not be looked up (not: does not exist). Carries the answer."""

    def __init__(self, answer: DnsAnswer) -> None:
        detail = f" ({answer.detail})" if answer.detail else ""
        super().__init__(f"could not look up {answer.name} TXT: {answer.status.value}{detail}")
        self.answer = answer


class KeyLookup:
    """dkimpy's ``dnsfunc``: TXT records through our resolver, blocking (call it from a
    worker thread). Remembers every answer, so a caller can say why a key was missing."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self.answers: dict[str, DnsAnswer] = {}

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        try:
            text = name.decode("ascii").rstrip(".")
        except UnicodeDecodeError:
            return None  # not a name DNS can hold as given (dkimpy's own lookup does the same)
        if len(text) > 253 or not all(0 < len(label) < 64 for label in text.split(".")):
            return None  # RFC 1035 §2.3.4: no such name can exist (an empty d= or s=)
        answer = self._resolver.query_sync(text, "TXT")
        self.answers[text.lower()] = answer
        if not answer.status.definitive:
            raise KeyLookupFailed(answer)
        texts = answer.texts()
        # RFC 6376 §3.6.2.2: several records give undefined results; dkimpy takes the first
        return texts[0].encode("utf-8", "replace") if texts else None

    def missing(self, name: str) -> DnsStatus | None:
        """NXDOMAIN or NODATA when ``name`` was looked up and has no TXT record."""
        answer = self.answers.get(name.lower().rstrip("."))
        if answer is not None and answer.status in (DnsStatus.NXDOMAIN, DnsStatus.NODATA):
            return answer.status
        return None

    def key(self, name: str) -> KeyInspection | None:
        """The key record found at ``name``, inspected as the DKIM probe does."""
        answer = self.answers.get(name.lower().rstrip("."))
        texts = answer.texts() if answer is not None else []
        return inspect_record(texts[0]) if texts else None


class ReasonLog(logging.Handler):
    """Collects what dkimpy logs at ERROR level: its only account of why a key was refused.

    :meth:`logger` gives a private logger (not registered with :mod:`logging`'s manager,
    so nothing global is touched) that writes here.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def logger(self) -> logging.Logger:
        log = logging.Logger("sokures.dkimpy", logging.ERROR)
        log.propagate = False
        log.addHandler(self)
        return log


# --- DKIM signatures -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DkimSignatureResult:
    """One DKIM-Signature field: result is pass, fail, permerror or temperror (RFC 8601)."""

    domain: str
    selector: str
    algorithm: str
    result: str
    reason: str = ""
    identity: str = ""
    signed_headers: tuple[str, ...] = ()
    key_bits: int | None = None
    #: the key record says t=y: receivers treat a failure as if the message were unsigned
    testing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"d": self.domain, "s": self.selector, "a": self.algorithm,
                "result": self.result, "reason": self.reason, "i": self.identity,
                "h": list(self.signed_headers), "key_bits": self.key_bits,
                "testing": self.testing}  # fmt: skip


async def verify_dkim(resolver: Resolver, raw: bytes) -> list[DkimSignatureResult]:
    """Every DKIM-Signature of ``raw``, top first, verified by dkimpy in a worker thread."""
    return await asyncio.to_thread(_verify_dkim, resolver, raw)


def _verify_dkim(resolver: Resolver, raw: bytes) -> list[DkimSignatureResult]:
    log = ReasonLog()
    lookup = KeyLookup(resolver)
    try:
        verifier = dkimpy.DKIM(raw, logger=log.logger(), minkey=1024)
    except Exception as exc:  # dkimpy's parser refuses the message
        return [DkimSignatureResult("", "", "", "permerror", f"unparsable message: {exc}")]
    values = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
    results = []
    for index, value in enumerate(values):
        tags = _signature_tags(value)
        log.messages.clear()
        name = f"{tags.get('s', '')}._domainkey.{tags.get('d', '')}"
        result, reason = _verify_one(verifier, index, lookup, log, name)
        key = lookup.key(name)
        signed = tuple(h.lower() for h in tags.get("h", "").split(":") if h)
        results.append(DkimSignatureResult(
            tags.get("d", ""), tags.get("s", ""), tags.get("a", ""), result, reason,
            tags.get("i", ""), signed, key.bits if key else None, bool(key and key.testing),
        ))  # fmt: skip
    return results


def _verify_one(
    verifier: dkimpy.DKIM, index: int, lookup: KeyLookup, log: ReasonLog, name: str
) -> tuple[str, str]:
    try:
        if verifier.verify(index, dnsfunc=lookup):
            return "pass", ""
    except KeyLookupFailed as exc:
        return "temperror", str(exc)
    except dkimpy.ValidationError as exc:
        text = str(exc)
        # a signature that does not match the message is "fail"; a malformed one is not
        failed = text.startswith(("body hash mismatch", "x= value is past"))
        return ("fail" if failed else "permerror"), text
    except dkimpy.DKIMException as exc:
        return "permerror", str(exc) or type(exc).__name__
    except Exception as exc:  # dkimpy on input it does not expect: never a traceback
        return "permerror", f"the signature cannot be processed ({exc!r})"
    status = lookup.missing(name)
    if status is not None:
        return "permerror", f"no key record at {name} ({status.value})"
    if log.messages:  # dkimpy refused the key record: say why as the DKIM probe does
        key = lookup.key(name)
        why = key and ("the key is revoked (empty p=)" if key.revoked else
                       key.syntax or key.type_problem)  # fmt: skip
        return "permerror", f"the key record at {name} is unusable: {why or log.messages[-1]}"
    return "fail", "the signature does not verify (signed header fields changed, or another key)"


def _signature_tags(value: bytes) -> dict[str, str]:
    try:
        tags = dkim.util.parse_tag_value(value)
    except Exception:  # dkimpy reports the malformed signature itself when verifying
        return {}
    return {k.decode("ascii", "replace"): re.sub(r"\s+", "", v.decode("utf-8", "replace"))
            for k, v in tags.items()}  # fmt: skip


# --- Authentication-Results fields -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthResultsEntry:
    """One ``method=result`` of a field: ``dkim=pass header.d=example.com``."""

    method: str
    result: str
    reason: str | None = None
    #: ``ptype.property`` -> value, e.g. {"smtp.mailfrom": "a@example.com"}
    properties: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "result": self.result, "reason": self.reason,
                "properties": dict(self.properties)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuthResults:
    """One Authentication-Results field; ``error`` when it could not be parsed."""

    authserv_id: str
    results: tuple[AuthResultsEntry, ...] = ()
    raw: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"authserv_id": self.authserv_id,
                               "results": [r.to_dict() for r in self.results]}  # fmt: skip
        if self.error is not None:
            out["error"], out["raw"] = self.error, self.raw
        return out

    def result_of(self, method: str) -> AuthResultsEntry | None:
        return next((r for r in self.results if r.method == method), None)


def parse_auth_results(value: str) -> AuthResults:
    """One field value (unfolded, without the field name)."""
    try:
        header = authres.AuthenticationResultsHeader.parse_value(value)
    except (authres.AuthResError, ValueError, IndexError) as exc:
        return AuthResults("", raw=value, error=str(exc) or type(exc).__name__)
    entries = []
    for result in header.results:
        properties = {f"{p.type}.{p.name}": str(p.value) for p in result.properties}
        reason = str(result.reason) if result.reason else None
        entries.append(AuthResultsEntry(str(result.method), str(result.result), reason,
                                        properties))  # fmt: skip
    return AuthResults(str(header.authserv_id), tuple(entries), value)
