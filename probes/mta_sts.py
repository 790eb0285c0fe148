"""MTA-STS (RFC 8461): the ``_mta-sts`` TXT record, the HTTPS policy, and its mx patterns.

``mta_sts.record``  the TXT record at ``_mta-sts.<domain>`` (``v=STSv1; id=...``, §3.1)
``mta_sts.policy``  the policy at ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (§3.2,
                    §3.3), fetched when ``ctx.http`` is set and ``options.fetch_mta_sts``
``mta_sts.mx``      every MX host matches one of the policy's mx patterns (§4.1)

Fetching the policy through our resolver
-----------------------------------------
The name ``mta-sts.<domain>`` is resolved with ``ctx.resolver`` (the run's nameserver,
e.g. the lab's), never the system resolver that httpx would use. The request then goes to
the resolved address, while TLS and HTTP still see the host name:

* the URL names the address (``https://192.0.2.1/.well-known/mta-sts.txt``), so httpx
  connects there without resolving anything;
* ``extensions={"sni_hostname": host}`` makes httpcore send ``host`` as SNI and, since
  Python's ``ssl`` checks the certificate against the ``server_hostname`` it is given,
  verify the certificate for ``host`` (RFC 8461 §3.3 requires a valid certificate for it)
  with the client's own trust settings (``verify=``), which tests point at a throwaway CA;
* the ``Host`` header names ``host``, so virtual hosting works;
* ``Connection: close``, because httpcore pools connections by URL origin (scheme, address,
  port), not by SNI: two domains served from one address would otherwise share a connection
  whose certificate was verified for the first one only.

This keeps the caller's ``httpx.AsyncClient`` as it is (no custom transport to build or
inject), and it is the documented httpcore extension rather than a patched resolver. The
client should speak HTTP/1.1 only (httpx's default): an HTTP/2 connection multiplexes
requests for several host names over one TLS session. Redirects are not followed (§3.3),
and the body read is capped.

The port is 443 (:data:`POLICY_PORT`, §3.3); :func:`audit` and :func:`check_policy` take
``port=`` so that tests can reach a server on an unprivileged port.

Statuses: a lookup or connection that fails (DNS failure, timeout, refused connection, TLS
handshake or certificate error, a 5xx) is ``error``: the policy could not be read. A policy
that is served but unusable (a redirect, 404, wrong media type, bad syntax) is ``fail``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deliver.dns import MxRecord
from probes.checks import CheckResult, ProbeContext, dns_error, error, fail, passed, warn

if TYPE_CHECKING:
    import httpx

__all__ = [
    "MAX_AGE_LIMIT",
    "POLICY_PATH",
    "POLICY_PORT",
    "PolicyError",
    "StsPolicy",
    "audit",
    "check_policy",
    "mx_matches",
    "parse_policy",
    "parse_record",
]

#: RFC 8461 §3.3: the policy is fetched over HTTPS on the standard port
POLICY_PORT = 443
POLICY_PATH = "/.well-known/mta-sts.txt"
#: §3.2: max_age is at most 31557600 seconds (about a year)
MAX_AGE_LIMIT = 31_557_600
#: under a day, a policy is refetched so often that it protects little
MIN_USEFUL_MAX_AGE = 86_400
#: far more than any real policy needs; a bigger body is not read further
MAX_POLICY_BYTES = 64 * 1024
#: addresses of mta-sts.<domain> tried in turn when a connection cannot be made
MAX_ADDRESSES = 3

_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_SEP = re.compile(r"[ \t]*;[ \t]*")
_LINES = re.compile(r"\r?\n")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+")
_MODES = ("enforce", "testing", "none")


# --- the TXT record (§3.1) -------------------------------------------------------------


def parse_record(text: str) -> tuple[str | None, str | None]:
    """``(id, None)`` for a valid record, ``(None, reason)`` otherwise."""
    fields = _SEP.split(text.strip())
    if fields and fields[-1] == "":
        fields.pop()  # a trailing separator is allowed
    if not fields or fields[0] != "v=STSv1":
        return None, 'the record must begin with "v=STSv1" (case as written)'
    seen: dict[str, str] = {}
    for item in fields[1:]:
        name, eq, value = item.partition("=")
        if not eq or not _EXT_NAME.fullmatch(name) or not _EXT_VALUE.fullmatch(value):
            return None, f"field {item!r} is not name=value"
        if name in seen:
            return None, f"field {name!r} appears more than once"
        seen[name] = value
    if "id" not in seen:
        return None, "the id= field is missing"
    if not _ID.fullmatch(seen["id"]):
        return None, f"id={seen['id']!r} must be 1 to 32 letters and digits"
    return seen["id"], None


def _record_fix(domain: str, texts: Sequence[str]) -> str:
    candidate = ""
    for text in texts:
        match = re.search(r"id\s*=\s*([^;\s]*)", text)
        if match:
            candidate = re.sub(r"[^A-Za-z0-9]", "", match.group(1))[:32]
            break
    return f'_mta-sts.{domain}. TXT "v=STSv1; id={candidate or "20250101000000"}"'


async def _check_record(ctx: ProbeContext, domain: str) -> tuple[CheckResult, bool]:
    """The record's result, and whether the domain announces MTA-STS at all."""
    name = f"_mta-sts.{domain}"
    answer = await ctx.resolver.query(name, "TXT")
    if not answer.status.definitive:
        return dns_error("mta_sts.record", answer, f"the MTA-STS record {name}"), False
    texts = [t for t in answer.texts() if t.lower().startswith("v=stsv1")]
    if not texts:
        return warn(
            "mta_sts.record",
            f"no MTA-STS record at {name}: MTA-STS is recommended, so that senders deliver "
            "to your MX hosts only over verified TLS; publish the policy at "
            f"https://mta-sts.{domain}{POLICY_PATH} and then this TXT record",
            fix=_record_fix(domain, ()),
            name=name,
            dns=answer.status.value,
        ), False
    if len(texts) > 1:
        return fail(
            "mta_sts.record",
            f"{len(texts)} MTA-STS records at {name}: with more than one, senders ignore "
            "MTA-STS (RFC 8461 §3.1); keep exactly one",
            fix=_record_fix(domain, texts),
            name=name,
            records=texts,
        ), True
    policy_id, reason = parse_record(texts[0])
    if policy_id is None:
        return fail(
            "mta_sts.record",
            f"the MTA-STS record at {name} is malformed: {reason} (RFC 8461 §3.1)",
            fix=_record_fix(domain, texts),
            name=name,
            record=texts[0],
        ), True
    return passed(
        "mta_sts.record",
        f"MTA-STS record published (id={policy_id})",
        name=name,
        record=texts[0],
        policy_id=policy_id,
    ), True


