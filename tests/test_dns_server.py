"""The lab DNS server, queried over real sockets with dnspython; never through its internals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from lab.spf_suite import zone_from_spf_suite
from lab.zones import (
    Record,
    ZoneData,
    ZoneError,
    dump_zone_file,
    load_zone_file,
    normalize_name,
    zone_from_dict,
)
from tests.servers.dns import REPO_ROOT, DnsServerProcess, DnsServers

SPF_SUITE = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "spf" / "rfc7208-tests.yml"
DKIM_KEY = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 340 + "IDAQAB"
MEDIUM = [f"{index:02d}" + "m" * 178 for index in range(4)]  # ~800 octets: over 512
BIG = [f"{index:02d}" + "b" * 198 for index in range(12)]  # ~2.5 KB: over every UDP limit

ZONE = ZoneData(
    ["example.test", "127.in-addr.arpa"],
    {
        "example.test": [
            Record("MX", (10, "mx1.example.test")),
            Record("MX", (20, "mx2.example.test")),
            Record("TXT", "v=spf1 ip4:127.0.0.2 -all", ttl=60),
        ],
        "mx1.example.test": [Record("A", "127.0.0.2"), Record("AAAA", "::1")],
        "mx2.example.test": [Record("A", "127.0.0.3")],
        "sk2026r._domainkey.example.test": [Record("TXT", DKIM_KEY)],
        "deep.below.empty.example.test": [Record("A", "127.0.0.4")],
        "www.example.test": [Record("CNAME", "alias.example.test.")],
        "alias.example.test": [Record("CNAME", "MX1.example.test")],
        "dangling.example.test": [Record("CNAME", "missing.example.test")],
        "elsewhere.example.test": [Record("CNAME", "mail.other.invalid")],
        "loop1.example.test": [Record("CNAME", "loop2.example.test")],
        "loop2.example.test": [Record("CNAME", "loop1.example.test")],
        "*.wild.example.test": [Record("TXT", "wildcard")],
        "exists.wild.example.test": [Record("A", "127.0.0.5")],
        "medium.example.test": [Record("TXT", text) for text in MEDIUM],
        "big.example.test": [Record("TXT", text) for text in BIG],
        "bücher.example.test": [Record("A", "127.0.0.6")],
        "2.0.0.127.in-addr.arpa": [Record("PTR", "mx1.example.test")],
    },
    timeout=["slow.example.test"],
    servfail=["broken.example.test"],
    refused=["closed.example.test"],
)


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServerProcess]:
    with DnsServerProcess(ZONE) as running:
        yield running


def query(
    server: DnsServerProcess,
    name: str,
    rdtype: str,
    *,
    tcp: bool = False,
    timeout: float = 2.0,
    use_edns: int | bool = False,
    payload: int = 1232,
) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype, use_edns=use_edns, payload=payload)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(message, server.host, timeout=timeout, port=server.port)


def answer_texts(response: dns.message.Message) -> list[str]:
    return [rdata.to_text() for rrset in response.answer for rdata in rrset]


def soa_owner(response: dns.message.Message) -> str:
    (rrset,) = response.authority
    assert rrset.rdtype == dns.rdatatype.SOA
    return rrset.name.to_text()


# --- answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("mx1.example.test", "A", ["127.0.0.2"]),
        ("mx1.example.test", "AAAA", ["::1"]),
        ("example.test", "MX", ["10 mx1.example.test.", "20 mx2.example.test."]),
        ("example.test", "TXT", ['"v=spf1 ip4:127.0.0.2 -all"']),
        ("MX1.Example.TEST", "A", ["127.0.0.2"]),
        ("2.0.0.127.in-addr.arpa", "PTR", ["mx1.example.test."]),
        ("xn--bcher-kva.example.test", "A", ["127.0.0.6"]),
    ],
)
def test_answers_from_the_data(
    server: DnsServerProcess, name: str, rdtype: str, expected: list[str]
) -> None:
    response = query(server, name, rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert sorted(answer_texts(response)) == expected


def test_ttl_is_served(server: DnsServerProcess) -> None:
    assert query(server, "example.test", "TXT").answer[0].ttl == 60
    assert query(server, "example.test", "MX").answer[0].ttl == 300


def test_long_txt_is_split_into_character_strings(server: DnsServerProcess) -> None:
    response = query(server, "sk2026r._domainkey.example.test", "TXT", tcp=True)
    (rdata,) = response.answer[0]
    assert len(rdata.strings) == 2
    assert all(len(chunk) <= 255 for chunk in rdata.strings)
    assert b"".join(rdata.strings).decode() == DKIM_KEY


def test_a_stub_resolver_gets_mx_and_keeps_nxdomain_and_no_answer_apart(
    server: DnsServerProcess,
) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.host]
    resolver.port = server.port
    resolver.lifetime = 2.0
    answer = resolver.resolve("example.test", "MX")
    hosts = sorted((rdata.preference, rdata.exchange.to_text()) for rdata in answer)
    assert hosts == [(10, "mx1.example.test."), (20, "mx2.example.test.")]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("nowhere.example.test", "MX")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("mx2.example.test", "MX")


# --- negative answers ----------------------------------------------------------------


def test_nxdomain_carries_the_soa(server: DnsServerProcess) -> None:
    response = query(server, "nowhere.example.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert response.answer == []
    assert soa_owner(response) == "example.test."


def test_nodata_when_the_name_exists_without_the_type(server: DnsServerProcess) -> None:
    response = query(server, "mx2.example.test", "TXT")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert soa_owner(response) == "example.test."


@pytest.mark.parametrize("name", ["empty.example.test", "below.empty.example.test"])
def test_an_empty_non_terminal_is_nodata_not_nxdomain(server: DnsServerProcess, name: str) -> None:
    response = query(server, name, "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert soa_owner(response) == "example.test."
    assert query(server, "other." + name, "A").rcode() == dns.rcode.NXDOMAIN


def test_reverse_zone_negative_answers_carry_its_own_soa(server: DnsServerProcess) -> None:
    response = query(server, "9.0.0.127.in-addr.arpa", "PTR")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert soa_owner(response) == "127.in-addr.arpa."


def test_the_apex_answers_soa(server: DnsServerProcess) -> None:
    response = query(server, "example.test", "SOA")
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.SOA]


# --- CNAMEs and wildcards ------------------------------------------------------------


def test_a_cname_chain_is_followed_inside_the_data(server: DnsServerProcess) -> None:
    response = query(server, "www.example.test", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert [(r.name.to_text(), r.rdtype) for r in response.answer] == [
        ("www.example.test.", dns.rdatatype.CNAME),
        ("alias.example.test.", dns.rdatatype.CNAME),
        ("mx1.example.test.", dns.rdatatype.A),
    ]
    assert answer_texts(query(server, "www.example.test", "CNAME")) == ["alias.example.test."]


def test_a_cname_to_a_missing_name_is_nxdomain_with_the_cname(server: DnsServerProcess) -> None:
    response = query(server, "dangling.example.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert answer_texts(response) == ["missing.example.test."]
    assert soa_owner(response) == "example.test."


def test_a_cname_leaving_the_origins_is_not_chased(server: DnsServerProcess) -> None:
    response = query(server, "elsewhere.example.test", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert answer_texts(response) == ["mail.other.invalid."]
    assert response.authority == []


def test_a_cname_loop_ends(server: DnsServerProcess) -> None:
    response = query(server, "loop1.example.test", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert answer_texts(response) == ["loop2.example.test.", "loop1.example.test."]


@pytest.mark.parametrize("name", ["anything.wild.example.test", "a.b.wild.example.test"])
def test_a_wildcard_answers_names_that_do_not_exist(server: DnsServerProcess, name: str) -> None:
    response = query(server, name, "TXT")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer[0].name.to_text() == name + "."
    assert answer_texts(response) == ['"wildcard"']


def test_a_wildcard_does_not_cover_names_that_exist_or_their_children(
    server: DnsServerProcess,
) -> None:
    exists = query(server, "exists.wild.example.test", "TXT")
    assert (exists.rcode(), exists.answer) == (dns.rcode.NOERROR, [])
    below = query(server, "x.exists.wild.example.test", "TXT")
    assert below.rcode() == dns.rcode.NXDOMAIN


# --- refusals and failures -----------------------------------------------------------


@pytest.mark.parametrize("name", ["example.com", "test", "other.test"])
def test_names_outside_the_origins_are_refused(server: DnsServerProcess, name: str) -> None:
    response = query(server, name, "A")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA


def test_override_names_fail_as_listed(server: DnsServerProcess) -> None:
    assert query(server, "broken.example.test", "A").rcode() == dns.rcode.SERVFAIL
    assert query(server, "closed.example.test", "MX").rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_timeout_name_gets_no_answer(server: DnsServerProcess, tcp: bool) -> None:
    started = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        query(server, "slow.example.test", "A", tcp=tcp, timeout=1.0)
    assert time.monotonic() - started >= 0.9
    assert query(server, "mx1.example.test", "A", tcp=tcp).rcode() == dns.rcode.NOERROR


# --- sizes ---------------------------------------------------------------------------


def test_udp_without_edns_truncates_over_512_octets(server: DnsServerProcess) -> None:
    response = query(server, "medium.example.test", "TXT")
    assert response.flags & dns.flags.TC
    assert response.answer == []
    assert response.rcode() == dns.rcode.NOERROR


def test_udp_with_edns_takes_the_advertised_size(server: DnsServerProcess) -> None:
    response = query(server, "medium.example.test", "TXT", use_edns=0, payload=1232)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == len(MEDIUM)
    assert response.edns == 0
    small = query(server, "medium.example.test", "TXT", use_edns=0, payload=600)
    assert small.flags & dns.flags.TC


def test_tcp_serves_what_udp_truncates(server: DnsServerProcess) -> None:
    assert query(server, "big.example.test", "TXT", use_edns=0, payload=4096).flags & dns.flags.TC
    response = query(server, "big.example.test", "TXT", tcp=True)
    assert not response.flags & dns.flags.TC
    assert sorted(b"".join(rdata.strings).decode() for rdata in response.answer[0]) == BIG


# --- the process ---------------------------------------------------------------------


def test_the_pidfile_names_the_process(server: DnsServerProcess) -> None:
    assert server.pidfile.read_text().strip() == str(server.pid)


def test_sighup_reloads_the_zone_file(dns_server: DnsServers) -> None:
    first = ZoneData(["example.test"], {"mx.example.test": [Record("A", "127.0.0.2")]})
    running = dns_server(first)
    assert answer_texts(query(running, "mx.example.test", "A")) == ["127.0.0.2"]
    second = ZoneData(["example.test"], {"mx.example.test": [Record("A", "127.0.0.9")]})
    running.update(second)
    assert answer_texts(query(running, "mx.example.test", "A")) == ["127.0.0.9"]


def test_a_bad_zone_file_on_reload_keeps_the_old_data(dns_server: DnsServers) -> None:
    zone = ZoneData(["example.test"], {"mx.example.test": [Record("A", "127.0.0.2")]})
    running = dns_server(zone)
    records = [{"type": "A", "value": "127.0.0.3"}, {"type": "MX", "value": "mx.example.test"}]
    bad = {"origins": ["example.test"], "records": {"mx.example.test": records}}
    status = running.reload_text(json.dumps(bad))
    assert status.startswith("reload-failed ")
    assert "'mx.example.test' record 1" in status
    assert "MX value must be [preference, exchange]" in status
    assert answer_texts(query(running, "mx.example.test", "A")) == ["127.0.0.2"]


def test_sigterm_stops_cleanly(dns_server: DnsServers) -> None:
    running = dns_server(ZoneData(["example.test"]))
    pidfile = running.pidfile
    assert running.stop() == 0
    assert not pidfile.exists()
    assert running.log == ""  # quiet by default: no line per query, none at start


def test_query_logging_is_opt_in(dns_server: DnsServers) -> None:
    running = dns_server(ZoneData(["example.test"]), log_queries=True)
    query(running, "nowhere.example.test", "A")
    running.stop()
    assert "nowhere.example.test. A -> NXDOMAIN" in running.log


def run_server(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lab.dns_server", *arguments]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)


def test_a_malformed_zone_file_stops_the_process_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "zones.json"
    path.write_text('{"origins": ["example.test"], "records": {"a.example.test": [{"type": "A"}]}}')
    result = run_server("--zones", str(path), "--port", "0")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "'a.example.test' record 0" in result.stderr


def test_a_non_loopback_address_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "zones.json"
    dump_zone_file(ZoneData(["example.test"]), path)
    result = run_server("--zones", str(path), "--listen", "192.0.2.1", "--port", "0")
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr


# --- the zone model and file ---------------------------------------------------------


def test_a_zone_survives_its_file(tmp_path: Path) -> None:
    path = tmp_path / "zones.json"
    dump_zone_file(ZONE, path)
    assert load_zone_file(path) == ZONE
    binary = ZoneData([""], {"x": [Record("TXT", (b"\xef\xbb", b"ok")), Record("MX", (0, "."))]})
    dump_zone_file(binary, path)
    assert '{"hex": "efbb"}' in path.read_text().replace("\n", "").replace("  ", "")
    assert load_zone_file(path) == binary


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "not JSON"),
        ({"records": {}}, '"origins" is missing'),
        ({"origins": ["t"], "zones": {}}, "unknown keys ['zones']"),
        ({"origins": ["t"], "records": {"a.t": [{"type": "A", "value": "1.2.3"}]}},
         "'a.t' record 0: A value must be an IPv4 address"),
        ({"origins": ["t"], "records": {"a.t": [{"type": "A", "value": "1.2.3.4"},
                                                {"type": "TXT", "value": ["x" * 256]}]}},
         "'a.t' record 1: TXT character-string 0 is 256 octets"),
        ({"origins": ["t"], "records": {"a.t": [{"type": "WKS", "value": "x"}]}},
         "'a.t' record 0: unsupported record type 'WKS'"),
        ({"origins": ["t"], "records": {"a.t": [{"type": "A", "value": "1.2.3.4", "ttl": -1}]}},
         "'a.t' record 0: TTL must be an integer"),
        ({"origins": ["t"], "records": {"a.t": [{"type": "CNAME", "value": "b.t"},
                                                {"type": "A", "value": "1.2.3.4"}]}},
         "'a.t': a CNAME cannot share its name with other records"),
        ({"origins": ["t"], "records": {"a.example": [{"type": "A", "value": "1.2.3.4"}]}},
         "'a.example': name is outside every origin"),
        ({"origins": ["t"], "records": {"a..t": []}}, "'a..t': name 'a..t' has an empty label"),
        ({"origins": ["t"], "timeout": ["x.t"], "servfail": ["x.t"]},
         "listed in both timeout and servfail"),
    ],
)  # fmt: skip
def test_a_malformed_zone_file_names_the_record_and_the_reason(
    tmp_path: Path, document: object, message: str
) -> None:
    path = tmp_path / "zones.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ZoneError) as caught:
        load_zone_file(path)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_names_are_case_insensitive_and_idna_safe() -> None:
    assert normalize_name("Mail.Example.TEST.") == "mail.example.test"
    assert normalize_name("bücher.example") == "xn--bcher-kva.example"
    assert normalize_name(".") == ""
    assert normalize_name("Mail.Example.", keep_case=True) == "Mail.Example"
    with pytest.raises(ZoneError, match="over 63 octets"):
        normalize_name("a" * 64 + ".example")


def test_records_are_stored_canonically() -> None:
    assert Record("mx", [10, "MX.example.test."]) == Record("MX", (10, "MX.example.test"))
    assert Record("AAAA", "2001:DB8:0::1").value == "2001:db8::1"
    assert Record("TXT", "x" * 300).value == (b"x" * 255, b"x" * 45)
    assert Record("TXT", "é" * 200).value == (("é" * 127).encode(), ("é" * 73).encode())
    with pytest.raises(ZoneError, match="must be an integer from 0 to 65535"):
        Record("MX", (70000, "mx.example.test"))


# --- the SPF test suite --------------------------------------------------------------

#: hand-written in the suite's format: its conventions, checked without PyYAML
SUITE_STYLE: dict[str, list[object]] = {
    "both.example.net": [{"TXT": "v=spf1 -all"}, {"SPF": "v=spf1 -all"}],
    "spfonly.example.net": [{"SPF": "v=spf1 -all"}, {"TXT": "NONE"}],
    "spf99.example.net": [{"SPF": "v=spf1 ip4:192.0.2.1 -all"}],
    "spftimeout.example.net": [{"TXT": "v=spf1 -all"}, "TIMEOUT"],
    "txttimeout.example.net": [{"SPF": "v=spf1 -all"}, {"TXT": "NONE"}, "TIMEOUT"],
    "null.example.com": [{"SPF": ["v=spf1 ip4:", "192.0.2.5 -all"]}, {"SPF": []}],
    "hosed.example.com": [{"SPF": "v=spf1 a:\xef\xbb\xbfgarbage.example.net -all"}],
    "mail.example.com": [{"MX": [0, ""]}, {"A": "1.2.3.4"}],
    "4.3.2.1.in-addr.arpa": [{"PTR": "mail.Example.com."}],
}


def test_suite_conventions_are_modelled() -> None:
    zone = zone_from_spf_suite(SUITE_STYLE)
    assert zone.origins == ("",)
    assert zone.timeout == {"spftimeout.example.net", "txttimeout.example.net"}
    spf99 = zone.records["spf99.example.net"]
    assert [r.type for r in spf99] == ["SPF", "TXT"] and spf99[0].value == spf99[1].value
    assert [r.type for r in zone.records["spfonly.example.net"]] == ["SPF"]
    assert [r.value for r in zone.records["null.example.com"] if r.type == "TXT"] == [
        (b"v=spf1 ip4:", b"192.0.2.5 -all"),
        (b"",),
    ]
    (hosed, _) = zone.records["hosed.example.com"]
    assert hosed.value == (b"v=spf1 a:\xef\xbb\xbfgarbage.example.net -all",)


@pytest.fixture(scope="module")
def suite_server() -> Iterator[DnsServerProcess]:
    with DnsServerProcess(zone_from_spf_suite(SUITE_STYLE)) as running:
        yield running


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("both.example.net", "TXT", ['"v=spf1 -all"']),
        ("spf99.example.net", "TXT", ['"v=spf1 ip4:192.0.2.1 -all"']),
        ("spf99.example.net", "SPF", ['"v=spf1 ip4:192.0.2.1 -all"']),
        ("spfonly.example.net", "TXT", []),
        ("spftimeout.example.net", "TXT", ['"v=spf1 -all"']),
        ("txttimeout.example.net", "SPF", ['"v=spf1 -all"']),
        ("null.example.com", "TXT", ['""', '"v=spf1 ip4:" "192.0.2.5 -all"']),
        ("mail.example.com", "MX", ["0 ."]),
        ("4.3.2.1.in-addr.arpa", "PTR", ["mail.Example.com."]),
        ("unlisted.example.com", "TXT", None),
    ],
)
def test_suite_zones_are_served_as_its_drivers_would(
    suite_server: DnsServerProcess, name: str, rdtype: str, expected: list[str] | None
) -> None:
    response = query(suite_server, name, rdtype)
    if expected is None:
        assert response.rcode() == dns.rcode.NXDOMAIN
    else:
        assert response.rcode() == dns.rcode.NOERROR
        assert sorted(answer_texts(response)) == expected


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("spftimeout.example.net", "SPF"), ("txttimeout.example.net", "TXT")],
)
def test_suite_timeouts_are_silent(suite_server: DnsServerProcess, name: str, rdtype: str) -> None:
    with pytest.raises(dns.exception.Timeout):
        query(suite_server, name, rdtype, timeout=0.5)


def suite_sections() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed in the venv")
    if not SPF_SUITE.exists():
        pytest.skip(f"{SPF_SUITE} is not there")
    with SPF_SUITE.open(encoding="utf-8") as handle:
        return list(yaml.safe_load_all(handle))


def test_every_suite_zonedata_is_representable() -> None:
    sections = suite_sections()
    assert len(sections) > 10
    for section in sections:
        zone = zone_from_spf_suite(section["zonedata"])
        assert zone_from_dict(json.loads(zone.to_json())) == zone


def test_suite_record_lookup_section_is_served_right(dns_server: DnsServers) -> None:
    (section,) = [s for s in suite_sections() if s["description"] == "Record lookup"]
    running = dns_server(zone_from_spf_suite(section["zonedata"]))
    assert answer_texts(query(running, "both.example.net", "TXT")) == ['"v=spf1 -all"']
    assert answer_texts(query(running, "spfonly.example.net", "TXT")) == []
    assert answer_texts(query(running, "spftimeout.example.net", "TXT")) == ['"v=spf1 -all"']
    for name, rdtype in [("alltimeout.example.net", "TXT"), ("nospftxttimeout.example.net", "TXT")]:
        with pytest.raises(dns.exception.Timeout):
            query(running, name, rdtype, timeout=0.5)
