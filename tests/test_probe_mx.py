"""probes.mx against a real DNS server process serving one crafted domain per finding."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from deliver.dns import Resolver
from lab.zones import Record, ZoneData
from probes import mx
from probes.checks import CheckResult, ProbeContext, Status
from tests.probe_helpers import by_id
from tests.servers.dns import DnsServerProcess


def a(address: str) -> Record:
    return Record("A", address)


def ptr(name: str) -> Record:
    return Record("PTR", name)


def mxr(preference: int, host: str) -> Record:
    return Record("MX", (preference, host))


RECORDS: dict[str, list[Record]] = {
    # two hosts, each with a forward-confirmed PTR; mx1 also has IPv6
    "ok.test": [mxr(10, "mx1.ok.test"), mxr(20, "mx2.ok.test")],
    "mx1.ok.test": [a("127.0.0.10"), Record("AAAA", "2001:db8::10")],
    "mx2.ok.test": [a("127.0.0.11")],
    "10.0.0.127.in-addr.arpa": [ptr("mx1.ok.test")],
    "11.0.0.127.in-addr.arpa": [ptr("mx2.ok.test")],
    "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa": [
        ptr("mx1.ok.test")
    ],
    # shares the provider's MX with ok.test's host
    "shared.test": [mxr(5, "mx1.ok.test")],
    # no MX at all: implicit MX
    "nomx.test": [a("127.0.0.12")],
    # null MX (RFC 7505), alone and mixed with a real MX
    "null.test": [mxr(0, ".")],
    "nullmixed.test": [mxr(0, "."), mxr(10, "mx2.ok.test")],
    # one host without an address, then every host without one
    "halfaddr.test": [mxr(10, "mx1.ok.test"), mxr(20, "gone.halfaddr.test")],
    "noaddr.test": [mxr(10, "gone.noaddr.test")],
    "literal.test": [mxr(10, "192.0.2.1")],
    # MX target is an alias
    "cname.test": [mxr(10, "mail.cname.test")],
    "mail.cname.test": [Record("CNAME", "mx.cname.test")],
    "mx.cname.test": [a("127.0.0.20")],
    "20.0.0.127.in-addr.arpa": [ptr("mx.cname.test")],
    # address without PTR
    "noptr.test": [mxr(10, "mx.noptr.test")],
    "mx.noptr.test": [a("127.0.0.30")],
    # PTR names a host that does not point back
    "mismatch.test": [mxr(10, "mx.mismatch.test")],
    "mx.mismatch.test": [a("127.0.0.40")],
    "40.0.0.127.in-addr.arpa": [ptr("other.mismatch.test")],
    "other.mismatch.test": [a("127.0.0.41")],
    # PTR lookup fails
    "ptrfail.test": [mxr(10, "mx.ptrfail.test")],
    "mx.ptrfail.test": [a("127.0.0.50")],
    # host lookups fail
    "hostfail.test": [mxr(10, "mx.hostfail.test")],
}

ZONE = ZoneData(
    ["test", "in-addr.arpa", "ip6.arpa", "1"],
    RECORDS,
    servfail=["broken.test", "mx.hostfail.test", "50.0.0.127.in-addr.arpa"],
)


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServerProcess]:
    with DnsServerProcess(ZONE) as process:
        yield process


def run(server: DnsServerProcess, domain: str) -> dict[str, CheckResult]:
    async def go() -> list[CheckResult]:
        resolver = Resolver([server.nameserver], timeout=2.0)
        try:
            return await mx.audit(ProbeContext(resolver), domain)
        finally:
            resolver.close()

    return by_id(asyncio.run(go()))


def statuses(results: dict[str, CheckResult]) -> dict[str, str]:
    return {check_id: r.status.value for check_id, r in results.items()}


def test_healthy_domain_passes_everything_with_hosts_in_evidence(server: DnsServerProcess):
    results = run(server, "ok.test")
    assert statuses(results) == {
        "mx.present": "pass",
        "mx.null": "pass",
        "mx.address": "pass",
        "mx.cname": "pass",
        "mx.ptr": "pass",
        "mx.fcrdns": "pass",
    }
    hosts = results["mx.address"].evidence["hosts"]
    assert [h["host"] for h in hosts] == ["mx1.ok.test", "mx2.ok.test"]
    assert hosts[0]["addresses"] == ["127.0.0.10", "2001:db8::10"]
    reverse = {e["ip"]: e for e in results["mx.fcrdns"].evidence["addresses"]}
    assert set(reverse) == {"127.0.0.10", "2001:db8::10", "127.0.0.11"}
    assert reverse["2001:db8::10"]["confirmed"] == ["mx1.ok.test"]
    assert reverse["127.0.0.11"]["hosts"] == ["mx2.ok.test"]
    assert mx.verdict(list(results.values())) == "ok"


def test_evidence_is_json_serialisable(server: DnsServerProcess):
    import json

    for domain in ("ok.test", "mismatch.test", "null.test", "hostfail.test"):
        for result in run(server, domain).values():
            json.dumps(result.to_dict())


def test_no_mx_warns_about_the_implicit_mx_and_says_what_to_publish(server: DnsServerProcess):
    results = run(server, "nomx.test")
    assert statuses(results) == {"mx.present": "warn"}
    result = results["mx.present"]
    assert "implicit MX" in result.message and "RFC 5321 §5.1" in result.message
    assert result.fix == "nomx.test. MX 10 mail.nomx.test."
    assert mx.verdict([result]) == "missing"


def test_nonexistent_domain_fails(server: DnsServerProcess):
    results = run(server, "absent.test")
    assert statuses(results) == {"mx.present": "fail"}
    assert "NXDOMAIN" in results["mx.present"].message
    assert mx.verdict(list(results.values())) == "missing"


def test_null_mx_fails_for_a_sending_domain(server: DnsServerProcess):
    results = run(server, "null.test")
    assert statuses(results) == {"mx.present": "pass", "mx.null": "fail"}
    assert "RFC 7505" in results["mx.null"].message
    assert "bounces and replies" in results["mx.null"].message
    assert results["mx.null"].evidence["mx"] == ["0 ."]
    assert mx.verdict(list(results.values())) == "null"


def test_null_mx_mixed_with_other_records_is_named(server: DnsServerProcess):
    result = run(server, "nullmixed.test")["mx.null"]
    assert result.status is Status.FAIL
    assert "mixed with other MX records" in result.message


def test_one_host_without_address_warns(server: DnsServerProcess):
    results = run(server, "halfaddr.test")
    assert results["mx.address"].status is Status.WARN
    assert "gone.halfaddr.test" in results["mx.address"].message
    assert results["mx.ptr"].status is Status.PASS  # the other host's address is fine
    assert mx.verdict(list(results.values())) == "no_address"


def test_no_host_with_an_address_fails(server: DnsServerProcess):
    results = run(server, "noaddr.test")
    assert results["mx.address"].status is Status.FAIL
    assert results["mx.ptr"].message == "no MX address to check"
    assert mx.verdict(list(results.values())) == "no_address"


def test_mx_pointing_at_an_ip_address_gets_a_hint(server: DnsServerProcess):
    result = run(server, "literal.test")["mx.address"]
    assert result.status is Status.FAIL
    assert "is an IP address, but an MX must name a host" in result.message


def test_cname_target_warns_and_names_the_alias(server: DnsServerProcess):
    results = run(server, "cname.test")
    assert results["mx.cname"].status is Status.WARN
    assert "RFC 2181 §10.3" in results["mx.cname"].message
    assert "mail.cname.test -> mx.cname.test" in results["mx.cname"].message
    assert results["mx.address"].status is Status.PASS
    assert results["mx.fcrdns"].status is Status.PASS
    assert mx.verdict(list(results.values())) == "cname"


def test_address_without_ptr_warns(server: DnsServerProcess):
    results = run(server, "noptr.test")
    assert results["mx.ptr"].status is Status.WARN
    assert "127.0.0.30" in results["mx.ptr"].message
    assert results["mx.fcrdns"].status is Status.WARN
    assert mx.verdict(list(results.values())) == "no_ptr"


def test_ptr_that_does_not_resolve_back_warns(server: DnsServerProcess):
    results = run(server, "mismatch.test")
    assert results["mx.ptr"].status is Status.PASS
    assert results["mx.fcrdns"].status is Status.WARN
    assert "127.0.0.40 -> other.mismatch.test" in results["mx.fcrdns"].message
    assert mx.verdict(list(results.values())) == "ptr_mismatch"


def test_mx_lookup_failure_is_an_error_not_missing(server: DnsServerProcess):
    results = run(server, "broken.test")
    assert statuses(results) == {"mx.present": "error"}
    assert "servfail" in results["mx.present"].message
    assert mx.verdict(list(results.values())) == "error"


def test_host_lookup_failure_is_an_error(server: DnsServerProcess):
    results = run(server, "hostfail.test")
    assert results["mx.address"].status is Status.ERROR
    assert results["mx.cname"].status is Status.ERROR
    assert results["mx.address"].evidence["hosts"][0]["failed_status"] == "servfail"
    assert mx.verdict(list(results.values())) == "error"


def test_ptr_lookup_failure_is_an_error(server: DnsServerProcess):
    results = run(server, "ptrfail.test")
    assert results["mx.ptr"].status is Status.ERROR
    assert results["mx.fcrdns"].status is Status.ERROR
    assert mx.verdict(list(results.values())) == "error"


def test_shared_hosts_are_looked_up_once_per_resolver(server: DnsServerProcess):
    async def go() -> int:
        resolver = Resolver([server.nameserver], timeout=2.0)
        try:
            ctx = ProbeContext(resolver)
            await mx.audit(ctx, "ok.test")
            before = resolver.sent
            await mx.audit(ctx, "shared.test")
            return resolver.sent - before
        finally:
            resolver.close()

    assert asyncio.run(go()) == 1  # only shared.test's MX; mx1.ok.test is cached


def test_verdict_precedence():
    def result(check_id: str, status: Status) -> CheckResult:
        return CheckResult(check_id, status, "")

    assert mx.verdict([]) == "ok"
    both = [result("mx.cname", Status.WARN), result("mx.ptr", Status.WARN)]
    assert mx.verdict(both) == "no_ptr"
    assert mx.verdict([result("mx.ptr", Status.ERROR), result("mx.cname", Status.WARN)]) == "cname"
    assert mx.verdict([result("spf.present", Status.FAIL)]) == "ok"
    assert set(mx.VERDICTS) >= {"ok", "null", "no_address", "error"}
