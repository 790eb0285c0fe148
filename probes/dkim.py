"""DKIM key records: ``<selector>._domainkey.<domain>`` checked per selector.

One TXT lookup per selector; the record is parsed once (:func:`inspect_record`, pure) and
turned into findings: ``dkim.key_present``, ``dkim.key_syntax`` (RFC 6376 §3.2 tag list,
§3.6.1 tags), ``dkim.revoked`` (empty ``p=``), ``dkim.key_type`` (``k=`` against the key
in ``p=``, RFC 8463), ``dkim.key_bits`` (RFC 8301), ``dkim.testing`` (``t=y``) and
``dkim.key_match`` (the published key against the one derived from sokures.toml's private
key). Every result carries ``selector`` in its evidence, so several selectors can share one
list; :func:`verdict` sums one selector's results up in one word for the benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from deliver.dkim import read_private_key
from deliver.dns import DnsAnswer, DnsStatus
from probes.checks import CheckResult, ProbeContext, Status, dns_error, fail, passed, warn

__all__ = [
    "KeyInspection",
    "audit",
    "audit_selector",
    "inspect_record",
    "parse_tag_list",
    "public_key_bytes",
    "verdict",
]

_KEY_TYPES = ("rsa", "ed25519")
# RFC 6376 §3.2: tag-name = ALPHA *ALNUMPUNC; tag values are VALCHARs (%x21-3A / %x3C-7E)
# with folding whitespace between them
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_TAG_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]+(?:[ \t\r\n]+[\x21-\x3a\x3c-\x7e]+)*\Z")
_WSP = re.compile(r"[ \t\r\n]+")
# a TXT record that means to be a key record: v=DKIM... first, or a p= tag somewhere
_KEYISH = re.compile(r"\A[ \t]*v[ \t]*=[ \t]*DKIM|(?:\A|;)[ \t]*p[ \t]*=", re.IGNORECASE)
_ED25519_BYTES = 32  # RFC 8463 §4.2: p= is the raw 32-byte public key


def parse_tag_list(text: str) -> dict[str, str]:
    """RFC 6376 §3.2 tag list as an ordered ``{name: value}``; ValueError says what is wrong.

    Whitespace around names and values is dropped (inside a value it is kept); empty
    segments (``a=1;;b=2``, a final ``;``) are tolerated as verifiers do.
    """
    tags: dict[str, str] = {}
    for segment in text.split(";"):
        if not segment.strip(" \t\r\n"):
            continue
        name, equals, value = segment.partition("=")
        name, value = name.strip(" \t\r\n"), value.strip(" \t\r\n")
        if not equals:
            raise ValueError(f"{segment.strip()!r} is not a tag=value pair")
        if not _TAG_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid tag name")
        if value and not _TAG_VALUE.match(value):
            raise ValueError(f"the value of {name}= holds characters a tag value cannot hold")
        if name in tags:  # §3.2: a duplicated tag makes the entire tag list invalid
            raise ValueError(f"tag {name}= appears twice")
        tags[name] = value
    return tags


def render_record(tags: dict[str, str]) -> str:
    """A key record from tags: v= first (§3.6.1), p= last, the rest in between."""
    rest = [f"{k}={v}" for k, v in tags.items() if k not in ("v", "p")]
    return "; ".join(["v=DKIM1", *rest, f"p={tags.get('p', '')}"])


@dataclass(slots=True)
class KeyInspection:
    """What one key record says, without any I/O. ``syntax``/``type_problem`` are None when
    that part is fine; ``public`` is the normalised public key (DER SubjectPublicKeyInfo
    for RSA, the raw 32 bytes for Ed25519) when ``p=`` held a usable key."""

    record: str
    tags: dict[str, str] = field(default_factory=dict)
    syntax: str | None = None
    syntax_fix: str | None = None
    type_problem: str | None = None
    type_fix: str | None = None
    algorithm: str | None = None  # what p= holds: "rsa" | "ed25519"
    declared: str = "rsa"  # what k= says (RFC 6376 §3.6.1: rsa by default)
    bits: int | None = None
    public: bytes | None = None
    revoked: bool = False
    testing: bool = False


def inspect_record(record: str) -> KeyInspection:
    """Parse and judge one key record (pure; the benchmark calls this 1,000 times)."""
    out = KeyInspection(record)
    try:
        out.tags = tags = parse_tag_list(record)
    except ValueError as exc:
        out.syntax = f"the record is not a valid tag list (RFC 6376 §3.2): {exc}"
        return out
    flags = {f.strip() for f in tags.get("t", "").split(":")}
    out.testing = "y" in flags
    version = tags.get("v")
    if version is not None and version != "DKIM1":
        out.syntax = f"v={version}: a key record's version must be DKIM1 (RFC 6376 §3.6.1)"
        out.syntax_fix = render_record(tags)
        return out
    if version is not None and next(iter(tags)) != "v":
        out.syntax = "v=DKIM1 must be the first tag of the record (RFC 6376 §3.6.1)"
        out.syntax_fix = render_record(tags)
    services = {s.strip() for s in tags.get("s", "*").split(":")}
    if not services & {"*", "email"}:
        out.syntax = f"s={tags['s']}: the key may not be used for email (RFC 6376 §3.6.1)"
        out.syntax_fix = render_record({k: v for k, v in tags.items() if k != "s"})
    if "p" not in tags:
        out.syntax = "no p= tag: the record holds no public key (RFC 6376 §3.6.1)"
        return out
    out.declared = tags.get("k", "rsa").lower()
    _check_hashes(out)
    if out.declared not in _KEY_TYPES:
        out.type_problem = (f"k={tags['k']} is not a key type: verifiers ignore the record; "
                            "write k=rsa or k=ed25519")  # fmt: skip
    p = _WSP.sub("", tags["p"])
    if not p:
        out.revoked = True  # §3.6.1: an empty p= means the key has been revoked
        return out
    try:
        data = base64.b64decode(p, validate=True)
    except (binascii.Error, ValueError):
        out.syntax = "p= is not valid base64 (RFC 6376 §3.6.1)"
        return out
    _load_key(out, data)
    return out


def _check_hashes(out: KeyInspection) -> None:
    hashes = {h.strip().lower() for h in out.tags.get("h", "sha256").split(":")}
    if "sha256" not in hashes:
        out.type_problem = (f"h={out.tags['h']} excludes sha256, the only hash a signer may use "
                            "(RFC 8301 §3.1): remove h=")  # fmt: skip
        out.type_fix = render_record({k: v for k, v in out.tags.items() if k != "h"})


def _load_key(out: KeyInspection, data: bytes) -> None:
    """Find what p= holds and whether it fits k= (RFC 6376 §3.6.1, RFC 8463 §4.2)."""
    if len(data) == _ED25519_BYTES:
        out.algorithm, out.bits, out.public = "ed25519", 256, data
    else:
        try:  # SubjectPublicKeyInfo, or a bare PKCS#1 RSAPublicKey as some publish
            key = serialization.load_der_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            out.syntax = ("p= does not decode to a public key (truncated or corrupted); "
                          "publish the whole key again")  # fmt: skip
            return
        if isinstance(key, rsa.RSAPublicKey):
            out.algorithm, out.bits = "rsa", key.key_size
            out.public = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        elif isinstance(key, ed25519.Ed25519PublicKey):
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            out.syntax = ("p= holds an Ed25519 key as SubjectPublicKeyInfo; RFC 8463 §4.2 "
                          "publishes the raw 32 bytes")  # fmt: skip
            out.syntax_fix = render_record({**out.tags, "k": "ed25519", "p": _b64(raw)})
            return
        else:
            out.syntax = f"p= holds a {type(key).__name__.removeprefix('_')}, not an RSA key"
            return
    if out.declared in _KEY_TYPES and out.declared != out.algorithm:
        said = f"k={out.tags['k']}" if "k" in out.tags else "no k= (rsa by default)"
        out.type_problem = (f"{said} but p= holds an {_NAMES[out.algorithm]} key: make k= "
                            "name the key's algorithm")  # fmt: skip
        out.type_fix = render_record({**out.tags, "k": out.algorithm})


_NAMES = {"rsa": "RSA", "ed25519": "Ed25519"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _local_record(local: bytes) -> str:
    algorithm = "ed25519" if len(local) == _ED25519_BYTES else "rsa"
    return f"v=DKIM1; k={algorithm}; p={_b64(local)}"


# --- the probe -----------------------------------------------------------------------


async def audit(ctx: ProbeContext, domain: str) -> list[CheckResult]:
    """Every key check for each selector in ``ctx.options.selectors`` (none: no results)."""
    selectors = ctx.options.selectors
    if not selectors:
        return []
    if len(selectors) == 1:
        return await audit_selector(ctx, domain, selectors[0])
    per = await asyncio.gather(*(audit_selector(ctx, domain, s) for s in selectors))
    return [result for results in per for result in results]


async def audit_selector(ctx: ProbeContext, domain: str, selector: str) -> list[CheckResult]:
    name = f"{selector}._domainkey.{domain.rstrip('.')}"
    answer = await ctx.resolver.query(name, "TXT")
    local = ctx.options.local_keys.get(selector)
    return _judge_answer(answer, name, selector, local)


def _judge_answer(
    answer: DnsAnswer, name: str, selector: str, local: bytes | None
) -> list[CheckResult]:
    if not answer.status.definitive:
        found = dns_error("dkim.key_present", answer, f"the DKIM key record {name}")
        return [CheckResult(found.id, found.status, found.message,
                            {**found.evidence, "selector": selector})]  # fmt: skip
    texts = answer.texts() if answer.status is DnsStatus.OK else []
    keys = [t for t in texts if _KEYISH.search(t)]
    fix = _local_record(local) if local is not None else None
    if not keys:
        seen = f"only other TXT records ({len(texts)})" if texts else answer.status.value
        message = (f"no DKIM key record at {name} ({seen}): publish the selector's public key "
                   f'there as TXT "v=DKIM1; k=rsa; p=<base64 key>"')  # fmt: skip
        return [fail("dkim.key_present", message, fix, selector=selector, name=name,
                     dns=answer.status.value, records=texts)]  # fmt: skip
    results = [passed("dkim.key_present", f"DKIM key record found at {name}",
                      selector=selector, name=name, record=keys[0])]  # fmt: skip
    if len(texts) > 1:
        results.append(fail(
            "dkim.key_syntax",
            f"{len(texts)} TXT records at {name}: verifiers' results are undefined "
            "(RFC 6376 §3.6.2.2); keep exactly one key record there",
            fix, selector=selector, records=texts,
        ))  # fmt: skip
        return results
    return results + _judge_record(inspect_record(keys[0]), selector, local)


def _judge_record(seen: KeyInspection, selector: str, local: bytes | None) -> list[CheckResult]:
    ev: dict[str, Any] = {"selector": selector, "record": seen.record}
    results: list[CheckResult] = []
    local_fix = _local_record(local) if local is not None else None
    if seen.syntax is not None:
        results.append(fail("dkim.key_syntax", seen.syntax, seen.syntax_fix or local_fix, **ev))
    else:
        results.append(passed("dkim.key_syntax", "the key record's tags are valid", **ev))
    if not seen.tags:  # not even a tag list: nothing else can be read
        return results
    results.append(_judge_revoked(seen, selector, local_fix))
    key_ev: dict[str, Any] = {"selector": selector, "algorithm": seen.algorithm,
                              "bits": seen.bits, "declared": seen.declared}  # fmt: skip
    if seen.type_problem is not None:
        results.append(fail("dkim.key_type", seen.type_problem, seen.type_fix, **key_ev))
    elif seen.algorithm is not None:
        message = f"k={seen.declared} matches the {_NAMES[seen.algorithm]} key in p="
        results.append(passed("dkim.key_type", message, **key_ev))
    if seen.algorithm is not None and seen.type_problem is None:
        results.append(_judge_bits(seen, key_ev))
    results.append(_judge_testing(seen, selector))
    if local is not None and seen.syntax is None and not seen.revoked:
        results.append(_judge_match(seen, selector, local))
    return results


def _judge_revoked(seen: KeyInspection, selector: str, fix: str | None) -> CheckResult:
    if seen.revoked:
        message = ("the key is revoked (empty p=): signatures with this selector fail; "
                   "publish the current public key or sign with another selector")  # fmt: skip
        return fail("dkim.revoked", message, fix, selector=selector, record=seen.record)
    return passed("dkim.revoked", "the key is not revoked", selector=selector)


def _judge_bits(seen: KeyInspection, key_ev: dict[str, Any]) -> CheckResult:
    bits = seen.bits or 0
    if seen.algorithm == "ed25519":
        return passed("dkim.key_bits", "Ed25519 key (RFC 8463)", **key_ev)
    if bits < 1024:  # RFC 8301 §3.2: signers MUST use at least 1024 bits
        message = (f"RSA key of {bits} bits: keys under 1024 bits must not be used "
                   "(RFC 8301 §3.2) and receivers ignore them; generate a 2048-bit key "
                   "and publish it")  # fmt: skip
        return fail("dkim.key_bits", message, **key_ev)
    if bits < 2048:  # RFC 8301 §3.2: signers SHOULD use at least 2048 bits
        message = (f"RSA key of {bits} bits: 2048 bits are recommended (RFC 8301 §3.2); "
                   "rotate to a 2048-bit key")  # fmt: skip
        return warn("dkim.key_bits", message, **key_ev)
    if bits > 4096:  # RFC 8301 §3.2: verifiers need only handle keys up to 4096 bits
        message = (f"RSA key of {bits} bits: verifiers need only accept up to 4096 "
                   "(RFC 8301 §3.2); use 2048")  # fmt: skip
        return warn("dkim.key_bits", message, **key_ev)
    return passed("dkim.key_bits", f"RSA key of {bits} bits", **key_ev)


def _judge_testing(seen: KeyInspection, selector: str) -> CheckResult:
    if not seen.testing:
        return passed("dkim.testing", "the key is not in testing mode", selector=selector)
    flags = ":".join(f for f in seen.tags["t"].split(":") if f.strip() != "y")
    fixed = {k: v for k, v in seen.tags.items() if k != "t"}
    if flags:
        fixed["t"] = flags
    message = ("the key is in testing mode (t=y): receivers treat failures as unsigned; "
               "remove y from t= once signing works")  # fmt: skip
    return warn("dkim.testing", message, render_record(fixed), selector=selector,
                flags=seen.tags["t"])  # fmt: skip


def _judge_match(seen: KeyInspection, selector: str, local: bytes) -> CheckResult:
    ev = {"selector": selector, "algorithm": seen.algorithm}
    if seen.public is not None and seen.public == local:
        message = "the published key is the public half of the configured private key"
        return passed("dkim.key_match", message, **ev)
    what = "is another key" if seen.public is not None else "holds no usable key"
    message = (f"the record published for selector {selector} {what}: signatures made with "
               "the private key in sokures.toml will fail; publish the record in fix")  # fmt: skip
    return fail("dkim.key_match", message, _local_record(local), **ev)


# --- summaries and helpers for the CLI and the benchmark -----------------------------

_VERDICT_ORDER = (
    ("dkim.key_present", Status.FAIL, "missing"),
    ("dkim.revoked", Status.FAIL, "revoked"),
    ("dkim.key_syntax", Status.FAIL, "invalid"),
    ("dkim.key_type", Status.FAIL, "invalid"),
    ("dkim.key_bits", Status.FAIL, "invalid"),
    ("dkim.key_bits", Status.WARN, "weak"),
    ("dkim.testing", Status.WARN, "valid_testing"),
)
_VERDICT_IDS = frozenset(check_id for check_id, _, _ in _VERDICT_ORDER)


def verdict(results: Sequence[CheckResult], selector: str) -> str:
    """One word for ``selector``'s key record: valid, valid_testing, weak, missing,
    revoked, invalid or error (a lookup that could not be made). ``dkim.key_match`` is
    not part of it: it compares with local configuration, not the record alone."""
    mine = {
        (r.id, r.status)
        for r in results
        if r.id in _VERDICT_IDS and r.evidence.get("selector") == selector
    }
    if not mine:
        raise ValueError(f"no DKIM key results for selector {selector!r}")
    if any(status is Status.ERROR for _, status in mine):
        return "error"
    for check_id, status, word in _VERDICT_ORDER:
        if (check_id, status) in mine:
            return word
    return "valid"


def public_key_bytes(private_key_path: str | Path) -> tuple[str, bytes]:
    """(algorithm, public key) of a DKIM private key file, as ``ProbeOptions.local_keys``
    holds it: ("rsa", DER SubjectPublicKeyInfo) or ("ed25519", the raw 32 bytes).

    Reads PEM (PKCS#1 or PKCS#8) and dkimpy's base64 Ed25519 seed; errors name the file,
    never its content.
    """
    key = read_private_key(Path(private_key_path))
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "rsa", der
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519", raw
