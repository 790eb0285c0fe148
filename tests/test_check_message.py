"""check-message's verdict: messages signed by our DkimSigner, verified end to end against
a real DNS server process; SPF and DMARC alignment, ARC, Authentication-Results, RFC 8058
one-click, and the shape of the message itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from deliver.dkim import DkimSigner, dns_record, generate_key
from deliver.dns import Resolver
from lab.zones import Record, ZoneData
from probes.catalog import CHECKS
from probes.checks import CheckResult, Status
from probes.message import MessageFormatError, MessageReport, check_message, read_headers
from tests.servers.dns import DnsServerProcess

RSA = generate_key("rsa-sha256")
ED = generate_key("ed25519-sha256")
OTHER = generate_key("rsa-sha256")
SENDER_IP, OTHER_IP, STRANGER_IP = "127.0.0.10", "127.0.0.20", "127.0.0.99"

ZONE = ZoneData(
    ["test"],
    {
        "sender.test": [Record("TXT", f"v=spf1 ip4:{SENDER_IP} -all")],
        "s1._domainkey.sender.test": [Record("TXT", dns_record(RSA))],
        "ed._domainkey.sender.test": [Record("TXT", dns_record(ED))],
        "_dmarc.sender.test": [Record("TXT", "v=DMARC1; p=reject; sp=quarantine; pct=100")],
        "other.test": [Record("TXT", f"v=spf1 ip4:{OTHER_IP} -all")],
        "s1._domainkey.other.test": [Record("TXT", dns_record(OTHER))],
        "_dmarc.strict.test": [Record("TXT", "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=s")],
        "strict.test": [Record("TXT", f"v=spf1 ip4:{SENDER_IP} -all")],
        "s1._domainkey.strict.test": [Record("TXT", dns_record(RSA))],
        "nodmarc.test": [Record("TXT", f"v=spf1 ip4:{SENDER_IP} -all")],
        "s1._domainkey.nodmarc.test": [Record("TXT", dns_record(RSA))],
    },
    timeout=["slow._domainkey.sender.test"],
)

BULK_HEADERS = [
    ("From", "News <news@sender.test>"),
    ("To", "reader@example.org"),
    ("Subject", "This week"),
    ("Date", "Mon, 02 Feb 2026 10:00:00 +0000"),
    ("Message-ID", "<1.abc@sender.test>"),
    ("MIME-Version", "1.0"),
    ("Content-Type", "text/plain; charset=utf-8"),
    ("List-Unsubscribe", "<https://sender.test/u/t0k3n>, <mailto:u+t0k3n@sender.test>"),
    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ("Feedback-ID", "c1:news:sokures"),
]
PERSONAL = [h for h in BULK_HEADERS if not h[0].startswith(("List-", "Feedback"))]


@pytest.fixture(scope="module")
def nameserver() -> Iterator[str]:
    with DnsServerProcess(ZONE) as server:
        yield server.nameserver


def compose(headers: list[tuple[str, str]], body: bytes = b"Hello,\r\n\r\nthe news.\r\n") -> bytes:
    return b"".join(f"{n}: {v}\r\n".encode() for n, v in headers) + b"\r\n" + body


def replace(headers: list[tuple[str, str]], **values: str | None) -> list[tuple[str, str]]:
    """``From_="..."``: change a field (None drops it); names use _ for -."""
    changes = {k.rstrip("_").replace("_", "-").lower(): v for k, v in values.items()}
    out = [(n, changes.get(n.lower(), v)) for n, v in headers]
    return [(n, v) for n, v in out if v is not None]


def sign(raw: bytes, domain: str = "sender.test", selector: str = "s1", key: object = RSA) -> bytes:
    signer = DkimSigner(domain.encode(), selector.encode(), key)  # type: ignore[arg-type]
    return signer.sign_message(raw, int(time.time())) + raw


def check(nameserver: str, raw: bytes, **options: object) -> MessageReport:
    async def go() -> MessageReport:
        resolver = Resolver([nameserver], timeout=0.8)
        return await check_message(resolver, raw, **options)  # type: ignore[arg-type]

    return asyncio.run(go())


def result(report: MessageReport, check_id: str) -> CheckResult:
    return next(c for c in report.checks if c.id == check_id)


def statuses(report: MessageReport) -> dict[str, str]:
    return {c.id: c.status.value for c in report.checks}


ALL_PASS = {
    "message.rfc5322": "pass", "message.from": "pass", "message.message_id": "pass",
    "message.date": "pass", "dkim.signature": "pass", "message.spf": "pass",
    "dmarc.result": "pass", "message.arc": "pass", "message.list_unsubscribe": "pass",
    "message.auth_results": "pass",
}  # fmt: skip


@pytest.mark.parametrize(("selector", "key"), [("s1", RSA), ("ed", ED)], ids=["rsa", "ed25519"])
def test_signed_bulk_message_passes_end_to_end(nameserver: str, selector: str, key: object) -> None:
    raw = sign(compose(BULK_HEADERS), selector=selector, key=key)
    report = check(nameserver, raw, ip=SENDER_IP, helo="mta.sender.test",
                   mail_from="bounce@sender.test")  # fmt: skip
    assert statuses(report) == ALL_PASS, [c.message for c in report.checks]
    assert all(c.id in CHECKS for c in report.checks)
    (signature,) = report.dkim
    assert (signature.domain, signature.selector, signature.result) == ("sender.test", selector,
                                                                        "pass")  # fmt: skip
    assert signature.algorithm == ("rsa-sha256" if selector == "s1" else "ed25519-sha256")
    assert signature.key_bits == (2048 if selector == "s1" else 256)
    assert (report.spf.result, report.spf.domain) == ("pass", "sender.test")
    assert report.dmarc.result == "pass" and report.dmarc.policy == "reject"
    assert report.dmarc.dkim_aligned == ("sender.test",) and report.dmarc.spf_aligned
    assert report.arc.cv == "none" and report.bulk
    assert report.status is Status.PASS
    json.dumps(report.to_dict())


def test_return_path_is_the_default_mail_from(nameserver: str) -> None:
    raw = b"Return-Path: <bounce@sender.test>\r\n" + compose(PERSONAL)
    report = check(nameserver, raw, ip=SENDER_IP)
    assert report.spf.mail_from == "bounce@sender.test" and report.spf.result == "pass"
    # unsigned, but SPF aligned: DMARC passes
    assert report.dmarc.result == "pass" and report.dmarc.spf_aligned
    assert result(report, "dkim.signature").status is Status.FAIL


def test_spf_fail_dkim_still_carries_dmarc(nameserver: str) -> None:
    report = check(nameserver, sign(compose(PERSONAL)), ip=STRANGER_IP,
                   mail_from="bounce@sender.test")  # fmt: skip
    spf_check = result(report, "message.spf")
    assert spf_check.status is Status.FAIL and STRANGER_IP in spf_check.message
    assert "authorise" in spf_check.message
    assert report.dmarc.result == "pass" and not report.dmarc.spf_aligned


def test_unaligned_signature_and_spf_fail_dmarc(nameserver: str) -> None:
    raw = sign(compose(PERSONAL), domain="other.test", key=OTHER)
    report = check(nameserver, raw, ip=OTHER_IP, mail_from="bounce@other.test")
    assert report.dkim[0].result == "pass" and report.spf.result == "pass"
    assert report.dmarc.result == "fail"
    assert report.dmarc.disposition == "reject"
    found = result(report, "dmarc.result")
    assert found.status is Status.FAIL
    assert "policy reject" in found.message and "d=sender.test" in found.message


@pytest.mark.parametrize(
    ("from_domain", "signer", "expected", "policy"),
    [
        ("mail.sender.test", "sender.test", "pass", "quarantine"),  # relaxed: same org domain
        ("mail.strict.test", "strict.test", "fail", "quarantine"),  # adkim=s: exact match only
        ("strict.test", "strict.test", "pass", "reject"),
    ],
)
def test_alignment_modes_and_subdomain_policy(
    nameserver: str, from_domain: str, signer: str, expected: str, policy: str
) -> None:
    raw = sign(compose(replace(PERSONAL, From=f"<news@{from_domain}>")), domain=signer)
    report = check(nameserver, raw, ip=STRANGER_IP, mail_from=f"b@{from_domain}")
    assert report.dmarc.result == expected
    assert report.dmarc.policy == policy  # sp applies to a subdomain (RFC 7489 §6.3)
    assert report.dmarc.policy_domain == signer


def test_spf_alignment_strict(nameserver: str) -> None:
    raw = compose(replace(PERSONAL, From="<news@mail.strict.test>"))
    report = check(nameserver, raw, ip=SENDER_IP, mail_from="bounce@strict.test")
    assert report.spf.result == "pass" and not report.dmarc.spf_aligned
    assert report.dmarc.result == "fail"


def test_no_dmarc_record(nameserver: str) -> None:
    raw = sign(compose(replace(PERSONAL, From="<a@nodmarc.test>")), domain="nodmarc.test")
    report = check(nameserver, raw, ip=SENDER_IP, mail_from="a@nodmarc.test")
    assert report.dmarc.result == "none"
    found = result(report, "dmarc.result")
    assert found.status is Status.FAIL and "_dmarc.nodmarc.test" in found.message


def test_without_ip_spf_is_not_evaluated(nameserver: str) -> None:
    ar = (
        "mx.google.com; dkim=pass header.i=@sender.test header.s=s1; "
        "spf=pass smtp.mailfrom=bounce@sender.test; dmarc=pass header.from=sender.test"
    )
    report = check(nameserver, sign(compose([("Authentication-Results", ar), *PERSONAL])))
    found = result(report, "message.spf")
    assert found.status is Status.WARN and "--ip" in found.message
    assert "mx.google.com reported spf=pass" in found.message
    assert report.dmarc.result == "pass"  # carried by DKIM alone


def test_authentication_results_are_parsed_and_shown(nameserver: str) -> None:
    ar = ("mx.google.com;\r\n dkim=pass header.i=@sender.test header.s=s1;\r\n"
          " spf=softfail (not permitted) smtp.mailfrom=bounce@sender.test;\r\n"
          ' dmarc=fail reason="not aligned" header.from=sender.test')  # fmt: skip
    report = check(nameserver, compose([("Authentication-Results", ar), *PERSONAL]))
    (parsed,) = report.auth_results
    assert parsed.authserv_id == "mx.google.com"
    assert [(e.method, e.result) for e in parsed.results] == [
        ("dkim", "pass"), ("spf", "softfail"), ("dmarc", "fail")]  # fmt: skip
    assert parsed.results[1].properties == {"smtp.mailfrom": "bounce@sender.test"}
    assert parsed.results[2].reason == "not aligned"
    found = result(report, "message.auth_results")
    assert found.status is Status.PASS and "mx.google.com: dkim=pass" in found.message
    # shown, never trusted: our own verdict is computed
    assert report.dkim == () and result(report, "dkim.signature").status is Status.FAIL


def test_missing_and_broken_authentication_results(nameserver: str) -> None:
    report = check(nameserver, compose(PERSONAL))
    assert result(report, "message.auth_results").status is Status.PASS
    assert "no Authentication-Results" in result(report, "message.auth_results").message
    broken = check(nameserver, compose([("Authentication-Results", "((("), *PERSONAL]))
    assert result(broken, "message.auth_results").status is Status.WARN


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"List_Unsubscribe": None, "List_Unsubscribe_Post": None}, "without List-Unsubscribe"),
        ({"List_Unsubscribe_Post": None}, "List-Unsubscribe-Post"),
        ({"List_Unsubscribe": "<mailto:u@sender.test>"}, "no https URI"),
        ({"List_Unsubscribe_Post": "List-Unsubscribe=Yes"}, "List-Unsubscribe-Post"),
    ],
)
def test_bulk_mail_needs_one_click(
    nameserver: str, change: dict[str, str | None], words: str
) -> None:
    report = check(nameserver, sign(compose(replace(BULK_HEADERS, **change))))
    found = result(report, "message.list_unsubscribe")
    assert found.status is Status.FAIL and words in found.message
    assert found.fix is not None and "List-Unsubscribe=One-Click" in found.fix


def test_one_click_fields_must_be_signed(nameserver: str) -> None:
    """RFC 8058 §4: fields added after signing are not covered by the signature."""
    unsigned = [h for h in BULK_HEADERS if h[0].startswith("List-")]
    signed = sign(compose([h for h in BULK_HEADERS if h not in unsigned]))
    raw = compose(unsigned, b"").removesuffix(b"\r\n") + signed
    found = result(check(nameserver, raw), "message.list_unsubscribe")
    assert found.status is Status.FAIL and "RFC 8058 §4" in found.message


@pytest.mark.parametrize(
    ("headers", "bulk", "expected"),
    [
        (PERSONAL, None, False),
        ([*PERSONAL, ("Precedence", "bulk")], None, True),
        ([*PERSONAL, ("List-Id", "<news.sender.test>")], None, True),
        (BULK_HEADERS, False, False),
        (PERSONAL, True, True),
    ],
)
def test_bulk_detection(
    nameserver: str, headers: list[tuple[str, str]], bulk: bool | None, expected: bool
) -> None:
    report = check(nameserver, sign(compose(headers)), bulk=bulk)
    assert report.bulk is expected
    found = result(report, "message.list_unsubscribe")
    # the bulk cases carry no List-Unsubscribe: one-click is missing exactly when bulk
    assert found.status is (Status.FAIL if expected else Status.PASS)


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ([*PERSONAL, ("From", "Other <x@other.test>")], "2 From header fields"),
        (replace(PERSONAL, From="a@sender.test, b@sender.test"), "holds 2 addresses"),
        (replace(PERSONAL, From=None), "no From header field"),
        (replace(PERSONAL, From="alice@sender.test <bob@evil.test>"), "malformed"),
    ],
)
def test_from_must_be_one_address(
    nameserver: str, headers: list[tuple[str, str]], words: str
) -> None:
    report = check(nameserver, compose(headers), ip=SENDER_IP)
    found = result(report, "message.from")
    assert found.status is Status.FAIL and words in found.message
    assert report.from_domain is None
    assert report.dmarc.result == "permerror"
    assert result(report, "dmarc.result").status is Status.FAIL


def test_message_id_and_date(nameserver: str) -> None:
    report = check(nameserver, compose(replace(PERSONAL, Message_ID=None, Date="yesterday")))
    assert result(report, "message.message_id").status is Status.FAIL
    assert result(report, "message.date").status is Status.FAIL
    odd = check(nameserver, compose(replace(PERSONAL, Message_ID="no-angle-brackets")))
    assert result(odd, "message.message_id").status is Status.WARN


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (compose(PERSONAL).replace(b"Subject: This week\r\n", b"Subject: This week\n"), "bare LF"),
        (compose(PERSONAL).replace(b"week", b"we\rek"), "bare CR"),
        (compose([*PERSONAL, ("X-Long", "x" * 1000)]), "longer than 998"),
        (compose([*PERSONAL, ("Subject", "again")]), "2 Subject fields"),
        (compose(PERSONAL).replace(b"To:", b"To :"), "obsolete syntax"),
        (
            compose(PERSONAL).replace(
                b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nnot a field\r\n"
            ),
            "neither a header field",
        ),
    ],
    ids=["bare-lf", "bare-cr", "long-line", "two-subjects", "space-before-colon", "stray-line"],
)
def test_rfc5322_shape(nameserver: str, raw: bytes, words: str) -> None:
    report = check(nameserver, raw)
    found = result(report, "message.rfc5322")
    assert found.status is Status.FAIL and words in found.message, found.message


def test_lf_only_file_is_not_a_fault() -> None:
    headers = read_headers(compose(PERSONAL).replace(b"\r\n", b"\n"))
    assert headers.line_ends == "lf" and headers.problems == ()
    assert headers.one("subject") == "This week"


def test_folded_fields_are_unfolded() -> None:
    headers = read_headers(b"Subject: a\r\n  b\r\n\tc\r\nFrom: x@y.test\r\n\r\n")
    assert headers.all("Subject") == ["a  b\tc"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "empty"),
        (b"\r\n\r\n  \r\n", "empty"),
        (b"<html><body>hello</body></html>\n", "line 1 is not a header field"),
        (b"\x00\x01\x02binary", "not an email message"),
        (b" leading continuation\r\nFrom: a@b.test\r\n", "continuation"),
        (b"\r\nbody without headers\r\n", "no header fields"),
    ],
)
def test_not_a_message_is_a_clear_error(nameserver: str, raw: bytes, words: str) -> None:
    with pytest.raises(MessageFormatError, match=words) as caught:
        check(nameserver, raw)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_tampered_and_malformed_signatures_are_findings(nameserver: str) -> None:
    signed = sign(compose(PERSONAL))
    tampered = check(nameserver, signed.replace(b"the news", b"the fake news"))
    assert tampered.dkim[0].result == "fail" and "body hash" in tampered.dkim[0].reason
    garbage = b"DKIM-Signature: v=1; a=rsa-sha256; this is not; a signature\r\n"
    malformed = check(nameserver, garbage + compose(PERSONAL))
    assert malformed.dkim[0].result == "permerror"
    assert result(malformed, "dkim.signature").status is Status.FAIL


def test_missing_key_and_key_timeout(nameserver: str) -> None:
    raw = sign(compose(PERSONAL), selector="gone")
    missing = check(nameserver, raw)
    assert missing.dkim[0].result == "permerror"
    assert "no key record at gone._domainkey.sender.test" in missing.dkim[0].reason
    slow = check(nameserver, sign(compose(PERSONAL), selector="slow"))
    assert slow.dkim[0].result == "temperror"
    assert result(slow, "dkim.signature").status is Status.ERROR  # not "fail": not checked


def test_arc_chain_result_is_reported(nameserver: str) -> None:
    raw = compose([("ARC-Seal", "i=1; a=rsa-sha256; cv=none; d=sender.test; s=s1; b=AAAA"),
                   *PERSONAL])  # fmt: skip
    report = check(nameserver, raw)
    assert report.arc.cv == "fail"
    assert result(report, "message.arc").status is Status.FAIL
