"""DKIM signing (RFC 6376, RFC 8463) at OpenSSL speed, byte-identical to dkimpy.

dkimpy is the reference implementation in Python, but its RSA step is a pure-Python
modular exponentiation (about a tenth of OpenSSL's rate) and its canonicalization
re-parses the whole message. :class:`DkimSigner` keeps dkimpy's exact algorithm
(tag order, folding, ``b=`` handling, relaxed/simple canonicalization) and replaces
only the slow paths: the signature comes from ``cryptography`` (PKCS#1 v1.5 and
Ed25519 are deterministic, so the bytes are the same), and messages composed by
sokures are signed from their header list without being parsed again.
``tests/test_dkim.py`` checks the output against dkimpy byte for byte and against
OpenDKIM's verifier.

Keys: RSA as PEM (PKCS#1 ``RSA PRIVATE KEY``, which dkimpy and OpenDKIM also read,
or PKCS#8); Ed25519 as PKCS#8 PEM or dkimpy's base64 of the 32-byte seed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from deliver.errors import DkimKeyError

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "DkimSigner",
    "Header",
    "dns_record",
    "generate_key",
    "load_private_key",
    "parse_message",
    "read_private_key",
    "write_private_key",
]

#: a header as dkimpy's parser yields it: name, and the raw value after the colon
#: including folding and the final CRLF (``b" value\r\n"``)
Header = tuple[bytes, bytes]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

#: headers a sokures message signs, then the ones signed a second time ("oversigned",
#: RFC 6376 §8.15) so nobody can add another copy without breaking the signature
DEFAULT_SIGNED_HEADERS: Final = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
_SHOULD_NOT_SIGN: Final = frozenset(
    (
        b"return-path",
        b"received",
        b"comments",
        b"keywords",
        b"bcc",
        b"resent-bcc",
        b"dkim-signature",
    )
)
_SIG_NAME: Final = b"DKIM-Signature"
_PLACEHOLDER: Final = b"0" * 60  # dkimpy's b= placeholder: forces b= onto its own line
# dkimpy's RE_BTAG: the b= tag value (RFC 6376 §3.5: hashed with an empty b=)
_FWS: Final = rb"(?:(?:\s*\r?\n)?\s+)?"
_RE_BTAG: Final = re.compile(
    rb"([;\s]b" + _FWS + rb"=)(?:" + _FWS + rb"[a-zA-Z0-9+/=])*(?:\r?\n\Z)?"
)
_RE_WSP_EOL: Final = re.compile(rb"[\t ]+\r\n")
_RE_WSP: Final = re.compile(rb"[\t ]+")
_RE_EOL: Final = re.compile(rb"\r?\n")
_RE_FIELD_NAME: Final = re.compile(rb"([\x21-\x7e]+?):")


def _strip_trailing_lines(body: bytes) -> bytes:
    """RFC 6376 §3.4.3: trailing empty lines are ignored; ported from dkimpy as is."""
    end: int | None = None
    while body.endswith(b"\r\n", 0, end):
        end = -2 if end is None else end - 2
    if end is None:
        return body + b"\r\n"
    end += 2
    return body if end == 0 else body[:end]


def canonicalize_body(body: bytes, algorithm: bytes) -> bytes:
    """RFC 6376 §3.4.3 (simple) and §3.4.4 (relaxed), exactly as dkimpy computes them."""
    if algorithm == b"simple":
        return _strip_trailing_lines(body)
    out = _strip_trailing_lines(_RE_WSP.sub(b" ", _RE_WSP_EOL.sub(b"\r\n", body)))
    return b"" if out == b"\r\n" else out


def _relaxed_header(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """RFC 6376 §3.4.2: lowercase name, unfold, compress WSP, trim.

    Same result as dkimpy's regexes; they only run when there is something to change.
    """
    inner = value[:-2] if value.endswith(b"\r\n") else value
    if b"\n" in inner:
        if inner.count(b"\n") == inner.count(b"\r\n"):
            inner = inner.replace(b"\r\n", b"")
        else:
            inner = _RE_EOL.sub(b"", inner)
    if b"\t" in inner or b"  " in inner:
        inner = _RE_WSP.sub(b" ", inner)
    return name.lower().rstrip(), inner.strip() + b"\r\n"


def _blank_b_tag(value: bytes) -> bytes:
    """Empty the ``b=`` tag (RFC 6376 §3.7), as dkimpy's RE_BTAG substitution does.

    The signer always puts ``b=`` last with a placeholder of zeros, folded or not,
    so cutting after ``b=`` is the same; anything else takes the regex.
    """
    i = value.rfind(b"b=")
    if i > 0 and value[i - 1] in b"; \t\r\n" and not value[i + 2 :].strip(b"0\r\n \t"):
        return value[: i + 2]
    return _RE_BTAG.sub(b"\\1", value)


def _select_headers(headers: Sequence[Header], include: Iterable[bytes]) -> list[Header]:
    """RFC 6376 §5.4.2: repeated names are taken from the bottom up (dkimpy's order)."""
    chosen: list[Header] = []
    last: dict[bytes, int] = {}
    lowered = [h[0].lower() for h in headers]
    for name in include:
        i = last.get(name, len(headers))
        while i > 0:
            i -= 1
            if lowered[i] == name:
                chosen.append(headers[i])
                break
        last[name] = i
    return chosen


def _fold(header: bytes, namelen: int = 0, linesep: bytes = b"\r\n") -> bytes:
    """Fold at column 72 exactly as dkimpy's ``fold`` does (the output must match it)."""
    maxleng = 72 - namelen
    if len(header) <= maxleng:
        return header
    if len(header) - header.rfind(b"\r\n") == 2 and len(header) <= maxleng + 2:
        return header
    i = header.rfind(b"\r\n ")
    if i == -1:
        pre = b""
    else:
        i += 3
        pre, header = header[:i], header[i:]
    while len(header) > maxleng:
        i = header[:maxleng].rfind(b" ")
        if i == -1:
            j = maxleng
            pre += header[:j] + linesep + b" "
        else:
            j = i + 1
            pre += header[:i] + linesep + b" "
        header = header[j:]
        maxleng = 71
    if len(header) > 2:
        return pre + header
    if pre[0] == b" "[0]:
        return pre[:-1]
    return pre + header


def parse_message(message: bytes) -> tuple[list[Header], bytes]:
    """Split a message into headers and a CRLF body as dkimpy's ``rfc822_parse`` does."""
    lines = _RE_EOL.split(message)
    headers: list[list[bytes]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line:
            i += 1
            break
        if line[0] in (0x09, 0x20):
            if not headers:
                raise ValueError("message starts with a continuation line")
            headers[-1][1] += line + b"\r\n"
        else:
            m = _RE_FIELD_NAME.match(line)
            if m is not None:
                headers.append([m.group(1), line[m.end(0) :] + b"\r\n"])
            elif not line.startswith(b"From "):
                raise ValueError(f"unexpected characters in header line {i + 1}")
        i += 1
    return [(h[0], h[1]) for h in headers], b"\r\n".join(lines[i:])


@dataclass(frozen=True, slots=True)
class DkimSigner:
    """Signs with one key: ``d=domain``, ``s=selector``, relaxed/simple by default.

    Thread-safe: it holds no mutable state, and the RSA step releases the GIL, so a
    thread pool signs on every core.
    """

    domain: bytes
    selector: bytes
    key: PrivateKey = field(repr=False)
    include_headers: tuple[bytes, ...] = DEFAULT_SIGNED_HEADERS
    header_canon: bytes = b"relaxed"
    body_canon: bytes = b"simple"
    identity: bytes | None = None

    def __post_init__(self) -> None:
        if b"from" not in self.include_headers:
            raise ValueError("the From header field must be signed (RFC 6376 §5.4)")
        bad = _SHOULD_NOT_SIGN.intersection(self.include_headers)
        if bad:
            raise ValueError(f"{sorted(bad)[0].decode()} should not be signed (RFC 6376 §5.4.1)")
        if self.identity is not None and not self.identity.endswith(self.domain):
            raise ValueError("identity must end with the signing domain")

    @classmethod
    def from_file(
        cls, domain: str, selector: str, path: Path, algorithm: str, **options: object
    ) -> DkimSigner:
        key = load_private_key(path, algorithm)
        return cls(domain.encode("ascii"), selector.encode("ascii"), key, **options)  # type: ignore[arg-type]

    @property
    def algorithm(self) -> bytes:
        return (
            b"ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else b"rsa-sha256"
        )

    def sign(self, headers: Sequence[Header], body: bytes, timestamp: int) -> bytes:
        """The ``DKIM-Signature: ...\\r\\n`` header line for this message.

        ``headers`` are ``(name, raw value)`` pairs as :func:`parse_message` returns;
        ``body`` is the CRLF body; ``timestamp`` is the ``t=`` tag (seconds).
        """
        canon_body = canonicalize_body(body, self.body_canon)
        body_hash = base64.b64encode(hashlib.sha256(canon_body).digest())
        fields = [
            (b"v", b"1"),
            (b"a", self.algorithm),
            (b"c", self.header_canon + b"/" + self.body_canon),
            (b"d", self.domain),
            (b"i", self.identity or b"@" + self.domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector),
            (b"t", str(int(timestamp)).encode("ascii")),
            (b"h", b" : ".join(self.include_headers)),
            (b"bh", body_hash),
            (b"b", _PLACEHOLDER),
        ]
        value = _fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(_SIG_NAME))
        value = _blank_b_tag(value)
        data = self._signed_data(headers, value)
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:  # RFC 8463 §3: Ed25519 signs the SHA-256 hash of the data
            signature = self.key.sign(hashlib.sha256(data).digest())
        fields[-1] = (b"b", base64.b64encode(signature))
        value = b"; ".join(b"=".join(f) for f in fields) + b"\r\n"
        return _SIG_NAME + b": " + _fold(value, namelen=len(_SIG_NAME))

    def sign_message(self, message: bytes, timestamp: int) -> bytes:
        """Sign a whole message (any line ends); returns the header line to prepend."""
        headers, body = parse_message(message)
        return self.sign(headers, body, timestamp)

    def _signed_data(self, headers: Sequence[Header], sig_value: bytes) -> bytes:
        selected = _select_headers(headers, self.include_headers)
        relaxed = self.header_canon == b"relaxed"
        parts = []
        for name, value in selected:
            if relaxed:
                name, value = _relaxed_header(name, value)
            parts.append(name + b":" + value)
        # the signature header itself, b= empty and without its final CRLF (§3.7)
        name, value = _SIG_NAME, b" " + sig_value
        if relaxed:
            name, value = _relaxed_header(name, value)
        parts.append(name + b":" + value.rstrip())
        return b"".join(parts)


def read_private_key(path: Path) -> PrivateKey:
    """An RSA or Ed25519 private key from PEM (PKCS#1 or PKCS#8) or dkimpy's base64
    Ed25519 seed; errors name the file, never its content."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DkimKeyError(f"{path}: cannot read DKIM key: {exc.strerror}") from None
    try:
        if data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            seed = base64.b64decode(data.strip(), validate=True)
            key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # binascii.Error is a ValueError
        raise DkimKeyError(f"{path}: not a readable RSA or Ed25519 private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise DkimKeyError(f"{path}: a DKIM key must be RSA or Ed25519")
    return key


def load_private_key(path: Path, algorithm: str) -> PrivateKey:
    """Read a DKIM private key for ``algorithm``; errors name the file, never its content."""
    key = read_private_key(path)
    want = rsa.RSAPrivateKey if algorithm == "rsa-sha256" else ed25519.Ed25519PrivateKey
    if not isinstance(key, want):
        raise DkimKeyError(f"{path}: key does not match algorithm {algorithm}")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 1024:
        raise DkimKeyError(f"{path}: RSA key of {key.key_size} bits is too short (RFC 8301 §3.2)")
    return key


def generate_key(algorithm: str, bits: int = 2048) -> PrivateKey:
    if algorithm == "rsa-sha256":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if algorithm == "ed25519-sha256":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown DKIM algorithm {algorithm!r}")


def write_private_key(key: PrivateKey, path: Path) -> None:
    """Write a key readable by its owner only (mode 0600), refusing to overwrite one."""
    if isinstance(key, rsa.RSAPrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL  # PKCS#1: dkimpy and OpenDKIM read it
    else:
        fmt = serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def dns_record(key: PrivateKey) -> str:
    """The TXT record value publishing the public half (RFC 6376 §3.6.1, RFC 8463 §4.2)."""
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
