"""Checking what smtp-sink dumped: signatures present, a sample verified, Message-IDs.

A dump file holds smtp-sink's envelope lines (``X-Client-*``, ``X-Helo-Args``,
``X-Mail-Args``, ``X-Rcpt-Args``), its own folded ``Received: ... (smtp-sink)`` header,
the message with LF line ends, and one empty line it appends.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dkim as dkimpy

__all__ = ["DumpCheck", "check_dump", "message_ids", "sink_payload"]

_ENVELOPE = (b"X-Client-", b"X-Helo-Args", b"X-Mail-Args", b"X-Rcpt-Args")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.I | re.M)
_SELECTOR = re.compile(rb"[;\s]s=([^;\s]+)")


def sink_payload(raw: bytes) -> bytes:
    """The message exactly as the client sent it, with CRLF line ends."""
    lines = raw.split(b"\n")
    i = 0
    while i < len(lines) and lines[i].startswith(_ENVELOPE):
        i += 1
    if (
        i < len(lines)
        and lines[i].startswith(b"Received: ")
        and any(b"(smtp-sink)" in line for line in lines[i : i + 3])
    ):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    body = lines[i:]
    if body and body[-1] == b"":
        body = body[:-1]
    return b"\r\n".join(body) + b"\r\n"


def _head(path: Path, size: int = 8192) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


@dataclass(frozen=True)
class DumpCheck:
    messages: int
    signed: int
    sampled: int
    verified: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.messages > 0 and self.signed == self.messages and self.verified == self.sampled

    def describe(self) -> str:
        text = (
            f"{self.messages} dumped, {self.signed} with DKIM-Signature, "
            f"dkimpy verified {self.verified}/{self.sampled} sampled"
        )
        return text + (f" ({self.error})" if self.error else "")


def check_dump(files: Sequence[Path], domain: str, record: str, sample: int = 20) -> DumpCheck:
    """Every file signed; ``sample`` of them verified with dkimpy against ``record``
    (the TXT value publishing the public key), served through a dnsfunc: no DNS."""
    signed = sum(1 for f in files if b"\nDKIM-Signature:" in b"\n" + _head(f))
    chosen = random.Random(1).sample(list(files), min(sample, len(files)))
    verified = 0
    error = ""
    for path in chosen:
        msg = sink_payload(path.read_bytes())
        m = _SELECTOR.search(msg.split(b"\r\n\r\n", 1)[0])
        selector = m.group(1) if m else b"?"
        want = selector + b"._domainkey." + domain.encode()

        def dnsfunc(name: bytes, timeout: int = 5, want: bytes = want) -> bytes | None:
            return record.encode() if name.rstrip(b".") == want else None

        if dkimpy.verify(msg, dnsfunc=dnsfunc):
            verified += 1
        else:
            error = f"dkimpy did not verify {path.name}"
    return DumpCheck(len(files), signed, len(chosen), verified, error)


def message_ids(files: Sequence[Path]) -> Counter[bytes]:
    """How many times each Message-ID reached the sink (a file without one counts as b"")."""
    seen: Counter[bytes] = Counter()
    for f in files:
        m = _MESSAGE_ID.search(_head(f, 16384).replace(b"\r\n", b"\n"))
        seen[m.group(1) if m else b""] += 1
    return seen
