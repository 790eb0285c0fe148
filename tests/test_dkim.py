"""The DKIM signer: byte-identical to dkimpy, verified by dkimpy and by OpenDKIM."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deliver.dkim import (
    DEFAULT_SIGNED_HEADERS,
    DkimSigner,
    canonicalize_body,
    dns_record,
    generate_key,
    load_private_key,
    parse_message,
    write_private_key,
)
from deliver.errors import DkimKeyError
from lab.zones import Record, ZoneData
from tests.servers.opendkim import OpenDkimVerifier

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "dkim"
RSA = generate_key("rsa-sha256")
ED = generate_key("ed25519-sha256")
RSA_PEM = RSA.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
ED_SEED = base64.b64encode(
    ED.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
)

MESSAGE = (
    b'From: "Alice Example" <alice@example.com>\r\n'
    b"To: bob@example.org\r\n"
    b"Subject:  The   weekly\r\n\tnewsletter \r\n"
    b"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1.2.abc@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"List-Unsubscribe: <https://example.com/u/t0k3n>,\r\n"
    b" <mailto:unsubscribe+t0k3n@example.com>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Feedback-ID: c1:default:newsletter:sokures\r\n"
    b"\r\n"
    b"Hello Bob,  \r\n\r\nthis  is\tthe body.\r\n\r\n\r\n"
)


def dkimpy_sign(
    message: bytes,
    algorithm: str,
    canon: tuple[bytes, bytes],
    include: tuple[bytes, ...],
    identity: bytes | None = None,
) -> bytes:
    key = RSA_PEM if algorithm == "rsa-sha256" else ED_SEED
    return dkimpy.sign(
        message,
        b"sel",
        b"example.com",
        key,
        identity=identity,
        canonicalize=canon,
        include_headers=list(include),
        signature_algorithm=algorithm.encode(),
    )


def ours(
    algorithm: str,
    canon: tuple[bytes, bytes],
    include: tuple[bytes, ...],
    identity: bytes | None = None,
) -> DkimSigner:
    key = RSA if algorithm == "rsa-sha256" else ED
    return DkimSigner(
        b"example.com",
        b"sel",
        key,
        include_headers=include,
        header_canon=canon[0],
        body_canon=canon[1],
        identity=identity,
    )


def timestamp_of(signature: bytes) -> int:
    m = re.search(rb"\bt=(\d+)", signature)
    assert m
    return int(m.group(1))


CANONS = [
    (b"relaxed", b"simple"),
    (b"simple", b"simple"),
    (b"relaxed", b"relaxed"),
    (b"simple", b"relaxed"),
]


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
@pytest.mark.parametrize("canon", CANONS, ids=lambda c: b"/".join(c).decode())
def test_identical_to_dkimpy(algorithm: str, canon: tuple[bytes, bytes]) -> None:
    reference = dkimpy_sign(MESSAGE, algorithm, canon, DEFAULT_SIGNED_HEADERS)
    mine = ours(algorithm, canon, DEFAULT_SIGNED_HEADERS).sign_message(
        MESSAGE, timestamp_of(reference)
    )
    assert mine == reference


# Messages as a sender (or an attacker) might write them: folded and padded headers,
# repeated names, bodies with trailing blank lines and whitespace, empty bodies.
header_names = st.sampled_from(
    [
        b"From",
        b"To",
        b"Subject",
        b"Date",
        b"Message-ID",
        b"Cc",
        b"Reply-To",
        b"X-Custom",
        b"List-Unsubscribe",
        b"subject",
    ]
)
value_chars = st.sampled_from([b"a", b"Z", b"0", b" ", b"\t", b"  ", b";", b"=", b"<", b"@", b"."])
header_value = (
    st.lists(value_chars, max_size=40)
    .map(b"".join)
    .flatmap(lambda v: st.sampled_from([v, v + b"\r\n\tmore", b" " + v, v + b"\r\n  folded  "]))
)
body_line = st.lists(st.sampled_from([b"x", b" ", b"\t", b"word", b"."]), max_size=12).map(b"".join)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(st.tuples(header_names, header_value), min_size=1, max_size=8))
    headers.insert(draw(st.integers(0, len(headers))), (b"From", b"a@example.com"))
    body = draw(st.lists(body_line, max_size=8))
    trailing = draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n\r\n", b" \r\n\t\r\n"]))
    head = b"".join(
        n + b":" + (b" " if not v.startswith(b" ") else b"") + v + b"\r\n" for n, v in headers
    )
    return head + b"\r\n" + b"\r\n".join(body) + trailing


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    message=messages(),
    canon=st.sampled_from(CANONS),
    algorithm=st.sampled_from(["rsa-sha256", "ed25519-sha256"]),
    include=st.lists(
        st.sampled_from([b"to", b"subject", b"cc", b"date", b"x-custom", b"reply-to", b"from"]),
        max_size=6,
    ),
)
def test_identical_to_dkimpy_for_any_message(
    message: bytes, canon: tuple[bytes, bytes], algorithm: str, include: list[bytes]
) -> None:
    headers = (b"from", *include)
    reference = dkimpy_sign(message, algorithm, canon, headers)
    mine = ours(algorithm, canon, headers).sign_message(message, timestamp_of(reference))
    assert mine == reference


def test_signing_composed_headers_equals_signing_the_bytes() -> None:
    headers, body = parse_message(MESSAGE)
    signer = ours("rsa-sha256", CANONS[0], DEFAULT_SIGNED_HEADERS)
    assert signer.sign(headers, body, 1_700_000_000) == signer.sign_message(MESSAGE, 1_700_000_000)


def test_identity_tag_matches_dkimpy() -> None:
    reference = dkimpy_sign(
        MESSAGE, "rsa-sha256", CANONS[0], (b"from",), identity=b"news@example.com"
    )
    mine = ours("rsa-sha256", CANONS[0], (b"from",), identity=b"news@example.com")
    assert mine.sign_message(MESSAGE, timestamp_of(reference)) == reference


def test_body_canonicalization_edge_cases() -> None:
    assert canonicalize_body(b"", b"simple") == b"\r\n"
    assert canonicalize_body(b"", b"relaxed") == b""
    assert canonicalize_body(b"\r\n\r\n", b"simple") == b"\r\n"
    assert canonicalize_body(b"a  \t b \r\n\r\n", b"relaxed") == b"a b\r\n"
    assert canonicalize_body(b"a\r\n", b"simple") == b"a\r\n"


def dnsfunc_for(key: object) -> object:
    record = dns_record(key).encode()  # type: ignore[arg-type]

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name.rstrip(b".") == b"sel._domainkey.example.com" else None

    return dnsfunc


@pytest.mark.parametrize("key", [RSA, ED], ids=["rsa", "ed25519"])
def test_dkimpy_verifies_our_signature(key: object) -> None:
    signer = DkimSigner(b"example.com", b"sel", key)  # type: ignore[arg-type]
    signed = signer.sign_message(MESSAGE, int(time.time())) + MESSAGE
    assert dkimpy.verify(signed, dnsfunc=dnsfunc_for(key))
    tampered = signed.replace(b"this  is", b"this was")
    assert not dkimpy.verify(tampered, dnsfunc=dnsfunc_for(key))


def test_published_rfc8463_key_verifies() -> None:
    """Signing RFC 6376's example with RFC 8463's Ed25519 test key, checked against the
    public key RFC 8463 publishes (brisbane._domainkey.football.example.com)."""
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    record = manifest["dns_txt"]["brisbane._domainkey.football.example.com."].encode()
    key = load_private_key(CORPUS / "rfc8032_7_1.key", "ed25519-sha256")
    message = (CORPUS / "rfc6376.msg").read_bytes()
    signer = DkimSigner(
        b"football.example.com",
        b"brisbane",
        key,
        include_headers=(b"from", b"to", b"subject", b"date", b"message-id"),
    )
    signed = signer.sign_message(message, int(time.time())) + message.replace(b"\n", b"\r\n")

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name.startswith(b"brisbane._domainkey.football.example.com") else None

    assert dkimpy.verify(signed, dnsfunc=dnsfunc)
    assert dns_record(key).endswith(record.split(b"p=")[1].decode())


def test_opendkim_verifies_rsa_ed25519_and_dual_signatures() -> None:
    zone = ZoneData(
        ("example.com",),
        {
            "rsa._domainkey.example.com": [Record("TXT", dns_record(RSA))],
            "ed._domainkey.example.com": [Record("TXT", dns_record(ED))],
        },
    )
    rsa = DkimSigner(b"example.com", b"rsa", RSA)
    ed = DkimSigner(b"example.com", b"ed", ED)
    now = int(time.time())
    with OpenDkimVerifier(zone) as opendkim:
        for signers in ([rsa], [ed], [ed, rsa]):
            signed = b"".join(s.sign_message(MESSAGE, now) for s in signers) + MESSAGE
            verdict = opendkim.verify(signed)
            assert verdict.ok, verdict.stderr
        tampered = rsa.sign_message(MESSAGE, now) + MESSAGE.replace(b"the body", b"the b0dy")
        verdict = opendkim.verify(tampered)
        assert not verdict.ok and "signature" in verdict.stderr.lower()


def test_private_keys_are_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "sel.rsa.pem"
    write_private_key(RSA, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private_key(RSA, path)
    assert load_private_key(path, "rsa-sha256").private_numbers() == RSA.private_numbers()
    # dkimpy and OpenDKIM read the PKCS#1 file as it is
    assert dkimpy.sign(MESSAGE, b"sel", b"example.com", path.read_bytes()).startswith(
        b"DKIM-Signature"
    )


def test_key_errors_name_the_file_and_never_the_key(tmp_path: Path) -> None:
    path = tmp_path / "broken.pem"
    secret = RSA_PEM.decode().replace("MII", "XXX")
    path.write_text(secret)
    with pytest.raises(DkimKeyError) as err:
        load_private_key(path, "rsa-sha256")
    assert str(path) in str(err.value)
    assert "XXX" not in str(err.value) and "PRIVATE" not in str(err.value)
    with pytest.raises(DkimKeyError, match="does not match"):
        good = tmp_path / "rsa.pem"
        write_private_key(RSA, good)
        load_private_key(good, "ed25519-sha256")
    with pytest.raises(DkimKeyError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem", "rsa-sha256")


def test_signer_refuses_unsafe_header_lists() -> None:
    with pytest.raises(ValueError, match="From"):
        DkimSigner(b"example.com", b"s", RSA, include_headers=(b"to",))
    with pytest.raises(ValueError, match="received"):
        DkimSigner(b"example.com", b"s", RSA, include_headers=(b"from", b"received"))
    shown = repr(DkimSigner(b"example.com", b"s", RSA))
    assert "key" not in shown and "RSAPrivateKey" not in shown
