"""Per-message tokens: VERP return paths, unsubscribe tokens, Message-ID tags.

Each token carries ids and a truncated HMAC-SHA256 under the installation's token
key, so a bounce or an unsubscribe request can be traced to its message and
contact, and nobody can forge one for somebody else's address. Everything is
lowercase hex/base36: some MTAs lowercase local parts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from deliver.errors import ConfigError

__all__ = ["TokenSigner", "b36", "generate_token_key", "load_token_key"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# MACs in hex: lowercase by nature, and hexdigest() is C (base32 is Python: ~20 µs each)
_VERP_MAC = 10  # 40 bits: a forged bounce must also name a real message
_UNSUB_MAC = 16  # 64 bits: an unsubscribe acts on someone's subscription
_VERP_RE = re.compile(r"^(?P<prefix>.+)-(?P<id>[0-9a-z]+)-(?P<mac>[0-9a-f]{10})$")
_UNSUB_RE = re.compile(r"^(?P<c>[0-9a-z]+)\.(?P<p>[0-9a-z]+)\.(?P<mac>[0-9a-f]{16})$")


def b36(n: int) -> str:
    if n < 0:
        raise ValueError("negative id")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _ALPHABET[r] + out
        if n == 0:
            return out


def generate_token_key(path: Path) -> None:
    """Write a fresh 32-byte key, readable by its owner only; keep an existing one."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")


def load_token_key(path: Path | None) -> bytes:
    if path is None:
        raise ConfigError("no token key configured (sender.token_key_file): run `sokures init`")
    try:
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the token key: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path}: the token key is not hex") from None
    if len(key) < 16:
        raise ConfigError(f"{path}: the token key is shorter than 16 bytes")
    return key


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "TokenSigner(<key hidden>)"

    def _mac(self, purpose: str, *parts: int, length: int) -> str:
        msg = purpose.encode() + b":" + b":".join(str(p).encode() for p in parts)
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:length]

    def verp_local(self, prefix: str, message_id: int) -> str:
        """Local part of the envelope sender: ``<prefix>-<id>-<mac>``."""
        return f"{prefix}-{b36(message_id)}-{self._mac('verp', message_id, length=_VERP_MAC)}"

    def parse_verp(self, local: str) -> int | None:
        """The message id a VERP local part encodes, or None if it is not ours."""
        m = _VERP_RE.match(local.lower())
        if not m:
            return None
        message_id = int(m["id"], 36)
        if not hmac.compare_digest(m["mac"], self._mac("verp", message_id, length=_VERP_MAC)):
            return None
        return message_id

    def unsubscribe(self, campaign_id: int, contact_id: int) -> str:
        mac = self._mac("unsub", campaign_id, contact_id, length=_UNSUB_MAC)
        return f"{b36(campaign_id)}.{b36(contact_id)}.{mac}"

    def parse_unsubscribe(self, token: str) -> tuple[int, int] | None:
        m = _UNSUB_RE.match(token.lower())
        if not m:
            return None
        campaign_id, contact_id = int(m["c"], 36), int(m["p"], 36)
        expected = self._mac("unsub", campaign_id, contact_id, length=_UNSUB_MAC)
        if not hmac.compare_digest(m["mac"], expected):
            return None
        return campaign_id, contact_id

    def message_id_tag(self, message_id: int) -> str:
        """Keeps Message-IDs unique between installations sending for one domain."""
        return self._mac("mid", message_id, length=_VERP_MAC)
