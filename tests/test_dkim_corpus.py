"""The DKIM vectors of ../shared/corpora/dkim (RFC 6376, RFC 8463) through check-message's
verification path, their key records served by a real DNS server process.

``manifest.json`` lists the TXT records to serve, the private keys and, per case, what
must come out; every case it lists runs here. The key-record cases (a record dkimpy must
reject) sign a corpus message with the corpus RSA key under a selector that publishes
that record, and check that the signature does not verify while the same message signed
under the good record does; the DKIM probe must reject each record too.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deliver.dkim import DkimSigner, load_private_key
from deliver.dns import Resolver
from lab.zones import Record, ZoneData
from probes import dkim
from probes.checks import ProbeContext, ProbeOptions, Status
from probes.message import MessageReport, check_message
from tests.servers.dns import DnsServerProcess

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "dkim"
MANIFEST: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text())
CASES: list[dict[str, Any]] = MANIFEST["cases"]
#: key-record cases are served under these selectors at example.com
RECORD_SELECTORS = {"badversion.txt": "badversion", "badk.txt": "badk", "test_bad.txt": "bad"}
RSA_KEY = CORPUS / "test.private"  # the key test.txt publishes (RSA-1024)
SIGNED_AT = 1_700_000_000


def _text(value: str) -> str:
    if value.startswith("@file:"):
        return (CORPUS / value.removeprefix("@file:")).read_text().strip()
    return value


@pytest.fixture(scope="module")
def nameserver() -> Iterator[str]:
    records: dict[str, list[Record]] = {
        name.rstrip("."): [Record("TXT", _text(value))]
        for name, value in MANIFEST["dns_txt"].items()
    }
    for file, selector in RECORD_SELECTORS.items():
        records[f"{selector}._domainkey.example.com"] = [Record("TXT", _text(f"@file:{file}"))]
    zone = ZoneData(["example.com", "example.net", "test.ex"], records)
    with DnsServerProcess(zone) as server:
        yield server.nameserver


def check(nameserver: str, raw: bytes) -> MessageReport:
    async def go() -> MessageReport:
        return await check_message(Resolver([nameserver], timeout=2.0), raw, bulk=False)

    return asyncio.run(go())


def sign(raw: bytes, domain: str, selector: str, key: Path, algorithm: str) -> bytes:
    signer = DkimSigner(domain.encode(), selector.encode(), load_private_key(key, algorithm),
                        include_headers=(b"from", b"to", b"subject", b"date"))  # fmt: skip
    return signer.sign_message(raw, SIGNED_AT) + raw


def _case_id(case: dict[str, Any]) -> str:
    name = case.get("file") or case["key_record"]
    return f"{name}[{case.get('sig_index', 0)}]" + ("-mutated" if "mutation" in case else "")


def _mutate(raw: bytes, mutation: str) -> bytes:
    found = re.fullmatch(r"body '(.*)' -> '(.*)'", mutation)
    assert found, f"unknown mutation {mutation!r}"
    old, new = found.group(1).encode(), found.group(2).encode()
    assert old in raw
    return raw.replace(old, new)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_manifest_case(nameserver: str, case: dict[str, Any]) -> None:
    expect: str = case["expect"]
    if "key_record" in case:
        return check_key_record_case(nameserver, case["key_record"], expect)
    raw = (CORPUS / case["file"]).read_bytes()
    if "mutation" in case:
        raw = _mutate(raw, case["mutation"])
    if expect == "pass after signing":
        key = next(v for k, v in MANIFEST["private_keys"].items() if k.startswith("brisbane"))
        raw = sign(raw, "football.example.com", "brisbane", CORPUS / key.removeprefix("@file:"),
                   "ed25519-sha256")  # fmt: skip
    report = check(nameserver, raw)
    signature = report.dkim[case.get("sig_index", 0)]
    for tag, attribute in (("d", "domain"), ("s", "selector"), ("algo", "algorithm")):
        if tag in case:
            assert getattr(signature, attribute) == case[tag]
    if expect.startswith("pass"):
        assert signature.result == "pass", signature.reason
        assert report.checks[4].id == "dkim.signature" and report.checks[4].status is Status.PASS
    else:
        wanted = re.search(r"ValidationError '(.*)'", expect)
        assert signature.result == "fail"
        assert wanted is not None and wanted.group(1) in signature.reason


def check_key_record_case(nameserver: str, record_file: str, expect: str) -> None:
    raw = (CORPUS / "test.message").read_bytes()
    good = check(nameserver, sign(raw, "example.com", "test", RSA_KEY, "rsa-sha256"))
    assert good.dkim[0].result == "pass", good.dkim[0].reason
    selector = RECORD_SELECTORS[record_file]
    bad = check(nameserver, sign(raw, "example.com", selector, RSA_KEY, "rsa-sha256"))
    signature = bad.dkim[0]
    assert signature.result != "pass"
    if expect.startswith("key record rejected"):
        # dkimpy refuses the record itself: a permanent error naming the record's fault
        assert signature.result == "permerror", signature.reason
        assert f"{selector}._domainkey.example.com" in signature.reason
    else:
        assert expect.startswith("verification fails")
    assert next(c for c in bad.checks if c.id == "dkim.signature").status is Status.FAIL
    # the key probe rejects the same record
    verdicts = asyncio.run(_audit(nameserver, selector))
    assert verdicts == "invalid"


async def _audit(nameserver: str, selector: str) -> str:
    ctx = ProbeContext(Resolver([nameserver], timeout=2.0), ProbeOptions(selectors=(selector,)))
    return dkim.verdict(await dkim.audit(ctx, "example.com"), selector)


def test_ed25519_record_without_version_tag(nameserver: str) -> None:
    """ed25519test.dns publishes ``k=ed25519; p=...`` without v= (optional, §3.6.1)."""
    raw = (CORPUS / "test.message").read_bytes()
    signed = sign(raw, "example.net", "test", CORPUS / "ed25519test.key", "ed25519-sha256")
    assert check(nameserver, signed).dkim[0].result == "pass"


def test_every_served_record_reads_as_the_probe_expects(nameserver: str) -> None:
    expected = {"brisbane": "football.example.com", "test": "example.com", "sed": "test.ex"}
    for selector, domain in expected.items():
        ctx = ProbeContext(Resolver([nameserver]), ProbeOptions(selectors=(selector,)))
        results = asyncio.run(dkim.audit(ctx, domain))
        # test.txt is the RFC 6376 era RSA-1024 key: weak, but valid
        assert dkim.verdict(results, selector) in ("valid", "weak"), results


def test_unsigned_message_has_no_signature(nameserver: str) -> None:
    report = check(nameserver, (CORPUS / "rfc6376.msg").read_bytes())
    assert report.dkim == ()
    found = next(c for c in report.checks if c.id == "dkim.signature")
    assert found.status is Status.FAIL and "not DKIM-signed" in found.message
