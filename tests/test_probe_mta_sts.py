"""probes.mta_sts against a real DNS server process and a real HTTPS server on loopback.

The HTTPS server presents a certificate for the mta-sts.<domain> names, issued by a
throwaway CA made here with ``cryptography``; the httpx client trusts only that CA. The DNS
zone points the mta-sts names at 127.0.0.19 (and ::1), where the server listens: neither
name is known to the system resolver, so a fetch that works went through ours. RFC 8461
wants port 443, which tests cannot bind: they pass the server's port to ``audit``.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deliver.dns import Resolver
from lab.zones import Record, ZoneData
from probes import mta_sts
from probes.checks import CheckResult, ProbeContext, ProbeOptions, Status
from tests.probe_helpers import by_id
from tests.servers.dns import DnsServerProcess

HTTPS_V4 = "127.0.0.19"
CLOSED_V4 = "127.0.0.21"  # nothing listens there

GOOD = "version: STSv1\nmode: enforce\nmx: mx1.good.test\nmax_age: 604800\n"
POLICIES: dict[str, tuple[int, str, str]] = {
    # domain: (HTTP status, content type, body)
    "good.test": (200, "text/plain; charset=utf-8", GOOD),
    "crlf.test": (200, "text/plain", GOOD.replace("\n", "\r\n").replace("good", "crlf")),
    "wild.test": (
        200,
        "text/plain",
        "version: STSv1\nmode: enforce\nmx: *.wild.test\nmax_age: 604800\n",
    ),
    "testing.test": (
        200,
        "text/plain",
        "version: STSv1\nmode: testing\nmx: mx.elsewhere.test\nmax_age: 86400\n",
    ),
    "none.test": (200, "text/plain", "version: STSv1\nmode: none\nmax_age: 86400\n"),
    "short.test": (200, "text/plain", GOOD.replace("604800", "300").replace("good", "short")),
    "redirect.test": (301, "text/html", ""),
    "missing.test": (404, "text/html", "not found"),
    "ctype.test": (200, "text/html", GOOD),
    "invalid.test": (
        200,
        "text/plain",
        "version: STSv1\nmode: enforce\nmx: mx.invalid.test\nmax_age: 99999999\n",
    ),
    "oops.test": (500, "text/plain", "internal error"),
    "badcert.test": (200, "text/plain", GOOD),
    "v6.test": (200, "text/plain", GOOD.replace("good", "v6")),
}
#: names in the server's certificate (badcert.test is left out on purpose)
CERT_NAMES = [f"mta-sts.{d}" for d in POLICIES if d != "badcert.test"]


def _zone() -> ZoneData:
    records: dict[str, list[Record]] = {}

    def add(name: str, *items: Record) -> None:
        records.setdefault(name, []).extend(items)

    for domain in POLICIES:
        add(f"_mta-sts.{domain}", Record("TXT", "v=STSv1; id=20240601T1"))
        add(f"mx1.{domain}", Record("A", "127.0.0.25"))
        if domain != "v6.test":
            add(f"mta-sts.{domain}", Record("A", HTTPS_V4))
        add(domain, Record("MX", (10, f"mx1.{domain}")))
    add("mta-sts.v6.test", Record("AAAA", "::1"))
    add("wild.test", Record("MX", (20, "a.b.wild.test")))
    add("_mta-sts.noaddr.test", Record("TXT", "v=STSv1; id=1"))
    add("_mta-sts.closed.test", Record("TXT", "v=STSv1; id=1"))
    add("mta-sts.closed.test", Record("A", CLOSED_V4))
    add("norecord.test", Record("MX", (10, "mx1.norecord.test")))
    add("_mta-sts.other.test", Record("TXT", "v=spf1 -all"))
    add("_mta-sts.malformed.test", Record("TXT", "v=STSv1; id=not-alnum!"))
    add("_mta-sts.several.test", Record("TXT", "v=STSv1; id=1"), Record("TXT", "v=STSv1; id=2"))
    return ZoneData(["test"], records, servfail=["_mta-sts.broken.test"])


# --- a throwaway CA and the HTTPS server ------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(directory: Path) -> tuple[bytes, Path, Path]:
    """(the CA certificate in PEM, the server's certificate file, its key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("sokures test CA"))
        .issuer_name(_name("sokures test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in CERT_NAMES]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(CERT_NAMES[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file


@dataclass
class Seen:
    """What the server saw: SNI names and (Host header, path) of each request."""

    sni: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)


class PolicyHandler(BaseHTTPRequestHandler):
    seen: ClassVar[Seen]
    #: keep-alive, as real servers do, so that connection reuse would show
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        self.seen.requests.append((self.headers.get("Host") or "", self.path))
        domain = host.removeprefix("mta-sts.")
        status, content_type, body = POLICIES.get(domain, (404, "text/plain", "no such host"))
        if self.path != mta_sts.POLICY_PATH:
            status, content_type, body = 404, "text/plain", "wrong path"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status == 301:
            self.send_header("Location", f"https://{host}/moved.txt")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _V6Server(ThreadingHTTPServer):
    import socket

    address_family = socket.AF_INET6


def serve_https(address: str, context: ssl.SSLContext) -> tuple[ThreadingHTTPServer, int]:
    kind = _V6Server if ":" in address else ThreadingHTTPServer
    server = kind((address, 0), PolicyHandler)
    # the handshake runs in the handler's thread, on its first read
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@dataclass
class World:
    dns: DnsServerProcess
    ca_pem: bytes
    port: int
    v6_port: int
    seen: Seen


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    ca_pem, cert_file, key_file = make_certificates(tmp_path_factory.mktemp("mta-sts"))
    seen = Seen()
    PolicyHandler.seen = seen
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda sock, name, ctx: seen.sni.append(name or "")
    servers = [serve_https(HTTPS_V4, context), serve_https("::1", context)]
    try:
        with DnsServerProcess(_zone()) as dns:
            yield World(dns, ca_pem, servers[0][1], servers[1][1], seen)
    finally:
        for server, _ in servers:
            server.shutdown()
            server.server_close()


def run(
    world: World, domain: str, *, http: bool = True, fetch: bool = True, port: int | None = None
) -> dict[str, CheckResult]:
    async def go() -> list[CheckResult]:
        resolver = Resolver([world.dns.nameserver], timeout=2.0)
        verify = ssl.create_default_context(cadata=world.ca_pem.decode())
        async with httpx.AsyncClient(verify=verify, trust_env=False, timeout=3.0) as client:
            ctx = ProbeContext(
                resolver, ProbeOptions(fetch_mta_sts=fetch), client if http else None
            )
            try:
                return await mta_sts.audit(ctx, domain, port=port or world.port)
            finally:
                resolver.close()

    return by_id(asyncio.run(go()))


def statuses(results: dict[str, CheckResult]) -> dict[str, str]:
    return {k: r.status.value for k, r in results.items()}


# --- the record ------------------------------------------------------------------------


def test_missing_record_warns_and_nothing_is_fetched(world: World):
    results = run(world, "norecord.test")
    assert statuses(results) == {"mta_sts.record": "warn"}
    assert "recommended" in results["mta_sts.record"].message
    assert results["mta_sts.record"].fix is not None
    assert statuses(run(world, "other.test")) == {"mta_sts.record": "warn"}


def test_malformed_record_fails_with_a_fix(world: World):
    result = run(world, "malformed.test", fetch=False)["mta_sts.record"]
    assert result.status is Status.FAIL
    assert "1 to 32 letters and digits" in result.message
    assert result.fix == '_mta-sts.malformed.test. TXT "v=STSv1; id=notalnum"'


def test_several_records_fail(world: World):
    result = run(world, "several.test", fetch=False)["mta_sts.record"]
    assert result.status is Status.FAIL
    assert "2 MTA-STS records" in result.message


def test_record_lookup_failure_is_an_error(world: World):
    assert statuses(run(world, "broken.test")) == {"mta_sts.record": "error"}


def test_no_http_client_or_fetching_off_checks_the_record_only(world: World):
    assert statuses(run(world, "good.test", http=False)) == {"mta_sts.record": "pass"}
    assert statuses(run(world, "good.test", fetch=False)) == {"mta_sts.record": "pass"}


# --- the policy ------------------------------------------------------------------------


def test_valid_policy_fetched_by_host_name_through_our_resolver(world: World):
    results = run(world, "good.test")
    assert statuses(results) == {
        "mta_sts.record": "pass",
        "mta_sts.policy": "pass",
        "mta_sts.mx": "pass",
    }
    policy = results["mta_sts.policy"]
    assert policy.evidence["address"] == HTTPS_V4
    assert policy.evidence["policy"] == {
        "version": "STSv1",
        "mode": "enforce",
        "max_age": 604800,
        "mx": ["mx1.good.test"],
        "extensions": {},
    }
    assert "mta-sts.good.test" in world.seen.sni  # SNI carries the name, not the address
    assert (f"mta-sts.good.test:{world.port}", mta_sts.POLICY_PATH) in world.seen.requests


def test_crlf_policy_and_ipv6_address(world: World):
    assert run(world, "crlf.test")["mta_sts.policy"].status is Status.PASS
    results = run(world, "v6.test", port=world.v6_port)
    assert results["mta_sts.policy"].status is Status.PASS
    assert results["mta_sts.policy"].evidence["address"] == "::1"


def test_wildcard_matches_one_label_only(world: World):
    result = run(world, "wild.test")["mta_sts.mx"]
    assert result.status is Status.FAIL  # mode enforce: mail to a.b.wild.test would stop
    assert result.evidence["unmatched"] == ["a.b.wild.test"]
    assert result.fix == "mx: a.b.wild.test"


def test_unmatched_mx_in_testing_mode_warns(world: World):
    results = run(world, "testing.test")
    assert results["mta_sts.policy"].status is Status.PASS
    assert "testing" in results["mta_sts.policy"].message
    assert results["mta_sts.mx"].status is Status.WARN


def test_mode_none_and_short_max_age_warn(world: World):
    results = run(world, "none.test")
    assert results["mta_sts.policy"].status is Status.WARN
    assert "mode none" in results["mta_sts.policy"].message
    assert results["mta_sts.mx"].status is Status.PASS
    assert run(world, "short.test")["mta_sts.policy"].status is Status.WARN


def test_redirect_is_not_followed_and_fails(world: World):
    before = list(world.seen.requests)
    results = run(world, "redirect.test")
    assert statuses(results) == {"mta_sts.record": "pass", "mta_sts.policy": "fail"}
    assert "RFC 8461 §3.3" in results["mta_sts.policy"].message
    new = world.seen.requests[len(before) :]
    assert [path for _, path in new] == [mta_sts.POLICY_PATH]


def test_not_found_and_wrong_media_type_fail(world: World):
    assert run(world, "missing.test")["mta_sts.policy"].status is Status.FAIL
    result = run(world, "ctype.test")["mta_sts.policy"]
    assert result.status is Status.FAIL and "text/plain" in result.message


def test_invalid_policy_fails_with_the_reason(world: World):
    result = run(world, "invalid.test")["mta_sts.policy"]
    assert result.status is Status.FAIL
    assert "max_age 99999999 is over the limit" in result.message


def test_server_error_is_an_error(world: World):
    result = run(world, "oops.test")["mta_sts.policy"]
    assert result.status is Status.ERROR and "HTTP 500" in result.message


def test_certificate_for_another_name_is_an_error_naming_tls(world: World):
    result = run(world, "badcert.test")["mta_sts.policy"]
    assert result.status is Status.ERROR
    assert "TLS handshake failed" in result.message
    assert "certificate" in result.message.lower()


def test_each_host_name_gets_its_own_verified_connection(world: World):
    # one client, two names on one address: the second must not reuse the first's TLS
    # session (httpcore pools by address), or badcert.test would ride on good.test's cert
    async def go() -> list[CheckResult]:
        resolver = Resolver([world.dns.nameserver], timeout=2.0)
        verify = ssl.create_default_context(cadata=world.ca_pem.decode())
        async with httpx.AsyncClient(verify=verify, trust_env=False) as client:
            ctx = ProbeContext(resolver, http=client)
            try:
                good = await mta_sts.check_policy(ctx, "good.test", port=world.port)
                bad = await mta_sts.check_policy(ctx, "badcert.test", port=world.port)
                return [*good, *bad]
            finally:
                resolver.close()

    good_policy, _, bad_policy = asyncio.run(go())
    assert good_policy.status is Status.PASS
    assert bad_policy.status is Status.ERROR and "TLS handshake failed" in bad_policy.message


def test_policy_host_without_address_fails(world: World):
    result = run(world, "noaddr.test")["mta_sts.policy"]
    assert result.status is Status.FAIL
    assert "mta-sts.noaddr.test has no A or AAAA record" in result.message


def test_connection_refused_is_an_error(world: World):
    result = run(world, "closed.test")["mta_sts.policy"]
    assert result.status is Status.ERROR
    assert result.evidence["address"] == CLOSED_V4


def test_check_policy_directly(world: World):
    async def go() -> list[CheckResult]:
        resolver = Resolver([world.dns.nameserver], timeout=2.0)
        verify = ssl.create_default_context(cadata=world.ca_pem.decode())
        async with httpx.AsyncClient(verify=verify, trust_env=False) as client:
            ctx = ProbeContext(resolver, http=client)
            try:
                return await mta_sts.check_policy(ctx, "good.test", port=world.port)
            finally:
                resolver.close()

    assert [r.status for r in asyncio.run(go())] == [Status.PASS, Status.PASS]


# --- pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "policy_id"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
        ("v=STSv1;id=abc", "abc"),
        ("v=STSv1; id=abc; ext=value", "abc"),
        ("v=STSv1", None),
        ("v=STSv1; id=", None),
        ("v=STSv1; id=a; id=b", None),
        ("v=STSv1; id=" + "a" * 33, None),
        ("id=abc; v=STSv1", None),
        ("v=STSv1; id=abc; bad field", None),
    ],
)
def test_parse_record(record: str, policy_id: str | None):
    assert mta_sts.parse_record(record)[0] == policy_id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("mode: enforce\nmx: a.test\nmax_age: 1\n", "version field is missing"),
        ("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", "version must be STSv1"),
        ("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", "mode must be"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx field"),
        ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", "max_age must be"),
        ("version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1\n", "not host names"),
        ("version: STSv1\nmode: enforce\nmode: none\nmx: a.test\nmax_age: 1\n", "more than once"),
        ("version: STSv1\nmode enforce\nmx: a.test\nmax_age: 1\n", "line 2 is not"),
    ],
)
def test_parse_policy_rejects(body: str, reason: str):
    with pytest.raises(mta_sts.PolicyError, match=reason):
        mta_sts.parse_policy(body)


def test_parse_policy_keeps_mx_order_and_extensions():
    policy = mta_sts.parse_policy(
        "version: STSv1\r\nmode: testing\r\nmx: B.test.\r\nmx: *.a.test\r\n"
        "max_age: 31557600\r\nfuture: x\r\n"
    )
    assert policy.mx == ("b.test", "*.a.test")
    assert policy.max_age == mta_sts.MAX_AGE_LIMIT
    assert policy.extensions == {"future": "x"}
    assert mta_sts.parse_policy("version: STSv1\nmode: none\nmax_age: 0").mx == ()


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("MAIL.example.com.", "mail.example.com", True),
        ("mail.example.com", "*.example.com", True),
        ("example.com", "*.example.com", False),
        ("a.b.example.com", "*.example.com", False),
        ("mail.example.net", "*.example.com", False),
    ],
)
def test_mx_matches(host: str, pattern: str, matches: bool):
    assert mta_sts.mx_matches(host, pattern) is matches
