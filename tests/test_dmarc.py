"""DMARC: the record parser (pure) and discovery + audit against a real DNS server process
serving crafted zones, one domain per finding."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliver.dns import Resolver
from lab.zones import Record, ZoneData
from probes import dmarc
from probes.catalog import CHECKS
from probes.checks import CheckResult, ProbeContext, Status
from probes.dmarc_record import NotDmarcRecord, parse, weaker
from tests.servers.dns import DnsServerProcess

RUA = "rua=mailto:d@{d}"


def _txt(*texts: str) -> list[Record]:
    return [Record("TXT", text) for text in texts]


#: domain -> the TXT records at _dmarc.<domain> ("{d}" is replaced by the domain)
DMARC_RECORDS: dict[str, tuple[str, ...]] = {
    "reject.test": ("v=DMARC1; p=reject; rua=mailto:d@{d}",),
    "quarantine.test": ("v=DMARC1; p=quarantine; rua=mailto:d@{d}",),
    "pct.test": ("v=DMARC1; p=quarantine; pct=25; rua=mailto:d@{d}; ruf=mailto:f@{d}; fo=1",),
    "none.test": ("v=DMARC1; p=none; rua=mailto:d@{d}",),
    "strict.test": ("v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=s; rua=mailto:d@{d}",),
    "org.test": ("v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@{d}",),
    "spf.test": ("v=spf1 -all",),
    "dmarc2.test": ("v=DMARC2; p=reject; rua=mailto:d@{d}",),
    "vlater.test": ("p=reject; v=DMARC1; rua=mailto:d@{d}",),
    "nosemi.test": ("v=DMARC1 p=reject; rua=mailto:d@{d}",),
    "nop.test": ("v=DMARC1; rua=mailto:d@{d}",),
    "rejct.test": ("v=DMARC1; p=rejct; rua=mailto:d@{d}",),
    "block.test": ("v=DMARC1; p=none; sp=block; rua=mailto:d@{d}",),
    "adkimx.test": ("v=DMARC1; p=reject; adkim=x; rua=mailto:d@{d}",),
    "pct150.test": ("v=DMARC1; p=quarantine; pct=150; rua=mailto:d@{d}",),
    "nomailto.test": ("v=DMARC1; p=none; rua=d@{d}",),
    "multi.test": ("v=DMARC1; p=reject; rua=mailto:d@{d}", "v=DMARC1; p=none; rua=mailto:d@{d}"),
    "norua.test": ("v=DMARC1; p=reject",),
    "ext-ok.test": ("v=DMARC1; p=quarantine; rua=mailto:agg@provider.test",),
    "ext-no.test": ("v=DMARC1; p=none; rua=mailto:agg@provider.test,mailto:d@{d}",),
    "ext-fail.test": ("v=DMARC1; p=reject; rua=mailto:agg@broken.test",),
    "bad.org.test": ("v=DMARC2; p=reject",),
    "bis.test": (
        "v=DMARC1; p=reject; np=none; psd=n; t=y; rf=afrf; ri=3600; foo=bar; rua=mailto:d@{d}",
    ),
}


def _zone() -> ZoneData:
    records: dict[str, list[Record]] = {
        f"_dmarc.{domain}": _txt(*(t.replace("{d}", domain) for t in texts))
        for domain, texts in DMARC_RECORDS.items()
    }
    records["apex.test"] = _txt("v=spf1 -all", "v=DMARC1; p=reject; rua=mailto:d@apex.test")
    records["mail.org.test"] = [Record("A", "127.0.0.9")]
    records["ext-ok.test._report._dmarc.provider.test"] = _txt("v=DMARC1")
    records["provider.test"] = [Record("MX", (10, "mx.provider.test"))]
    records["mx.provider.test"] = [Record("A", "127.0.0.10")]
    return ZoneData(
        ["test"], records,
        servfail=["_dmarc.servfail.test", "_dmarc.orgfail.test",
                  "ext-fail.test._report._dmarc.broken.test"],
        timeout=["_dmarc.slow.test"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServerProcess]:
    with DnsServerProcess(_zone()) as running:
        yield running


def _audit(server: DnsServerProcess, domain: str) -> dict[str, CheckResult]:
    resolver = Resolver([server.nameserver], timeout=0.6)
    results = asyncio.run(dmarc.audit(ProbeContext(resolver), domain))
    assert all(r.id in CHECKS for r in results)
    by_id = {r.id: r for r in results}
    assert len(by_id) == len(results), "one result per check id"
    by_id["verdict"] = CheckResult("verdict", Status.PASS, dmarc.verdict(results))
    return by_id


def _statuses(results: dict[str, CheckResult]) -> dict[str, str]:
    return {k: r.status.value for k, r in results.items() if k != "verdict"}


def _verdict(results: dict[str, CheckResult]) -> str:
    return results["verdict"].message


# --- valid records -------------------------------------------------------------------


def test_reject_passes_everything(server: DnsServerProcess) -> None:
    results = _audit(server, "reject.test")
    assert _verdict(results) == "valid"
    assert set(_statuses(results).values()) == {"pass"}
    assert list(results)[:-1] == [
        "dmarc.present", "dmarc.multiple", "dmarc.syntax", "dmarc.policy",
        "dmarc.subdomain_policy", "dmarc.alignment", "dmarc.rua", "dmarc.ruf",
        "dmarc.external_auth", "dmarc.dmarcbis",
    ]  # fmt: skip
    assert results["dmarc.present"].evidence["found_at"] == "_dmarc.reject.test"


def test_quarantine_passes_and_partial_pct_warns(server: DnsServerProcess) -> None:
    assert _statuses(_audit(server, "quarantine.test"))["dmarc.policy"] == "pass"
    results = _audit(server, "pct.test")
    policy = results["dmarc.policy"]
    assert policy.status == "warn" and "pct=25" in policy.message
    assert policy.fix == (
        "v=DMARC1; p=quarantine; rua=mailto:d@pct.test; ruf=mailto:f@pct.test; fo=1"
    )
    assert results["dmarc.ruf"].status == "pass"
    assert "pct" in results["dmarc.dmarcbis"].message and _verdict(results) == "valid"


def test_p_none_warns_with_quarantine_fix(server: DnsServerProcess) -> None:
    results = _audit(server, "none.test")
    policy = results["dmarc.policy"]
    assert policy.status == "warn" and "monitoring only" in policy.message
    assert policy.fix == "v=DMARC1; p=quarantine; rua=mailto:d@none.test"
    assert _verdict(results) == "valid"


def test_strict_alignment_and_weaker_sp(server: DnsServerProcess) -> None:
    results = _audit(server, "strict.test")
    alignment = results["dmarc.alignment"]
    assert alignment.status == "pass" and "DKIM alignment strict" in alignment.message
    sub = results["dmarc.subdomain_policy"]
    assert sub.status == "warn" and "sp=quarantine weaker than p=reject" in sub.message
    assert sub.fix == "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:d@strict.test"
    assert _verdict(results) == "valid"


def test_no_rua_warns(server: DnsServerProcess) -> None:
    rua = _audit(server, "norua.test")["dmarc.rua"]
    assert rua.status == "warn"
    assert rua.fix == "v=DMARC1; p=reject; rua=mailto:dmarc-reports@norua.test"


def test_dmarcbis_notes_are_information(server: DnsServerProcess) -> None:
    results = _audit(server, "bis.test")
    bis = results["dmarc.dmarcbis"]
    assert bis.status == "pass"
    for name in ("rf=", "ri=", "np=", "psd=", "t="):
        assert name in bis.message
    assert "foo" in results["dmarc.syntax"].evidence["unknown"]
    assert results["dmarc.subdomain_policy"].status == "warn"  # np=none under p=reject


# --- discovery -------------------------------------------------------------------------


def test_falls_back_to_the_organisational_domain(server: DnsServerProcess) -> None:
    results = _audit(server, "mail.org.test")
    present = results["dmarc.present"]
    assert present.status == "pass" and present.evidence["from_org"] is True
    assert present.evidence["found_at"] == "_dmarc.org.test"
    policy = results["dmarc.policy"]  # the org's sp applies to a subdomain
    assert policy.evidence["applied"] == "quarantine" and policy.evidence["tag"] == "sp"
    assert _verdict(results) == "valid"


def test_discover_api(server: DnsServerProcess) -> None:
    async def run() -> tuple[dmarc.DmarcDiscovery, dmarc.DmarcDiscovery]:
        resolver = Resolver([server.nameserver], timeout=1.0)
        return (await dmarc.discover(resolver, "Mail.Org.Test."),
                await dmarc.discover(resolver, "missing.test"))  # fmt: skip

    found, missing = asyncio.run(run())
    assert found.outcome == "found" and found.from_org and found.org_domain == "org.test"
    assert found.record is not None and found.record.p == "reject"
    assert found.policy_domain == "org.test" and found.domain == "mail.org.test"
    assert missing.outcome == "missing" and missing.record is None and missing.dns == "nxdomain"


def test_missing(server: DnsServerProcess) -> None:
    results = _audit(server, "sub.missing.test")
    present = results["dmarc.present"]
    assert present.status == "fail" and _verdict(results) == "missing"
    assert "_dmarc.sub.missing.test nor at _dmarc.missing.test" in present.message
    assert present.fix == "v=DMARC1; p=none; rua=mailto:dmarc-reports@sub.missing.test"
    assert list(results) == ["dmarc.present", "verdict"]


def test_record_at_apex_only_is_missing(server: DnsServerProcess) -> None:
    results = _audit(server, "apex.test")
    present = results["dmarc.present"]
    assert present.status == "fail" and _verdict(results) == "missing"
    assert "publish it at _dmarc.apex.test" in present.message
    assert present.fix == "v=DMARC1; p=reject; rua=mailto:d@apex.test"


@pytest.mark.parametrize(("domain", "words", "fix"), [
    ("spf.test", "an SPF record", "v=DMARC1; p=none; rua=mailto:dmarc-reports@spf.test"),
    ("dmarc2.test", "v=DMARC2 is not v=DMARC1", "v=DMARC1; p=reject; rua=mailto:d@dmarc2.test"),
    ("vlater.test", "v=DMARC1 is not the first tag",
     "v=DMARC1; p=reject; rua=mailto:d@vlater.test"),
])  # fmt: skip
def test_discarded_records_are_invalid(
    server: DnsServerProcess, domain: str, words: str, fix: str
) -> None:
    results = _audit(server, domain)
    present = results["dmarc.present"]
    assert present.status == "fail" and words in present.message
    assert present.fix == fix and _verdict(results) == "invalid"
    assert present.evidence["discarded"][0]["name"] == f"_dmarc.{domain}"


def test_a_discarded_record_under_a_valid_org_record(server: DnsServerProcess) -> None:
    results = _audit(server, "bad.org.test")
    present = results["dmarc.present"]
    assert present.status == "fail" and "_dmarc.org.test instead" in present.message
    assert results["dmarc.policy"].evidence["applied"] == "quarantine"
    assert _verdict(results) == "invalid"


def test_multiple_records(server: DnsServerProcess) -> None:
    results = _audit(server, "multi.test")
    assert results["dmarc.multiple"].status == "fail"
    assert "apply none" in results["dmarc.multiple"].message
    assert len(results["dmarc.multiple"].evidence["records"]) == 2
    assert _verdict(results) == "invalid"


# --- faults in the record --------------------------------------------------------------


@pytest.mark.parametrize(("domain", "check", "words", "fix"), [
    ("nosemi.test", "dmarc.syntax", "no ';' after v=DMARC1",
     "v=DMARC1; p=reject; rua=mailto:d@nosemi.test"),
    ("nop.test", "dmarc.syntax", "no p tag", "v=DMARC1; p=none; rua=mailto:d@nop.test"),
    ("rejct.test", "dmarc.syntax", "p=rejct", "v=DMARC1; p=reject; rua=mailto:d@rejct.test"),
    ("block.test", "dmarc.syntax", "sp=block", "v=DMARC1; p=none; rua=mailto:d@block.test"),
    ("adkimx.test", "dmarc.alignment", "adkim=x", "v=DMARC1; p=reject; rua=mailto:d@adkimx.test"),
    ("pct150.test", "dmarc.syntax", "pct=150",
     "v=DMARC1; p=quarantine; pct=100; rua=mailto:d@pct150.test"),
    ("nomailto.test", "dmarc.rua", "write mailto:d@nomailto.test",
     "v=DMARC1; p=none; rua=mailto:d@nomailto.test"),
])  # fmt: skip
def test_record_faults(
    server: DnsServerProcess, domain: str, check: str, words: str, fix: str
) -> None:
    results = _audit(server, domain)
    result = results[check]
    assert result.status == "fail" and words in result.message
    assert result.fix == fix and _verdict(results) == "invalid"
    failing = {k for k, v in _statuses(results).items() if v == "fail"}
    assert failing == {check}


def test_missing_p_says_what_dmarcbis_does(server: DnsServerProcess) -> None:
    results = _audit(server, "nop.test")
    syntax = results["dmarc.syntax"]
    assert "DMARCbis" in syntax.message and "p=none" in syntax.message
    assert syntax.evidence["dmarcbis"] == ["a missing p means p=none"]
    assert results["dmarc.policy"].evidence["applied"] == "none"


# --- external report destinations (RFC 7489 §7.1) ----------------------------------------


def test_external_rua_authorised(server: DnsServerProcess) -> None:
    results = _audit(server, "ext-ok.test")
    assert results["dmarc.external_auth"].status == "pass"
    assert results["dmarc.external_auth"].evidence["destinations"] == ["provider.test"]


def test_external_rua_not_authorised(server: DnsServerProcess) -> None:
    results = _audit(server, "ext-no.test")
    external = results["dmarc.external_auth"]
    assert external.status == "warn" and "provider.test" in external.message
    assert external.fix == 'ext-no.test._report._dmarc.provider.test TXT "v=DMARC1"'
    assert _verdict(results) == "valid"


def test_external_rua_lookup_failure_is_error(server: DnsServerProcess) -> None:
    results = _audit(server, "ext-fail.test")
    external = results["dmarc.external_auth"]
    assert external.status == "error" and external.evidence["dns"] == "servfail"
    assert _verdict(results) == "valid"


# --- DNS failures are errors, never "missing" --------------------------------------------


@pytest.mark.parametrize(("domain", "status"), [
    ("servfail.test", "servfail"), ("slow.test", "timeout"), ("sub.orgfail.test", "servfail"),
])  # fmt: skip
def test_dns_failures_are_errors(server: DnsServerProcess, domain: str, status: str) -> None:
    results = _audit(server, domain)
    present = results["dmarc.present"]
    assert present.status == "error" and present.evidence["dns"] == status
    assert _verdict(results) == "error" and list(results) == ["dmarc.present", "verdict"]


# --- pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(("domain", "org"), [
    ("d0001.bench.test", "bench.test"), ("bench.test", "bench.test"),
    ("a.b.example.co.uk", "example.co.uk"), ("co.uk", "co.uk"),
    ("Mail.Example.COM.", "example.com"),
])  # fmt: skip
def test_organizational_domain(domain: str, org: str) -> None:
    assert dmarc.organizational_domain(domain) == org


def test_aligned() -> None:
    assert dmarc.aligned("mail.example.com", "example.com", "r")
    assert dmarc.aligned("a.example.com", "b.example.com", "relaxed")
    assert not dmarc.aligned("mail.example.com", "example.com", "s")
    assert dmarc.aligned("Example.com.", "example.com", "strict")
    assert not dmarc.aligned("example.com", "example.net", "r")
    with pytest.raises(ValueError):
        dmarc.aligned("a", "b", "x")


def test_verdict_without_results_is_error() -> None:
    assert dmarc.verdict([]) == "error"


# --- the parser ---------------------------------------------------------------------------


def test_parse_valid_record_fields() -> None:
    record = parse(
        " v=DMARC1 ;P=Reject; sp=quarantine ; np=none; adkim=s; aspf=r; pct=50; fo=0:d; "
        "rua=mailto:a@x.test!10m, mailto:b%2Bc@y.test; ruf=mailto:f@x.test"
    )
    assert record.valid and record.intact
    assert (record.p, record.sp, record.np, record.adkim, record.aspf, record.pct) == (
        "reject", "quarantine", "none", "s", "r", 50)
    assert [u.domain for u in record.rua] == ["x.test", "y.test"]
    assert record.rua[0].size == "10m" and record.fo == "0:d"
    assert record.effective_np == "none" and record.applied_policy(subdomain=True) == "quarantine"


@pytest.mark.parametrize(("text", "kind"), [
    ("v=spf1 -all", "spf"), ("v=DMARC2; p=none", "version"), ("v=dmarc1; p=none", "version"),
    ("v=DMARC10; p=none", "version"), ("p=none; v=DMARC1", "v_not_first"), ("", "empty"),
    ("google-site-verification=abc", "other"),
])  # fmt: skip
def test_not_dmarc_records(text: str, kind: str) -> None:
    with pytest.raises(NotDmarcRecord) as caught:
        parse(text)
    assert caught.value.kind == kind


@pytest.mark.parametrize(("text", "fixed"), [
    ("v=DMARC1; p=none; p=reject", "v=DMARC1; p=none"),
    ("v=DMARC1; p=none; adkim=strict", "v=DMARC1; p=none; adkim=s"),
    ("v=DMARC1; p=none; pct=abc", "v=DMARC1; p=none"),
    ("v=DMARC1; p=none; fo=1:x", "v=DMARC1; p=none; fo=1"),
    ("v=DMARC1; p=none; rf=iodef", "v=DMARC1; p=none"),
    ("v=DMARC1; p=none; ri=-1", "v=DMARC1; p=none"),
    ("v=DMARC1; p=none; rua=https://x.test/r", "v=DMARC1; p=none"),
    ("v=DMARC1; p=none; rua=mailto:a@x.test!9q", "v=DMARC1; p=none"),
    ("v=DMARC1; p=none; rua=", "v=DMARC1; p=none"),
    ("v=DMARC1; p=none; junk; v=DMARC1", "v=DMARC1; p=none"),
    ("v=DMARC1; p=none; t=maybe; psd=x", "v=DMARC1; p=none"),
    ("v=DMARC1; p=whatever", "v=DMARC1; p=none"),
])  # fmt: skip
def test_parse_repairs(text: str, fixed: str) -> None:
    record = parse(text)
    assert not record.valid and record.fixed == fixed
    assert parse(record.fixed).valid


def test_weaker() -> None:
    assert weaker("none", "reject") and weaker("quarantine", "reject")
    assert not weaker("reject", "quarantine") and not weaker("none", "none")


_VALUES = {
    "p": ["none", "quarantine", "reject", "rejct", "", "REJECT"],
    "sp": ["none", "reject", "block"], "np": ["quarantine", "nope"],
    "adkim": ["r", "s", "x", "strict"], "aspf": ["R", "relaxed", "q"],
    "pct": ["0", "100", "150", "-3", "5x"], "fo": ["0", "1:d:s", "2", "d:z"],
    "rf": ["afrf", "iodef"], "ri": ["86400", "x"], "psd": ["y", "u", "k"], "t": ["y", "z"],
    "rua": ["mailto:a@x.test", "a@x.test", "mailto:a@x.test!10m,https://x", "mailto:bad", ","],
    "ruf": ["mailto:f@y.test!1g", "ftp://x"], "zz": ["anything", ""], "v": ["DMARC1"],
}  # fmt: skip
_tag = st.sampled_from(sorted(_VALUES)).flatmap(
    lambda name: st.tuples(st.just(name), st.sampled_from(_VALUES[name]) | st.text(max_size=12))
)


@settings(max_examples=300, deadline=None)
@given(tags=st.lists(_tag, max_size=8), separator=st.sampled_from([";", "; ", " ;", " "]))
def test_fixed_record_is_valid_and_stable(tags: list[tuple[str, str]], separator: str) -> None:
    text = "v=DMARC1" + separator + separator.join(f"{n}={v}" for n, v in tags)
    try:
        record = parse(text)
    except NotDmarcRecord:
        return
    repaired = parse(record.fixed)
    assert repaired.valid, (text, record.fixed, repaired.problems)
    assert repaired.fixed == record.fixed


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_any_text_parses_or_is_discarded(text: str) -> None:
    try:
        record = parse(text)
    except NotDmarcRecord as exc:
        assert exc.kind in ("spf", "version", "v_not_first", "other", "empty")
        if exc.fix is not None:
            assert parse(exc.fix).valid
        return
    assert parse(record.fixed).valid
