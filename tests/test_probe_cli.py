"""``sokures probe`` end to end: a domain with each kind of fault is named by its check id.

One real DNS server process serves a crafted zone with a domain per fault; the CLI audits
them all with ``--from-file --json`` once (module fixture), and each case checks the JSON.
Plus the single-domain table, exit codes, stored history, bad input, and ``rules diff``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from deliver.store import Store
from lab.zones import Record, ZoneData
from probes.catalog import CHECKS
from tests.servers.dns import DnsServerProcess
from tests.test_cli import sokures

Z = "faults.test"
#: a published RSA-768 key (public data, from the benchmark's zones): cryptography refuses to
#: generate keys under 1024 bits, and one is needed to show the "must not be used" finding
RSA768 = (
    "MHwwDQYJKoZIhvcNAQEBBQADawAwaAJhAL+ZeAgolkruqPXXbjlN91DVlK5FyFROk3rkrjZp+FxVblCQdAfWDl31"
    "Q+65F/nmoWN+RBxNtLx6cKm68K+jAaeliF42/iK9afDxFjwKiL8dZrx+YythI5cM4dvjQm16XwIDAQAB"
)


def _rsa_p(bits: int) -> str:
    key = rsa.generate_private_key(65537, bits).public_key()
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _ed25519_p() -> str:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def txt(value: str | tuple[str, ...]) -> Record:
    return Record("TXT", value)


def good(name: str, *, spf: str = "v=spf1 ip4:127.0.0.10 -all", dmarc: str | None = None,
         dkim: str | None = None, mx: bool = True) -> dict[str, list[Record]]:
    """A domain that passes everything, with one part replaced by the caller."""
    d = f"{name}.{Z}"
    records: dict[str, list[Record]] = {
        d: [txt(spf)] if spf else [],
        f"_dmarc.{d}": [txt(dmarc or f"v=DMARC1; p=reject; rua=mailto:dmarc@{d}")],
        f"s1._domainkey.{d}": [txt(dkim or f"v=DKIM1; k=rsa; p={GOOD_P}")],
    }
    if mx:
        records[d].append(Record("MX", (10, f"mx.{Z}")))
    return records


GOOD_P = _rsa_p(2048)

#: (domain label, check id, expected status)
CASES: list[tuple[str, str, str]] = [
    ("spf-none", "spf.present", "fail"),
    ("spf-multiple", "spf.multiple", "fail"),
    ("spf-syntax", "spf.syntax", "fail"),
    ("spf-lookups", "spf.lookups", "fail"),
    ("spf-void", "spf.void_lookups", "fail"),
    ("spf-loop", "spf.loop", "fail"),
    ("spf-include-missing", "spf.includes", "fail"),
    ("spf-plus-all", "spf.all", "fail"),
    ("spf-ptr", "spf.ptr", "warn"),
    ("dkim-missing", "dkim.key_present", "fail"),
    ("dkim-1024", "dkim.key_bits", "warn"),
    ("dkim-768", "dkim.key_bits", "fail"),
    ("dkim-revoked", "dkim.revoked", "fail"),
    ("dkim-testing", "dkim.testing", "warn"),
    ("dkim-bad-base64", "dkim.key_syntax", "fail"),
    ("dkim-type-mismatch", "dkim.key_type", "fail"),
    ("dmarc-missing", "dmarc.present", "fail"),
    ("dmarc-none", "dmarc.policy", "warn"),
    ("dmarc-typo", "dmarc.syntax", "fail"),
    ("dmarc-no-p", "dmarc.syntax", "fail"),
    ("dmarc-multiple", "dmarc.multiple", "fail"),
    ("dmarc-external", "dmarc.external_auth", "warn"),
    ("mx-null", "mx.null", "fail"),
    ("mx-no-address", "mx.address", "fail"),
    ("mx-cname", "mx.cname", "warn"),
    ("tlsrpt-bad", "tlsrpt.record", "fail"),
    ("mta-sts-bad", "mta_sts.record", "fail"),
    ("bimi-bad", "bimi.record", "fail"),
    ("slow", "spf.present", "error"),
    ("broken", "dmarc.present", "error"),
]


def _zone() -> ZoneData:
    records: dict[str, list[Record]] = {
        f"mx.{Z}": [Record("A", "127.0.0.25")],
        f"spf-target.{Z}": [txt("v=spf1 ip4:127.0.0.11 -all")],
        "25.0.0.127.in-addr.arpa": [Record("PTR", f"mx.{Z}")],
        "10.0.0.127.in-addr.arpa": [Record("PTR", f"out.{Z}")],
        f"out.{Z}": [Record("A", "127.0.0.10")],
        "11.0.0.127.in-addr.arpa": [Record("PTR", f"elsewhere.{Z}")],
        f"elsewhere.{Z}": [Record("A", "127.0.0.99")],
        # a DNSBL zone listing 127.0.0.11
        f"11.0.0.127.bl.{Z}": [Record("A", "127.0.0.2"), txt("listed for testing")],
    }
    for label in ("good", *{c[0] for c in CASES} - {"slow", "broken"}):
        records.update(good(label))
    # a key published under the selector `sokures init --selector s` names (another key)
    records[f"sr._domainkey.good.{Z}"] = [txt(f"v=DKIM1; k=rsa; p={GOOD_P}")]
    d = lambda label: f"{label}.{Z}"  # noqa: E731
    includes = " ".join(f"include:i{n}.{Z}" for n in range(11))
    for n in range(11):
        records[f"i{n}.{Z}"] = [txt("v=spf1 ip4:127.0.1.1 -all")]
    overrides = {
        "spf-none": good("spf-none", spf=""),
        "spf-multiple": {d("spf-multiple"): [txt("v=spf1 -all"), txt("v=spf1 ~all"),
                                             Record("MX", (10, f"mx.{Z}"))]},
        "spf-syntax": good("spf-syntax", spf="v=spf1 ipv4:127.0.0.1 -all"),
        "spf-lookups": good("spf-lookups", spf=f"v=spf1 {includes} -all"),
        "spf-void": good("spf-void", spf=f"v=spf1 a:v1.{Z} a:v2.{Z} a:v3.{Z} -all"),
        "spf-loop": good("spf-loop", spf=f"v=spf1 include:spf-loop.{Z} -all"),
        "spf-include-missing": good("spf-include-missing",
                                    spf=f"v=spf1 include:nothing-here.{Z} -all"),
        "spf-plus-all": good("spf-plus-all", spf="v=spf1 +all"),
        "spf-ptr": good("spf-ptr", spf="v=spf1 ptr -all"),
        "dkim-1024": good("dkim-1024", dkim=f"v=DKIM1; k=rsa; p={_rsa_p(1024)}"),
        "dkim-768": good("dkim-768", dkim=f"v=DKIM1; k=rsa; p={RSA768}"),
        "dkim-revoked": good("dkim-revoked", dkim="v=DKIM1; k=rsa; p="),
        "dkim-testing": good("dkim-testing", dkim=f"v=DKIM1; t=y; k=rsa; p={GOOD_P}"),
        "dkim-bad-base64": good("dkim-bad-base64", dkim="v=DKIM1; k=rsa; p=!!notbase64!!"),
        "dkim-type-mismatch": good("dkim-type-mismatch", dkim=f"v=DKIM1; k=ed25519; p={GOOD_P}"),
        "dmarc-none": good("dmarc-none", dmarc=f"v=DMARC1; p=none; rua=mailto:d@{d('good')}"),
        "dmarc-typo": good("dmarc-typo", dmarc="v=DMARC1; p=rejct"),
        "dmarc-no-p": good("dmarc-no-p", dmarc=f"v=DMARC1; rua=mailto:d@{d('dmarc-no-p')}"),
        "dmarc-external": good("dmarc-external",
                               dmarc="v=DMARC1; p=reject; rua=mailto:reports@rua.example"),
        "mx-cname": {d("mx-cname"): [txt("v=spf1 -all"), Record("MX", (10, f"alias.{Z}"))],
                     f"alias.{Z}": [Record("CNAME", f"mx.{Z}")]},
        "mx-null": {d("mx-null"): [txt("v=spf1 -all"), Record("MX", (0, "."))]},
        "mx-no-address": {d("mx-no-address"): [txt("v=spf1 -all"),
                                               Record("MX", (10, f"ghost.{Z}"))]},
        "tlsrpt-bad": {f"_smtp._tls.{d('tlsrpt-bad')}": [txt("v=TLSRPTv1; rua=ftp://x")]},
        "mta-sts-bad": {f"_mta-sts.{d('mta-sts-bad')}": [txt("v=STSv1")]},
        "bimi-bad": {f"default._bimi.{d('bimi-bad')}": [txt("v=BIMI1; l=http://x/logo.png")]},
    }
    for extra in overrides.values():
        for name, value in extra.items():
            records[name] = value
    records.pop(f"_dmarc.{d('dmarc-missing')}")
    records.pop(f"s1._domainkey.{d('dkim-missing')}")
    dup = records[f"_dmarc.{d('dmarc-multiple')}"]
    records[f"_dmarc.{d('dmarc-multiple')}"] = [*dup, txt("v=DMARC1; p=none")]
    return ZoneData(
        [Z, "in-addr.arpa", "rua.example", "example"], records,
        timeout={d("slow")}, servfail={f"_dmarc.{d('broken')}"},
    )


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServerProcess]:
    with DnsServerProcess(_zone()) as server:
        yield server


@pytest.fixture(scope="module")
def audited(dns: DnsServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("probe")
    names = ["good", *dict.fromkeys(c[0] for c in CASES)]
    (work / "domains.txt").write_text("".join(f"{n}.{Z}\n" for n in names))
    result = sokures(work, "probe", "--from-file", "domains.txt", "--nameserver",
                     dns.nameserver, "--selector", "s1", "--json", "--skip", "dnsbl",
                     env={"SOKURES_PROBES_DNS_TIMEOUT": "1s"})
    assert result.code == 1, result.err  # findings
    reports = [json.loads(line) for line in result.out.splitlines()]
    assert [r["domain"] for r in reports] == [f"{n}.{Z}" for n in names]  # input order kept
    return {"reports": {r["domain"]: r for r in reports}, "work": work}


def _checks(report: dict[str, Any], check_id: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["id"] == check_id]


@pytest.mark.parametrize(("label", "check_id", "status"), CASES,
                         ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_each_fault_is_named_by_its_check_id(
    audited: dict[str, Any], label: str, check_id: str, status: str
) -> None:
    report = audited["reports"][f"{label}.{Z}"]
    found = _checks(report, check_id)
    assert found, f"{check_id} not reported: {[c['id'] for c in report['checks']]}"
    assert status in {c["status"] for c in found}, found
    for check in found:
        assert check["message"], check


def test_a_domain_without_faults_passes_every_dns_check(audited: dict[str, Any]) -> None:
    report = audited["reports"][f"good.{Z}"]
    bad = [c for c in report["checks"] if c["status"] in ("fail", "error")]
    assert not bad, bad
    assert {"spf.present", "dkim.key_present", "dmarc.present", "mx.present"} <= {
        c["id"] for c in report["checks"]}


def test_every_reported_id_is_in_the_catalog_and_evidence_is_json(
    audited: dict[str, Any]
) -> None:
    for report in audited["reports"].values():
        assert report["status"] in ("pass", "warn", "fail", "error")
        for check in report["checks"]:
            assert check["id"] in CHECKS, check["id"]
            assert isinstance(check["evidence"], dict)


def test_a_timeout_is_an_error_never_a_missing_record(audited: dict[str, Any]) -> None:
    report = audited["reports"][f"slow.{Z}"]
    spf = _checks(report, "spf.present")
    assert {c["status"] for c in spf} == {"error"}
    # the name itself never answers; _dmarc.slow... does (NXDOMAIN), so only these are errors
    for check_id in ("spf.present", "mx.present"):
        assert {c["status"] for c in _checks(report, check_id)} == {"error"}, check_id


def test_compliance_is_evaluated_against_each_providers_latest_rulebook(
    audited: dict[str, Any]
) -> None:
    good_report = audited["reports"][f"good.{Z}"]
    assert {k.split("@")[0] for k in good_report["compliance"]} == {"gmail", "yahoo", "outlook"}
    for result in good_report["compliance"].values():
        assert result["status"] in ("pass", "warn"), result
    spf_none = audited["reports"][f"spf-none.{Z}"]
    gmail = next(v for k, v in spf_none["compliance"].items() if k.startswith("gmail"))
    assert gmail["status"] == "fail" and gmail["failed"]


def test_the_flattened_spf_record_is_offered_when_over_the_lookup_limit(
    audited: dict[str, Any]
) -> None:
    (check,) = [c for c in _checks(audited["reports"][f"spf-lookups.{Z}"], "spf.lookups")
                if c["status"] == "fail"]
    assert check["fix"] and check["fix"].startswith("v=spf1 ")
    assert "include:" not in check["fix"]


def test_reports_are_stored_with_history(audited: dict[str, Any]) -> None:
    store = Store.open(f"sqlite:///{audited['work'] / 'sokures.db'}")
    try:
        (latest,) = store.probes.history(f"spf-none.{Z}")
        assert latest.status == "fail"
        assert any(c["id"] == "spf.present" and c["status"] == "fail" for c in latest.checks)
        counts = store.probes.failing_counts()
        assert counts[("spf.present", "fail")] >= 1
    finally:
        store.close()


def test_one_domain_prints_a_table_with_ids_and_fixes(dns: DnsServerProcess,
                                                       tmp_path: Path) -> None:
    result = sokures(tmp_path, "probe", f"spf-plus-all.{Z}", "-n", dns.nameserver, "-s", "s1",
                     "--ip", "127.0.0.10", "--rulebook", "gmail@2024-02",
                     "--skip", "dnsbl", "--no-store")
    assert result.code == 1, result.err
    assert "spf.all" in result.out and "fail" in result.out
    assert "gmail@2024-02" in result.out
    assert not (tmp_path / "sokures.db").exists()


def test_sending_ips_get_ptr_fcrdns_and_dnsbl_checks(dns: DnsServerProcess,
                                                      tmp_path: Path) -> None:
    result = sokures(tmp_path, "probe", f"good.{Z}", "-n", dns.nameserver, "-s", "s1",
                     "--ip", "127.0.0.10", "--ip", "127.0.0.11", "--json", "--no-store",
                     env={"SOKURES_PROBES_DNSBL_IP_ZONES": f"bl.{Z}",
                          "SOKURES_PROBES_DNSBL_DOMAIN_ZONES": ""})
    report = json.loads(result.out)
    fcrdns = _checks(report, "ptr.fcrdns")
    assert "fail" in {c["status"] for c in fcrdns}, fcrdns  # .11's PTR name points elsewhere
    listed = _checks(report, "dnsbl.listed")
    assert {c["status"] for c in listed} == {"fail"}, listed
    assert "127.0.0.11" in json.dumps(listed)
    spf = _checks(report, "spf.result")
    assert {c["status"] for c in spf} >= {"pass", "fail"}, spf  # .10 allowed, .11 not


@pytest.mark.parametrize(
    "args",
    [
        ("probe",),
        ("probe", "not a domain"),
        ("probe", "user@example.com"),
        ("probe", "example.com", "--skip", "nonsense"),
        ("probe", "example.com", "--ip", "300.1.1.1"),
        ("probe", "example.com", "--rulebook", "gmail@1999-01"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = sokures(tmp_path, *args)
    assert result.code == 2, (result.out, result.err)
    assert result.err.strip()


def test_bad_lines_in_a_domain_file_are_named_and_the_rest_audited(
    dns: DnsServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "d.txt").write_text(f"# our domains\ngood.{Z}\nnot a domain\n\nspf-none.{Z}\n")
    result = sokures(tmp_path, "probe", "-f", "d.txt", "-n", dns.nameserver, "--json",
                     "--no-store", "--skip", "dnsbl")
    assert result.code == 2
    assert "d.txt:3:" in result.err
    assert [json.loads(line)["domain"] for line in result.out.splitlines()] == [
        f"good.{Z}", f"spf-none.{Z}"]


def test_rules_list_and_diff(tmp_path: Path) -> None:
    listed = sokures(tmp_path, "rules", "list", "--json")
    assert listed.code == 0, listed.err
    ids = {b["id"] for b in json.loads(listed.out)}
    assert {"gmail@2024-02", "gmail@2025-11", "yahoo@2024-02", "outlook@2025-05"} <= ids
    diff = sokures(tmp_path, "rules", "diff", "gmail@2024-02", "gmail@2025-11")
    assert diff.code == 0, diff.err
    assert "reject" in diff.out and "tempfail" in diff.out
    data = json.loads(sokures(tmp_path, "rules", "diff", "gmail@2024-02", "gmail@2025-11",
                              "--json").out)
    assert data["changes"]


def test_rules_diff_names_the_domains_a_change_breaks(dns: DnsServerProcess,
                                                     tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text(f"good.{Z}\ndmarc-missing.{Z}\n")
    result = sokures(tmp_path, "rules", "diff", "gmail@2024-02", "gmail@2025-11",
                     "--domains", "d.txt", "-n", dns.nameserver, "-s", "s1", "--json")
    assert result.code == 1, result.err
    data = json.loads(result.out)
    assert data["domains"] == 2
    # no DMARC record: accepted in 2024 (no reply), rejected with 5.7.40 since 2025-11
    assert "auth.dmarc_record" in data["escalated"][f"dmarc-missing.{Z}"]
    assert f"good.{Z}" not in data["escalated"] and f"good.{Z}" not in data["broken"]


def test_a_stricter_rulebook_file_breaks_the_domains_it_should(dns: DnsServerProcess,
                                                              tmp_path: Path) -> None:
    """A new rule is a new data file: require DMARC at enforcement, see p=none domains break."""
    from probes.rulebook import load_rulebook

    shipped = load_rulebook("gmail@2025-11").path
    assert shipped is not None
    text = shipped.read_text()
    stricter = text.replace('version = "2025-11"', 'version = "2026-06"') + """
