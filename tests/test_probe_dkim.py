"""probes.dkim: every kind of key record, served by a real DNS server process on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from deliver.dkim import dns_record, generate_key, write_private_key
from deliver.dns import Resolver
from deliver.errors import DkimKeyError
from lab.zones import Record, ZoneData
from probes import dkim
from probes.catalog import CHECKS
from probes.checks import CheckResult, ProbeContext, ProbeOptions, Status
from tests.probe_helpers import by_id
from tests.servers.dns import DnsServerProcess

DOMAIN = "keys.test"
RSA2048 = generate_key("rsa-sha256", 2048)
RSA1024 = generate_key("rsa-sha256", 1024)
ED = generate_key("ed25519-sha256")
assert isinstance(RSA2048, rsa.RSAPrivateKey) and isinstance(ED, ed25519.Ed25519PrivateKey)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _rsa768() -> rsa.RSAPublicKey:
    """cryptography will not generate keys under 1024 bits; a public key needs only n."""
    n = secrets.randbits(768) | (1 << 767) | 1
    return rsa.RSAPublicNumbers(65537, n).public_key()


P2048 = _b64(_spki(RSA2048.public_key()))
P1024 = _b64(_spki(RSA1024.public_key()))
P768 = _b64(_spki(_rsa768()))
PKCS1 = _b64(
    RSA2048.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
)
ED_RAW = ED.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
PED = _b64(ED_RAW)

#: selector -> TXT records at <selector>._domainkey.keys.test
RECORDS: dict[str, list[str]] = {
    "rsa2048": [f"v=DKIM1; k=rsa; p={P2048}"],
    "rsa1024": [f"v=DKIM1; k=rsa; p={P1024}"],
    "rsa768": [f"v=DKIM1; k=rsa; p={P768}"],
    "pkcs1": [f"v=DKIM1; p={PKCS1}"],
    "ed": [f"v=DKIM1; k=ed25519; p={PED}"],
    "ed_spki": [f"v=DKIM1; k=ed25519; p={_b64(_spki(ED.public_key()))}"],
    "testing": [f"v=DKIM1; k=rsa; t=y:s; p={P2048}"],
    "revoked": ["v=DKIM1; k=rsa; p="],
    "badb64": [f"v=DKIM1; k=rsa; p={P2048[:60]}!!{P2048[62:]}"],
    "truncated": [f"v=DKIM1; k=rsa; p={P2048[:200]}"],
    "k_ed_rsa_p": [f"v=DKIM1; k=ed25519; p={P2048}"],
    "k_rsa_ed_p": [f"v=DKIM1; p={PED}"],
    "k_unknown": [f"v=DKIM1; k=ed25519-sha256; p={P2048}"],
    "dkim2": [f"v=DKIM2; k=rsa; p={P2048}"],
    "v_late": [f"k=rsa; v=DKIM1; p={P2048}"],
    "dup_tag": [f"v=DKIM1; p={P2048}; p={P1024}"],
    "sha1": [f"v=DKIM1; h=sha1; p={P2048}"],
    "no_v": [f"k=rsa; p={P2048}"],
    "two": [f"v=DKIM1; k=rsa; p={P2048}", f"v=DKIM1; k=rsa; p={P1024}"],
    "other_txt": ["google-site-verification=abc"],
    "match_rsa": [f"v=DKIM1; k=rsa; p={P2048}"],
    "match_ed": [f"v=DKIM1; k=ed25519; p={PED}"],
    "stale": [f"v=DKIM1; k=rsa; p={P1024}"],
}


@pytest.fixture(scope="module")
def nameserver() -> Iterator[str]:
    records: dict[str, list[Record]] = {
        f"{s}._domainkey.{DOMAIN}": [Record("TXT", t) for t in texts]
        for s, texts in RECORDS.items()
    }
    records[f"nodata._domainkey.{DOMAIN}"] = [Record("A", "127.0.0.1")]
    zone = ZoneData(
        [DOMAIN],
        records,
        timeout=[f"slow._domainkey.{DOMAIN}"],
        servfail=[f"broken._domainkey.{DOMAIN}"],
    )
    with DnsServerProcess(zone) as server:
        yield server.nameserver


def run(
    nameserver: str, *selectors: str, local: Mapping[str, bytes] | None = None
) -> list[CheckResult]:
    async def go() -> list[CheckResult]:
        options = ProbeOptions(selectors=selectors, local_keys=dict(local or {}))
        ctx = ProbeContext(Resolver([nameserver], timeout=0.6), options)
        return await dkim.audit(ctx, DOMAIN)

    return asyncio.run(go())



def statuses(results: list[CheckResult]) -> dict[str, str]:
    return {r.id: r.status.value for r in by_id(results).values()}


def test_no_selector_gives_no_results(nameserver: str) -> None:
    assert run(nameserver) == []


def test_rsa_2048_passes_every_check(nameserver: str) -> None:
    results = run(nameserver, "rsa2048")
    assert statuses(results) == {
        "dkim.key_present": "pass", "dkim.key_syntax": "pass", "dkim.revoked": "pass",
        "dkim.key_type": "pass", "dkim.key_bits": "pass", "dkim.testing": "pass",
    }  # fmt: skip
    checks = by_id(results)
    assert checks["dkim.key_bits"].evidence["bits"] == 2048
    assert checks["dkim.key_type"].evidence["algorithm"] == "rsa"
    assert checks["dkim.key_syntax"].evidence["record"] == RECORDS["rsa2048"][0]  # whole p=
    assert all(r.evidence["selector"] == "rsa2048" for r in results)
    assert all(r.id in CHECKS for r in results)
    json.dumps([r.to_dict() for r in results])
    assert dkim.verdict(results, "rsa2048") == "valid"


@pytest.mark.parametrize(
    ("selector", "check", "status", "verdict", "bits"),
    [
        ("rsa1024", "dkim.key_bits", "warn", "weak", 1024),
        ("rsa768", "dkim.key_bits", "fail", "invalid", 768),
        ("pkcs1", "dkim.key_bits", "pass", "valid", 2048),
        ("ed", "dkim.key_bits", "pass", "valid", 256),
    ],
)
def test_key_sizes(
    nameserver: str, selector: str, check: str, status: str, verdict: str, bits: int
) -> None:
    results = run(nameserver, selector)
    found = by_id(results)[check]
    assert found.status == status, found.message
    assert found.evidence["bits"] == bits
    assert dkim.verdict(results, selector) == verdict
    if status != "pass":
        assert "2048" in found.message and "RFC 8301" in found.message


def test_ed25519_key_type(nameserver: str) -> None:
    checks = by_id(run(nameserver, "ed"))
    assert checks["dkim.key_type"].status is Status.PASS
    assert checks["dkim.key_type"].evidence["algorithm"] == "ed25519"


def test_testing_mode_warns_and_fix_drops_y(nameserver: str) -> None:
    results = run(nameserver, "testing")
    found = by_id(results)["dkim.testing"]
    assert found.status is Status.WARN
    assert "receivers treat failures as unsigned" in found.message
    assert found.fix == f"v=DKIM1; k=rsa; t=s; p={P2048}"
    assert dkim.verdict(results, "testing") == "valid_testing"


@pytest.mark.parametrize("selector", ["absent", "nodata", "other_txt"])
def test_missing_record(nameserver: str, selector: str) -> None:
    results = run(nameserver, selector)
    assert statuses(results) == {"dkim.key_present": "fail"}
    assert f"{selector}._domainkey.{DOMAIN}" in results[0].message
    assert "publish" in results[0].message
    assert dkim.verdict(results, selector) == "missing"


@pytest.mark.parametrize(
    ("selector", "check"),
    [("absent", "dkim.key_present"), ("revoked", "dkim.revoked"), ("badb64", "dkim.key_syntax")],
)
def test_unusable_record_fix_from_local_key(nameserver: str, selector: str, check: str) -> None:
    results = run(nameserver, selector, local={selector: ED_RAW})
    failed = [r for r in results if r.status is Status.FAIL]
    assert [r.id for r in failed] == [check]
    assert failed[0].fix == dns_record(ED)


def test_revoked(nameserver: str) -> None:
    results = run(nameserver, "revoked")
    checks = by_id(results)
    assert checks["dkim.revoked"].status is Status.FAIL
    assert checks["dkim.key_syntax"].status is Status.PASS  # an empty p= is well formed
    assert dkim.verdict(results, "revoked") == "revoked"


@pytest.mark.parametrize(
    ("selector", "check", "words"),
    [
        ("badb64", "dkim.key_syntax", "not valid base64"),
        ("truncated", "dkim.key_syntax", "truncated or corrupted"),
        ("dkim2", "dkim.key_syntax", "v=DKIM2"),
        ("v_late", "dkim.key_syntax", "first tag"),
        ("dup_tag", "dkim.key_syntax", "twice"),
        ("ed_spki", "dkim.key_syntax", "raw 32 bytes"),
        ("two", "dkim.key_syntax", "2 TXT records"),
        ("k_ed_rsa_p", "dkim.key_type", "k=ed25519 but p= holds an RSA key"),
        ("k_rsa_ed_p", "dkim.key_type", "holds an Ed25519 key"),
        ("k_unknown", "dkim.key_type", "k=ed25519-sha256"),
        ("sha1", "dkim.key_type", "sha256"),
    ],
)
def test_invalid_records(nameserver: str, selector: str, check: str, words: str) -> None:
    results = run(nameserver, selector)
    found = by_id(results)[check]
    assert found.status is Status.FAIL
    assert words in found.message
    assert dkim.verdict(results, selector) == "invalid"


@pytest.mark.parametrize(
    ("selector", "fix"),
    [
        ("k_ed_rsa_p", f"v=DKIM1; k=rsa; p={P2048}"),
        ("k_rsa_ed_p", f"v=DKIM1; k=ed25519; p={PED}"),
        ("dkim2", f"v=DKIM1; k=rsa; p={P2048}"),
        ("v_late", f"v=DKIM1; k=rsa; p={P2048}"),
        ("ed_spki", f"v=DKIM1; k=ed25519; p={PED}"),
        ("sha1", f"v=DKIM1; p={P2048}"),
    ],
)
def test_fix_is_the_corrected_record(nameserver: str, selector: str, fix: str) -> None:
    fixes = [r.fix for r in run(nameserver, selector) if r.status is Status.FAIL]
    assert fixes == [fix]


def test_version_tag_is_optional(nameserver: str) -> None:
    results = run(nameserver, "no_v")
    assert dkim.verdict(results, "no_v") == "valid"


@pytest.mark.parametrize("selector", ["slow", "broken"])
def test_lookup_failure_is_error_not_missing(nameserver: str, selector: str) -> None:
    results = run(nameserver, selector)
    assert statuses(results) == {"dkim.key_present": "error"}
    assert results[0].evidence["selector"] == selector
    assert results[0].evidence["dns"] in ("timeout", "servfail")
    assert dkim.verdict(results, selector) == "error"


def test_several_selectors_repeat_ids_with_selector(nameserver: str) -> None:
    results = run(nameserver, "rsa2048", "rsa1024", "absent")
    present = [r for r in results if r.id == "dkim.key_present"]
    assert [r.evidence["selector"] for r in present] == ["rsa2048", "rsa1024", "absent"]
    assert dkim.verdict(results, "rsa2048") == "valid"
    assert dkim.verdict(results, "rsa1024") == "weak"
    assert dkim.verdict(results, "absent") == "missing"
    with pytest.raises(ValueError, match="no DKIM key results"):
        dkim.verdict(results, "other")


def _write(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, path: Path) -> Path:
    write_private_key(key, path)
    return path


def test_key_match_with_real_key_pairs(nameserver: str, tmp_path: Path) -> None:
    rsa_alg, rsa_public = dkim.public_key_bytes(_write(RSA2048, tmp_path / "rsa.pem"))
    ed_alg, ed_public = dkim.public_key_bytes(_write(ED, tmp_path / "ed.pem"))
    assert (rsa_alg, ed_alg) == ("rsa", "ed25519")
    assert rsa_public == _spki(RSA2048.public_key()) and ed_public == ED_RAW
    local = {"match_rsa": rsa_public, "match_ed": ed_public, "stale": rsa_public,
             "pkcs1": rsa_public}  # fmt: skip
    results = run(nameserver, "match_rsa", "match_ed", "stale", "pkcs1", local=local)
    matches = {r.evidence["selector"]: r for r in results if r.id == "dkim.key_match"}
    assert {s: r.status.value for s, r in matches.items()} == {
        "match_rsa": "pass", "match_ed": "pass", "stale": "fail", "pkcs1": "pass",
    }  # fmt: skip
    assert matches["stale"].fix == dns_record(RSA2048)
    private = RSA2048.private_numbers()
    secret_texts = [str(private.d), _b64(private.d.to_bytes(256, "big")),
                    (tmp_path / "rsa.pem").read_text()]  # fmt: skip
    shown = json.dumps([r.to_dict() for r in results])
    assert not any(secret in shown for secret in secret_texts)


def test_public_key_bytes_reads_dkimpy_ed25519_seed(tmp_path: Path) -> None:
    seed = ED.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    path = tmp_path / "ed.key"
    path.write_bytes(base64.b64encode(seed) + b"\n")
    assert dkim.public_key_bytes(path) == ("ed25519", ED_RAW)


def test_public_key_bytes_errors_name_the_file_not_the_content(tmp_path: Path) -> None:
    with pytest.raises(DkimKeyError, match="cannot read"):
        dkim.public_key_bytes(tmp_path / "nope.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXN0dWZm\n-----END PRIVATE KEY-----\n")
    with pytest.raises(DkimKeyError) as caught:
        dkim.public_key_bytes(bad)
    assert str(bad) in str(caught.value) and "c2VjcmV0" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("v=DKIM1; p", "not a tag=value pair"),
        ("v=DKIM1; 1x=2; p=", "not a valid tag name"),
        ("v=DKIM1; n=caf\u00e9; p=", "characters"),
        ("v=DKIM1; p=; p=", "twice"),
    ],
)
def test_tag_list_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        dkim.parse_tag_list(text)
    assert dkim.inspect_record(text).syntax is not None


def test_tag_list_keeps_folded_values() -> None:
    tags = dkim.parse_tag_list(" v = DKIM1 ;\r\n\tp = MIIB IjAN ; ")
    assert tags == {"v": "DKIM1", "p": "MIIB IjAN"}
