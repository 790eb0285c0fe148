"""probes.tlsrpt, probes.bimi and probes.dnsbl against a real DNS server process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest

from deliver.dns import Resolver
from lab.zones import Record, ZoneData
from probes import bimi, dnsbl, tlsrpt
from probes.checks import CheckResult, ProbeContext, ProbeOptions, Status
from tests.probe_helpers import by_id
from tests.servers.dns import DnsServerProcess

LOGO = "https://brand.test/logo.svg"
VMC = "https://brand.test/vmc.pem"
V6 = "2001:db8::1"
V6_NIBBLES = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"


def txt(text: str) -> Record:
    return Record("TXT", text)


def a(address: str) -> Record:
    return Record("A", address)


RECORDS: dict[str, list[Record]] = {
    # TLS-RPT
    "_smtp._tls.mailto.test": [txt("v=TLSRPTv1; rua=mailto:tls@mailto.test")],
    "_smtp._tls.both.test": [txt("v=TLSRPTv1;rua=mailto:a@both.test, https://r.test/tls;")],
    "_smtp._tls.norua.test": [txt("v=TLSRPTv1;")],
    "_smtp._tls.ftp.test": [txt("v=TLSRPTv1; rua=ftp://r.test/")],
    "_smtp._tls.badmail.test": [txt("v=TLSRPTv1; rua=mailto:nobody")],
    "_smtp._tls.two.test": [
        txt("v=TLSRPTv1; rua=mailto:a@two.test"),
        txt("v=TLSRPTv1; rua=mailto:b@two.test"),
    ],
    "_smtp._tls.other.test": [txt("v=spf1 -all")],
    # BIMI
    "default._bimi.brand.test": [txt(f"v=BIMI1; l={LOGO}; a={VMC}")],
    "_dmarc.brand.test": [txt("v=DMARC1; p=reject; rua=mailto:d@brand.test")],
    "default._bimi.sub.brand.test": [txt(f"v=BIMI1; l={LOGO};")],
    "default._bimi.weak.test": [txt(f"v=BIMI1; l={LOGO}")],
    "_dmarc.weak.test": [txt("v=DMARC1; p=quarantine; pct=50")],
    "default._bimi.monitor.test": [txt(f"v=BIMI1; l={LOGO}")],
    "_dmarc.monitor.test": [txt("v=DMARC1; p=none")],
    "default._bimi.subnone.test": [txt(f"v=BIMI1; l={LOGO}")],
    "_dmarc.subnone.test": [txt("v=DMARC1; p=reject; sp=none")],
    "default._bimi.nodmarc.test": [txt(f"v=BIMI1; l={LOGO}")],
    "default._bimi.http.test": [txt("v=BIMI1; l=http://brand.test/logo.svg")],
    "default._bimi.png.test": [txt("v=BIMI1; l=https://brand.test/logo.png")],
    "_dmarc.png.test": [txt("v=DMARC1; p=reject")],
    "default._bimi.declined.test": [txt("v=BIMI1; l=;")],
    "default._bimi.twice.test": [txt(f"v=BIMI1; l={LOGO}"), txt(f"v=BIMI1; l={LOGO};")],
    "default._bimi.dmarcfail.test": [txt(f"v=BIMI1; l={LOGO}")],
    "default._bimi.dup.test": [txt(f"v=BIMI1; l={LOGO}")],
    "_dmarc.dup.test": [txt("v=DMARC1; p=reject"), txt("v=DMARC1; p=quarantine")],
    # DNSBL: ip.bl.test lists 192.0.2.2 and the IPv6 address, refuses and misbehaves for others
    "2.2.0.192.ip.bl.test": [a("127.0.0.2"), txt("listed: see https://bl.test/192.0.2.2")],
    f"{V6_NIBBLES}.ip.bl.test": [a("127.0.0.3")],
    "3.2.0.192.ip.bl.test": [a("127.255.255.254")],
    "4.2.0.192.ip.bl.test": [a("127.0.0.1")],
    "5.2.0.192.ip.bl.test": [a("198.51.100.1")],
    "listed.test.dom.bl.test": [a("127.0.1.2")],
}
ZONE = ZoneData(
    ["test"],
    RECORDS,
    servfail=[
        "_smtp._tls.broken.test",
        "default._bimi.broken.test",
        "_dmarc.dmarcfail.test",
        "6.2.0.192.ip.bl.test",
    ],
)


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServerProcess]:
    with DnsServerProcess(ZONE) as process:
        yield process


Audit = Callable[[ProbeContext, str], Awaitable[list[CheckResult]]]


def run(
    server: DnsServerProcess, audit: Audit, domain: str, options: ProbeOptions | None = None
) -> dict[str, CheckResult]:
    async def go() -> list[CheckResult]:
        resolver = Resolver([server.nameserver], timeout=2.0)
        try:
            return await audit(ProbeContext(resolver, options or ProbeOptions()), domain)
        finally:
            resolver.close()

    return by_id(asyncio.run(go()))


# --- TLS-RPT ---------------------------------------------------------------------------


def tls(server: DnsServerProcess, domain: str) -> CheckResult:
    results = run(server, tlsrpt.audit, domain)
    assert list(results) == ["tlsrpt.record"]
    return results["tlsrpt.record"]


def test_tlsrpt_valid_records(server: DnsServerProcess):
    result = tls(server, "mailto.test")
    assert result.status is Status.PASS and result.evidence["rua"] == ["mailto:tls@mailto.test"]
    result = tls(server, "both.test")
    assert result.evidence["rua"] == ["mailto:a@both.test", "https://r.test/tls"]


def test_tlsrpt_missing_warns_with_a_record_to_publish(server: DnsServerProcess):
    for domain in ("none.test", "other.test"):
        result = tls(server, domain)
        assert result.status is Status.WARN and "MTA-STS" in result.message
        assert result.fix == f'_smtp._tls.{domain}. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"'


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("norua.test", "rua= field is missing"),
        ("ftp.test", "must be mailto: or https:"),
        ("badmail.test", "not a mailto: URI with an e-mail address"),
        ("two.test", "2 TLS-RPT records"),
    ],
)
def test_tlsrpt_malformed_fails(server: DnsServerProcess, domain: str, reason: str):
    result = tls(server, domain)
    assert result.status is Status.FAIL and reason in result.message


def test_tlsrpt_lookup_failure_is_an_error(server: DnsServerProcess):
    assert tls(server, "broken.test").status is Status.ERROR


@pytest.mark.parametrize(
    ("record", "ok"),
    [
        ("v=TLSRPTv1; rua=mailto:a@b.test,mailto:c@d.test", True),
        ("v=TLSRPTv1; rua=https://r.test/report; ext=1", True),
        ("v=TLSRPTv2; rua=mailto:a@b.test", False),
        ("rua=mailto:a@b.test; v=TLSRPTv1", False),
        ("v=TLSRPTv1; rua=mailto:a@b.test,", False),
        ("v=TLSRPTv1; rua=https:///nohost", False),
        ("v=TLSRPTv1; rua=mailto:a@b.test; rua=mailto:c@d.test", False),
    ],
)
def test_tlsrpt_parse_record(record: str, ok: bool):
    _, reason = tlsrpt.parse_record(record)
    assert (reason is None) is ok


# --- BIMI ------------------------------------------------------------------------------


def test_bimi_missing_passes_as_optional(server: DnsServerProcess):
    results = run(server, bimi.audit, "plain.test")
    assert list(results) == ["bimi.record"]
    assert results["bimi.record"].status is Status.PASS
    assert "optional" in results["bimi.record"].message


def test_bimi_valid_with_dmarc_reject(server: DnsServerProcess):
    results = run(server, bimi.audit, "brand.test")
    assert results["bimi.record"].status is Status.PASS
    assert results["bimi.record"].evidence["authority"] == VMC
    assert results["bimi.dmarc"].status is Status.PASS


def test_bimi_subdomain_uses_the_parents_dmarc(server: DnsServerProcess):
    results = run(server, bimi.audit, "sub.brand.test")
    assert results["bimi.dmarc"].status is Status.PASS
    assert results["bimi.dmarc"].evidence["dmarc_domain"] == "brand.test"


def test_bimi_subdomain_without_a_record_uses_the_organisational_domains(
    server: DnsServerProcess,
):
    results = run(server, bimi.audit, "news.brand.test")
    assert results["bimi.record"].evidence["name"] == "default._bimi.brand.test"
    assert results["bimi.dmarc"].status is Status.PASS


@pytest.mark.parametrize(
    ("domain", "words", "fix"),
    [
        ("weak.test", "p=quarantine with pct=50", '_dmarc.weak.test. TXT "v=DMARC1; p=quarantine"'),
        ("monitor.test", "p=none", '_dmarc.monitor.test. TXT "v=DMARC1; p=quarantine"'),
        ("subnone.test", "sp=none", '_dmarc.subnone.test. TXT "v=DMARC1; p=reject"'),
        ("nodmarc.test", "no DMARC record", '_dmarc.nodmarc.test. TXT "v=DMARC1; p=quarantine"'),
    ],
)
def test_bimi_needs_dmarc_at_enforcement(
    server: DnsServerProcess, domain: str, words: str, fix: str
):
    results = run(server, bimi.audit, domain)
    assert results["bimi.record"].status is Status.PASS
    result = results["bimi.dmarc"]
    assert result.status is Status.FAIL and words in result.message
    assert result.fix == fix


def test_bimi_with_several_dmarc_records_fails(server: DnsServerProcess):
    result = run(server, bimi.audit, "dup.test")["bimi.dmarc"]
    assert result.status is Status.FAIL and "2 DMARC records" in result.message


def test_bimi_dmarc_lookup_failure_is_an_error(server: DnsServerProcess):
    assert run(server, bimi.audit, "dmarcfail.test")["bimi.dmarc"].status is Status.ERROR


def test_bimi_malformed_or_duplicated_fails(server: DnsServerProcess):
    result = run(server, bimi.audit, "http.test")["bimi.record"]
    assert result.status is Status.FAIL and "must be an https: URL" in result.message
    result = run(server, bimi.audit, "twice.test")["bimi.record"]
    assert result.status is Status.FAIL and "2 BIMI records" in result.message


def test_bimi_logo_not_svg_warns(server: DnsServerProcess):
    results = run(server, bimi.audit, "png.test")
    assert results["bimi.record"].status is Status.WARN
    assert "does not end in .svg" in results["bimi.record"].message


def test_bimi_declination_passes_without_dmarc_check(server: DnsServerProcess):
    results = run(server, bimi.audit, "declined.test")
    assert list(results) == ["bimi.record"]
    assert "declines" in results["bimi.record"].message


def test_bimi_lookup_failure_is_an_error(server: DnsServerProcess):
    assert run(server, bimi.audit, "broken.test")["bimi.record"].status is Status.ERROR


@pytest.mark.parametrize(
    ("record", "ok"),
    [
        (f"v=BIMI1; l={LOGO}; a={VMC}", True),
        (f"v=BIMI1;l={LOGO};", True),
        (f"v=BIMI1; l={LOGO}; x=unknown", True),
        (f"v=BIMI1; a={VMC}", True),
        ("v=BIMI1", False),
        (f"l={LOGO}; v=BIMI1", False),
        (f"v=BIMI1; l={LOGO}; l={LOGO}", False),
        ("v=BIMI1; l=https://", False),
        (f"v=BIMI1; l={LOGO}; a=http://brand.test/vmc.pem", False),
    ],
)
def test_bimi_parse_record(record: str, ok: bool):
    parsed, reason, _ = bimi.parse_record(record)
    assert (parsed is not None) is ok and (reason is None) is ok


# --- DNSBL -----------------------------------------------------------------------------


def blocklists(
    server: DnsServerProcess,
    domain: str = "clean.test",
    *ips: str,
    ip_zones: tuple[str, ...] = ("ip.bl.test",),
    domain_zones: tuple[str, ...] = ("dom.bl.test",),
) -> CheckResult | None:
    options = ProbeOptions(ips=ips, dnsbl_ip_zones=ip_zones, dnsbl_domain_zones=domain_zones)
    results = run(server, dnsbl.audit, domain, options)
    assert set(results) <= {"dnsbl.listed"}
    return results.get("dnsbl.listed")


def test_dnsbl_no_zones_no_result(server: DnsServerProcess):
    assert blocklists(server, "listed.test", "192.0.2.2", ip_zones=(), domain_zones=()) is None


def test_dnsbl_clean(server: DnsServerProcess):
    result = blocklists(server, "clean.test", "192.0.2.1", "2001:db8::2")
    assert result is not None and result.status is Status.PASS
    assert result.evidence["queries"] == 3


def test_dnsbl_listed_ip_fails_with_the_lists_reason(server: DnsServerProcess):
    result = blocklists(server, "clean.test", "192.0.2.1", "192.0.2.2")
    assert result is not None and result.status is Status.FAIL
    [listing] = result.evidence["listings"]
    assert listing == {
        "ip": "192.0.2.2",
        "zone": "ip.bl.test",
        "query": "2.2.0.192.ip.bl.test",
        "outcome": "listed",
        "detail": "127.0.0.2",
        "reason": "listed: see https://bl.test/192.0.2.2",
    }
    assert "https://bl.test/192.0.2.2" in result.message


def test_dnsbl_ipv6_nibbles_and_domain_listing(server: DnsServerProcess):
    result = blocklists(server, "listed.test", V6)
    assert result is not None and result.status is Status.FAIL
    listed = {(e.get("ip") or e.get("domain")): e["detail"] for e in result.evidence["listings"]}
    assert listed == {V6: "127.0.0.3", "listed.test": "127.0.1.2"}


@pytest.mark.parametrize(
    ("ip", "words"),
    [
        ("192.0.2.3", "public/open resolver"),
        ("192.0.2.4", "refused the query"),
        ("192.0.2.5", "outside 127.0.0.0/8"),
        ("192.0.2.6", "servfail"),
        ("not-an-ip", "not an IP address"),
    ],
)
def test_dnsbl_refusals_and_failures_are_errors(server: DnsServerProcess, ip: str, words: str):
    result = blocklists(server, "clean.test", ip)
    assert result is not None and result.status is Status.ERROR
    assert words in result.message
    assert result.evidence["listings"] == []


def test_dnsbl_a_listing_wins_over_an_unanswered_query(server: DnsServerProcess):
    result = blocklists(server, "clean.test", "192.0.2.2", "192.0.2.3")
    assert result is not None and result.status is Status.FAIL
    assert len(result.evidence["not_checked"]) == 1


def test_dnsbl_query_names_and_codes():
    assert dnsbl.query_name("192.0.2.1", "zen.example.") == "1.2.0.192.zen.example"
    assert dnsbl.query_name(V6, "bl.example") == f"{V6_NIBBLES}.bl.example"
    assert dnsbl.query_name("example.test", "dbl.example") == "example.test.dbl.example"
    assert dnsbl.classify(["127.0.0.2", "127.0.0.10"]) == ("listed", "127.0.0.2, 127.0.0.10")
    assert dnsbl.classify(["127.255.255.255"])[0] == "refused"
    assert dnsbl.classify(["127.255.255.252"])[0] == "refused"
    assert dnsbl.classify(["127.0.1.255"])[0] == "refused"
    assert dnsbl.classify(["10.0.0.1"])[0] == "bogus"