# --- the policy (§3.2) -----------------------------------------------------------------


class PolicyError(ValueError):
    """A policy body that is not a valid MTA-STS policy; the message says why."""


@dataclass(frozen=True, slots=True)
class StsPolicy:
    version: str
    mode: str
    max_age: int
    mx: tuple[str, ...] = ()
    #: other fields, kept for the evidence (§3.2 allows extensions)
    extensions: dict[str, str] = field(default_factory=dict)

    def to_evidence(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "mode": self.mode,
            "max_age": self.max_age,
            "mx": list(self.mx),
            "extensions": dict(self.extensions),
        }


def parse_policy(text: str) -> StsPolicy:
    """Parse a policy body (``key: value`` lines, LF or CRLF); PolicyError says what is wrong."""
    single: dict[str, str] = {}
    mx: list[str] = []
    extensions: dict[str, str] = {}
    for number, line in enumerate(_LINES.split(text), 1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        key, value = key.strip().lower(), value.strip(" \t")
        if not colon or not key:
            raise PolicyError(f"line {number} is not 'key: value': {line[:80]!r}")
        if key == "mx":
            mx.append(value)
        elif key in ("version", "mode", "max_age"):
            if key in single:
                raise PolicyError(f"{key} appears more than once (line {number})")
            single[key] = value
        else:
            extensions.setdefault(key, value)
    for key in ("version", "mode", "max_age"):
        if key not in single:
            raise PolicyError(f"the {key} field is missing")
    if single["version"].lower() != "stsv1":
        raise PolicyError(f"version must be STSv1, not {single['version']!r}")
    mode = single["mode"].lower()
    if mode not in _MODES:
        raise PolicyError(f"mode must be enforce, testing or none, not {single['mode']!r}")
    max_age = _max_age(single["max_age"])
    bad = [p for p in mx if not _MX_PATTERN.fullmatch(p.rstrip("."))]
    if bad:
        raise PolicyError(
            f"mx pattern(s) {', '.join(map(repr, bad))} are not host names "
            "(a leading '*.' is the only wildcard allowed)"
        )
    if not mx and mode != "none":
        raise PolicyError(f"no mx field: a policy in mode {mode} must list its MX hosts")
    patterns = tuple(p.rstrip(".").lower() for p in mx)
    return StsPolicy("STSv1", mode, max_age, patterns, extensions)


def _max_age(value: str) -> int:
    # §3.2: 1*10 DIGIT, at most 31557600
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise PolicyError(f"max_age must be a number of seconds, not {value!r}")
    seconds = int(value)
    if seconds > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age {seconds} is over the limit of {MAX_AGE_LIMIT} seconds")
    return seconds


def mx_matches(host: str, pattern: str) -> bool:
    """RFC 8461 §4.1: exact match, or ``*.`` matching exactly one leftmost label."""
    host, pattern = host.rstrip(".").lower(), pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return host == pattern


# --- fetching --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fetched:
    url: str
    address: str
    status_code: int = 0
    content_type: str = ""
    body: bytes = b""
    location: str | None = None
    truncated: bool = False
    #: a failure to connect or to read: its reason
    failure: str | None = None
    tls_failure: bool = False


async def _get(client: httpx.AsyncClient, host: str, address: str, port: int) -> _Fetched:
    """One GET of the policy at ``address``, with ``host`` as SNI, certificate name and
    Host header (see the module docstring)."""
    import httpx  # here, so that importing the probes does not load the HTTP stack

    netloc = f"[{address}]" if ":" in address else address
    url = f"https://{netloc}:{port}{POLICY_PATH}"
    shown = f"https://{host}{'' if port == POLICY_PORT else f':{port}'}{POLICY_PATH}"
    headers = {
        "Host": host if port == POLICY_PORT else f"{host}:{port}",
        "Connection": "close",
        "Accept": "text/plain",
    }
    try:
        async with client.stream(
            "GET", url, headers=headers, follow_redirects=False, extensions={"sni_hostname": host}
        ) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_POLICY_BYTES:
                    break
            return _Fetched(
                shown,
                address,
                response.status_code,
                response.headers.get("content-type", ""),
                bytes(body[:MAX_POLICY_BYTES]),
                response.headers.get("location"),
                len(body) > MAX_POLICY_BYTES,
            )
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return _Fetched(
            shown,
            address,
            failure=f"{type(exc).__name__}: {reason}"[:300],
            tls_failure=_is_tls(exc),
        )


def _is_tls(exc: BaseException) -> bool:
    """httpx wraps ssl errors (handshake, certificate) in ConnectError: look down the chain."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _addresses(ctx: ProbeContext, host: str) -> tuple[list[str], CheckResult | None]:
    """A and AAAA of ``host`` through ``ctx.resolver``; a result when there are none."""
    v4, v6 = await asyncio.gather(ctx.resolver.query(host, "A"), ctx.resolver.query(host, "AAAA"))
    addresses = [*v4.addresses(), *v6.addresses()]
    if addresses:
        return addresses, None
    failed = next((a for a in (v4, v6) if not a.status.definitive), None)
    if failed is not None:
        return [], dns_error("mta_sts.policy", failed, f"the policy host {host}")
    return [], fail(
        "mta_sts.policy",
        f"{host} has no A or AAAA record, so senders cannot fetch the MTA-STS policy the TXT "
        "record announces; publish an address for it (a web server with a certificate for "
        f"{host}) or remove the _mta-sts record",
        host=host,
        dns=v4.status.value,
    )


async def _fetch(
    client: httpx.AsyncClient, host: str, addresses: Sequence[str], port: int
) -> _Fetched:
    """Try the addresses in turn until one answers (or fails TLS: that is the answer)."""
    fetched = _Fetched("", "")
    for address in addresses[:MAX_ADDRESSES]:
        fetched = await _get(client, host, address, port)
        if fetched.failure is None or fetched.tls_failure:
            break
    return fetched


async def check_policy(
    ctx: ProbeContext, domain: str, *, port: int = POLICY_PORT
) -> list[CheckResult]:
    """``mta_sts.policy`` and, when the policy parses, ``mta_sts.mx``.

    ``port`` is 443 in real use (RFC 8461 §3.3); tests pass their HTTPS server's port.
    Needs ``ctx.http``; without it there is nothing to report."""
    if ctx.http is None:
        return []
    host = f"mta-sts.{domain}"
    addresses, problem = await _addresses(ctx, host)
    if problem is not None:
        return [problem]
    fetched = await _fetch(ctx.http, host, addresses, port)
    result, policy = _judge(host, fetched)
    if policy is None:
        return [result]
    return [result, await _check_mx(ctx, domain, policy)]


def _judge(host: str, got: _Fetched) -> tuple[CheckResult, StsPolicy | None]:
    """The policy check's result from what the fetch returned, and the parsed policy."""
    seen: dict[str, Any] = {"url": got.url, "address": got.address}
    if got.failure is not None:
        what = "the TLS handshake failed" if got.tls_failure else "the fetch failed"
        advice = (
            f"; the web server must present a valid certificate for {host}"
            if got.tls_failure
            else ""
        )
        return error(
            "mta_sts.policy",
            f"could not fetch the MTA-STS policy from {got.url}: "
            f"{what} ({got.failure}){advice}; check not made",
            reason=got.failure,
            **seen,
        ), None
    seen.update(status_code=got.status_code, content_type=got.content_type)
    if 300 <= got.status_code < 400:
        return fail(
            "mta_sts.policy",
            f"{got.url} answers with a redirect ({got.status_code} "
            f"to {got.location}), which senders must not follow (RFC 8461 §3.3); "
            "serve the policy at this URL itself",
            location=got.location,
            **seen,
        ), None
    if got.status_code in (404, 410):
        return fail(
            "mta_sts.policy",
            f"no MTA-STS policy at {got.url} (HTTP {got.status_code})"
            ", though the TXT record announces one; publish the policy there",
            **seen,
        ), None
    if got.status_code != 200:
        return error(
            "mta_sts.policy",
            f"{got.url} answered HTTP {got.status_code}; "
            "the policy could not be read; check not made",
            **seen,
        ), None
    return _judge_body(got, seen)


def _judge_body(got: _Fetched, seen: dict[str, Any]) -> tuple[CheckResult, StsPolicy | None]:
    media_type = got.content_type.split(";", 1)[0].strip().lower()
    if media_type != "text/plain":
        return fail(
            "mta_sts.policy",
            f"{got.url} is served as {got.content_type or 'no type'!r}"
            "; senders expect text/plain (RFC 8461 §3.2, §3.3): set the Content-Type",
            **seen,
        ), None
    if got.truncated:
        return fail(
            "mta_sts.policy",
            f"{got.url} is over {MAX_POLICY_BYTES} bytes: that is not an MTA-STS policy",
            **seen,
        ), None
    try:
        text = got.body.decode("utf-8")
        policy = parse_policy(text)
    except (UnicodeDecodeError, PolicyError) as exc:
        reason = str(exc) if isinstance(exc, PolicyError) else "the body is not UTF-8"
        return fail(
            "mta_sts.policy",
            f"the MTA-STS policy at {got.url} is invalid: {reason} (RFC 8461 §3.2)",
            body=got.body[:2000].decode("utf-8", "replace"),
            **seen,
        ), None
    seen["policy"] = policy.to_evidence()
    if policy.mode == "none":
        return warn(
            "mta_sts.policy",
            "the MTA-STS policy is in mode none: senders stop "
            "applying MTA-STS; use mode testing, then enforce",
            **seen,
        ), policy
    if policy.max_age < MIN_USEFUL_MAX_AGE:
        return warn(
            "mta_sts.policy",
            f"max_age {policy.max_age} is under a day: senders "
            "refetch the policy so often that it protects little; use weeks "
            "(e.g. 1209600) once it works",
            **seen,
        ), policy
    note = "" if policy.mode == "enforce" else " (testing: failures are only reported)"
    return passed(
        "mta_sts.policy", f"valid MTA-STS policy, mode {policy.mode}{note}", **seen
    ), policy


async def _check_mx(ctx: ProbeContext, domain: str, policy: StsPolicy) -> CheckResult:
    answer = await ctx.resolver.query(domain, "MX")
    if not answer.status.definitive:
        return dns_error("mta_sts.mx", answer, f"the MX records of {domain}")
    hosts = sorted(
        {r.exchange.lower() for r in answer.records if isinstance(r, MxRecord) and r.exchange}
    )
    evidence: dict[str, Any] = {"mx": hosts, "patterns": list(policy.mx), "mode": policy.mode}
    if not hosts:
        missing = "a null MX" if answer.ok else "no MX record"
        return warn(
            "mta_sts.mx",
            f"{domain} has {missing}: the MTA-STS policy has no MX host "
            "to apply to (see mx.present)",
            dns=answer.status.value,
            **evidence,
        )
    unmatched = [h for h in hosts if not any(mx_matches(h, p) for p in policy.mx)]
    if not unmatched:
        return passed("mta_sts.mx", "every MX host matches the policy's mx patterns", **evidence)
    fix = "\n".join(f"mx: {h}" for h in unmatched)
    message = (
        f"MX host(s) {', '.join(unmatched)} match no mx pattern of the MTA-STS policy "
        f"({', '.join(policy.mx) or 'none'}); add them to the policy"
    )
    if policy.mode == "enforce":
        return fail(
            "mta_sts.mx",
            f"{message}: senders that honour MTA-STS will not deliver to them",
            fix=fix,
            unmatched=unmatched,
            **evidence,
        )
    if policy.mode == "testing":
        return warn(
            "mta_sts.mx",
            f"{message} before moving to mode enforce",
            fix=fix,
            unmatched=unmatched,
            **evidence,
        )
    return passed(
        "mta_sts.mx",
        f"mode none: the mx patterns are not applied ({message})",
        unmatched=unmatched,
        **evidence,
    )


async def audit(ctx: ProbeContext, domain: str, *, port: int = POLICY_PORT) -> list[CheckResult]:
    """``mta_sts.record``, then the policy and mx checks when the record announces MTA-STS,
    an HTTP client is given and fetching is on."""
    record, announced = await _check_record(ctx, domain)
    if not announced or ctx.http is None or not ctx.options.fetch_mta_sts:
        return [record]
    return [record, *await check_policy(ctx, domain, port=port)]
