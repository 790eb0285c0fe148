"""probes.ptr (sending IPs' reverse DNS, FCrDNS) against a real DNS server process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from deliver.dns import DnsStatus, Resolver
from lab.zones import Record, ZoneData
from probes import ptr
from probes.checks import CheckResult, ProbeContext, ProbeOptions, Status
from tests.servers.dns import DnsServerProcess

V6 = "2001:db8::25"
V6_REVERSE = "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"

ZONE = ZoneData(
    ["test", "in-addr.arpa", "ip6.arpa"],
    {
        # 192.0.2.10: forward-confirmed
        "10.2.0.192.in-addr.arpa": [Record("PTR", "mail.send.test")],
        "mail.send.test": [Record("A", "192.0.2.10"), Record("AAAA", V6)],
        V6_REVERSE: [Record("PTR", "mail.send.test")],
        # 192.0.2.11: PTR to a name pointing elsewhere
        "11.2.0.192.in-addr.arpa": [Record("PTR", "stale.send.test")],
        "stale.send.test": [Record("A", "192.0.2.99")],
        # 192.0.2.12: no PTR (NXDOMAIN); 192.0.2.13: PTR lookup fails
        # 192.0.2.14: two PTR names, the second confirms
        "14.2.0.192.in-addr.arpa": [Record("PTR", "a.send.test"), Record("PTR", "b.send.test")],
        "a.send.test": [Record("A", "192.0.2.1")],
        "b.send.test": [Record("A", "192.0.2.14")],
        # 192.0.2.15: the PTR name's forward lookup fails
        "15.2.0.192.in-addr.arpa": [Record("PTR", "flaky.send.test")],
        # 198.51.100.7: a generic ISP name that is forward-confirmed
        "7.100.51.198.in-addr.arpa": [Record("PTR", "c-198-51-100-7.hsd1.isp.test")],
        "c-198-51-100-7.hsd1.isp.test": [Record("A", "198.51.100.7")],
    },
    servfail=["13.2.0.192.in-addr.arpa", "flaky.send.test"],
)


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServerProcess]:
    with DnsServerProcess(ZONE) as process:
        yield process


def reverse(server: DnsServerProcess, ip: str) -> ptr.ReverseDns:
    async def go() -> ptr.ReverseDns:
        resolver = Resolver([server.nameserver], timeout=2.0)
        try:
            return await ptr.fcrdns(resolver, ip)
        finally:
            resolver.close()

    return asyncio.run(go())


def audit(server: DnsServerProcess, *ips: str) -> dict[str, CheckResult]:
    async def go() -> list[CheckResult]:
        resolver = Resolver([server.nameserver], timeout=2.0)
        try:
            return await ptr.audit(ProbeContext(resolver, ProbeOptions(ips=ips)), "send.test")
        finally:
            resolver.close()

    results = asyncio.run(go())
    for result in results:
        json.dumps(result.to_dict())
    return {r.id: r for r in results}


def test_fcrdns_confirmed_ipv4_and_ipv6(server: DnsServerProcess):
    found = reverse(server, "192.0.2.10")
    assert found.names == ("mail.send.test",) and found.confirmed == ("mail.send.test",)
    assert found.reverse_name == "10.2.0.192.in-addr.arpa"
    six = reverse(server, "2001:0db8:0000::0025")  # written long: compared as addresses
    assert six.ip == V6 and six.reverse_name == V6_REVERSE
    assert six.is_confirmed


def test_fcrdns_mismatch_missing_and_failures(server: DnsServerProcess):
    stale = reverse(server, "192.0.2.11")
    assert stale.has_ptr and not stale.is_confirmed and not stale.unknown
    missing = reverse(server, "192.0.2.12")
    assert not missing.has_ptr and missing.ptr_status is DnsStatus.NXDOMAIN
    assert missing.failure is None
    failed = reverse(server, "192.0.2.13")
    assert failed.unknown and failed.failure is not None
    assert failed.failure.status is DnsStatus.SERVFAIL
    flaky = reverse(server, "192.0.2.15")
    assert flaky.has_ptr and flaky.unknown


def test_fcrdns_any_ptr_name_may_confirm(server: DnsServerProcess):
    found = reverse(server, "192.0.2.14")
    assert set(found.names) == {"a.send.test", "b.send.test"}
    assert found.confirmed == ("b.send.test",)


def test_no_ips_no_results(server: DnsServerProcess):
    assert audit(server) == {}


def test_confirmed_ips_pass(server: DnsServerProcess):
    results = audit(server, "192.0.2.10", V6)
    assert {k: r.status for k, r in results.items()} == {
        "ptr.present": Status.PASS,
        "ptr.fcrdns": Status.PASS,
    }
    assert [e["ip"] for e in results["ptr.present"].evidence["ips"]] == ["192.0.2.10", V6]


def test_missing_ptr_fails_both_checks(server: DnsServerProcess):
    results = audit(server, "192.0.2.10", "192.0.2.12")
    assert results["ptr.present"].status is Status.FAIL
    assert "192.0.2.12" in results["ptr.present"].message
    assert "192.0.2.10" not in results["ptr.present"].message
    assert results["ptr.fcrdns"].status is Status.FAIL
    assert "192.0.2.12 (no PTR)" in results["ptr.fcrdns"].message


def test_mismatch_fails_fcrdns(server: DnsServerProcess):
    results = audit(server, "192.0.2.11")
    assert results["ptr.present"].status is Status.PASS
    assert results["ptr.fcrdns"].status is Status.FAIL
    assert "stale.send.test does not resolve back" in results["ptr.fcrdns"].message


def test_lookup_failures_are_errors(server: DnsServerProcess):
    results = audit(server, "192.0.2.13")
    assert results["ptr.present"].status is Status.ERROR
    assert results["ptr.fcrdns"].status is Status.ERROR
    results = audit(server, "192.0.2.15")
    assert results["ptr.present"].status is Status.PASS
    assert results["ptr.fcrdns"].status is Status.ERROR


def test_generic_ptr_warns(server: DnsServerProcess):
    results = audit(server, "198.51.100.7")
    assert results["ptr.present"].status is Status.WARN
    assert "looks generic" in results["ptr.present"].message
    assert results["ptr.fcrdns"].status is Status.PASS


def test_invalid_ip_is_an_error(server: DnsServerProcess):
    results = audit(server, "not-an-ip")
    assert results["ptr.present"].status is Status.ERROR
    assert results["ptr.fcrdns"].status is Status.ERROR


@pytest.mark.parametrize(
    ("name", "ip", "generic"),
    [
        ("c-198-51-100-7.hsd1.isp.test", "198.51.100.7", True),
        ("7.100.51.198.static.isp.test", "198.51.100.7", True),
        ("host198051100007.isp.test", "198.51.100.7", True),
        ("dynamic-pool.isp.test", "198.51.100.7", True),
        ("adsl123.isp.test", "198.51.100.7", True),
        ("mail.example.test", "198.51.100.7", False),
        ("mx1.d0002.bench.test", "127.1.1.10", False),
        ("liverpool.example.test", "198.51.100.7", False),
        ("out-100-7.example.test", "198.51.100.7", False),
        ("v6-20010db8000000000000000000000025.isp.test", V6, True),
    ],
)
def test_looks_generic(name: str, ip: str, generic: bool):
    assert ptr.looks_generic(name, ip) is generic


def test_reverse_name():
    assert ptr.reverse_name("192.0.2.1") == "1.2.0.192.in-addr.arpa"
    assert ptr.reverse_name(V6) == V6_REVERSE
    with pytest.raises(ValueError):
        ptr.reverse_name("example.test")