[[requirement]]
id = "auth.dmarc_enforced"
title = "DMARC at quarantine or reject"
applies_to = "bulk"
checks = ["dmarc.policy"]
accept = ["pass"]
[requirement.reply]
code = 550
enhanced = "5.7.26"
text = "DMARC policy must be quarantine or reject"
disposition = "reject"
text_verbatim = false
"""
    book = tmp_path / "gmail@2026-06.toml"
    book.write_text(stricter)
    (tmp_path / "d.txt").write_text(f"good.{Z}\ndmarc-none.{Z}\n")
    result = sokures(tmp_path, "rules", "diff", "gmail@2025-11", str(book),
                     "--domains", "d.txt", "-n", dns.nameserver, "-s", "s1", "--json")
    assert result.code == 1, result.err
    data = json.loads(result.out)
    assert data["broken"] == {f"dmarc-none.{Z}": ["auth.dmarc_enforced"]}


# ------------------------------------------------------------- check-message --
def _signed_message(domain: str) -> bytes:
    from deliver.dkim import DkimSigner

    headers = (
        f"From: News <news@{domain}>\r\nTo: reader@example.org\r\nSubject: Hi\r\n"
        f"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\nMessage-ID: <1.x@{domain}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    )
    raw = headers.encode() + b"\r\nHello.\r\n"
    signer = DkimSigner(domain.encode(), b"s1", SIGNING_KEY)
    return signer.sign_message(raw, 1_770_000_000) + raw


def _signing_zone() -> ZoneData:
    from deliver.dkim import dns_record

    d = f"signed.{Z}"
    return ZoneData([Z], {
        d: [txt("v=spf1 ip4:127.0.0.10 -all")],
        f"s1._domainkey.{d}": [txt(dns_record(SIGNING_KEY))],
        f"_dmarc.{d}": [txt("v=DMARC1; p=reject")],
    })  # fmt: skip


def _key() -> Any:
    from deliver.dkim import generate_key

    return generate_key("rsa-sha256")


SIGNING_KEY = _key()


def test_check_message_gives_the_authentication_verdict(tmp_path: Path) -> None:
    with DnsServerProcess(_signing_zone()) as server:
        (tmp_path / "m.eml").write_bytes(_signed_message(f"signed.{Z}"))
        result = sokures(tmp_path, "check-message", "m.eml", "--ip", "127.0.0.10",
                         "--mail-from", f"bounce@signed.{Z}", "-n", server.nameserver,
                         "--json", "--not-bulk")
        data = json.loads(result.out)
        status = {c["id"]: c["status"] for c in data["checks"]}
        assert status["dkim.signature"] == "pass", data
        assert status["message.spf"] == "pass", data
        assert status["dmarc.result"] == "pass", data
        assert result.code == 0, result.err
        # the same message from an IP the SPF record does not list, body altered
        tampered = _signed_message(f"signed.{Z}").replace(b"Hello.", b"Hello!")
        (tmp_path / "bad.eml").write_bytes(tampered)
        bad = sokures(tmp_path, "check-message", "bad.eml", "--ip", "127.0.0.99",
                      "--mail-from", f"bounce@signed.{Z}", "-n", server.nameserver)
        assert bad.code == 1
        assert "dkim.signature" in bad.out and "dmarc.result" in bad.out
        store = Store.open(f"sqlite:///{tmp_path / 'sokures.db'}")
        try:
            assert store.probes.failing_counts()[("dmarc.result", "fail")] == 1
        finally:
            store.close()


@pytest.mark.parametrize("content", [b"", b"\x00\x01 not a message at all"])
def test_check_message_refuses_what_is_not_a_message(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.eml").write_bytes(content)
    result = sokures(tmp_path, "check-message", "x.eml", "--no-store")
    assert result.code == 2, (result.out, result.err)
    assert result.error_line


def test_probe_compares_the_published_key_with_the_one_in_sokures_toml(
    dns: DnsServerProcess, tmp_path: Path
) -> None:
    """`init` made new keys; DNS still publishes another: dkim.key_match fails with the fix."""
    init = sokures(tmp_path, "init", "--domain", f"good.{Z}", "--selector", "s")
    assert init.code == 0, init.err
    result = sokures(tmp_path, "probe", f"good.{Z}", "-n", dns.nameserver, "-s", "sr",
                     "-s", "se", "--json", "--no-store", "--skip", "dnsbl")
    report = json.loads(result.out)
    by_selector = {(c["id"], c["evidence"].get("selector")): c for c in report["checks"]}
    mismatch = by_selector[("dkim.key_match", "sr")]
    assert mismatch["status"] == "fail" and "p=" in (mismatch.get("fix") or ""), mismatch
    missing = by_selector[("dkim.key_present", "se")]
    assert missing["status"] == "fail" and "p=" in (missing.get("fix") or ""), missing
    for pem in (tmp_path / "keys").glob("*.pem"):
        body = pem.read_text().splitlines()[1]
        assert body not in result.out and body not in result.err


def test_worker_processes_give_the_same_reports_in_the_same_order(
    audited: dict[str, Any], dns: DnsServerProcess
) -> None:
    work = audited["work"]
    result = sokures(work, "probe", "--from-file", "domains.txt", "--nameserver",
                     dns.nameserver, "--selector", "s1", "--json", "--skip", "dnsbl",
                     "--workers", "3", env={"SOKURES_PROBES_DNS_TIMEOUT": "1s"})
    assert result.code == 1, result.err
    reports = [json.loads(line) for line in result.out.splitlines()]
    single = audited["reports"]
    assert [r["domain"] for r in reports] == list(single)

    def outcome(report: dict[str, Any]) -> list[tuple[str, str]]:
        return [(c["id"], c["status"]) for c in report["checks"]]

    assert [outcome(r) for r in reports] == [outcome(single[r["domain"]]) for r in reports]
    store = Store.open(f"sqlite:///{work / 'sokures.db'}")
    try:  # each worker stored its share under the one run: two reports per domain now
        assert len(store.probes.history(f"spf-none.{Z}")) == 2
    finally:
        store.close()


def test_selectors_can_come_from_a_sample_message(dns: DnsServerProcess, tmp_path: Path) -> None:
    sample = (
        f"DKIM-Signature: v=1; a=rsa-sha256; d=good.{Z};\r\n s=s1; h=from; bh=x; b=y\r\n"
        f"DKIM-Signature: v=1; a=rsa-sha256; d=other.example; s=elsewhere; bh=x; b=y\r\n"
        f"From: a@good.{Z}\r\n\r\nbody\r\n"
    )
    (tmp_path / "sample.eml").write_text(sample)
    result = sokures(tmp_path, "probe", f"good.{Z}", "-n", dns.nameserver, "--sample",
                     "sample.eml", "--json", "--no-store", "--skip", "dnsbl")
    report = json.loads(result.out)
    present = _checks(report, "dkim.key_present")
    assert [(c["status"], c["evidence"].get("selector")) for c in present] == [("pass", "s1")]
    (tmp_path / "none.eml").write_text("From: a@b.example\r\n\r\nbody\r\n")
    refused = sokures(tmp_path, "probe", f"good.{Z}", "--sample", "none.eml", "--no-store")
    assert refused.code == 2 and "no DKIM-Signature" in refused.error_line
