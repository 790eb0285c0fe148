"""``dkim``: DKIM signing rate against raw ``cryptography`` RSA-2048, in the same run.

The message is a ~4 KB campaign message built by the project's own composer
(``MessageComposer`` with the benchmark template), signed exactly as the engine signs
it: ``DkimSigner.sign(headers, body, timestamp)``. The baseline is
``key.sign(data, PKCS1v15(), SHA256())`` over data the size of the whole message (DKIM
hashes the body for ``bh=`` and then the signed headers, about the message's size in
all). One thread, the two interleaved in blocks so they share the machine's noise;
dkimpy's own rate (fewer signatures) is given for reference. Before timing, one of
our signatures is checked byte for byte against dkimpy's for the same input.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import dkim as dkimpy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from benchmarks.common import BenchOptions, log
from benchmarks.stats import BenchResult, Row, Series, ratios
from benchmarks.workspace import DOMAIN, SUBJECT, TEMPLATE
from deliver.compose import ComposedMessage, MessageComposer, SenderIdentity, compile_templates
from deliver.dkim import DEFAULT_SIGNED_HEADERS, DkimSigner, dns_record, generate_key
from deliver.store.campaigns import CampaignRecord
from deliver.store.queue import ClaimedMessage
from deliver.tokens import TokenSigner

NAME = "dkim"
BLOCKS = 6
TARGET = 0.8


def compose_message(now: float) -> ComposedMessage:
    """One recipient's message, through the composer the engine uses."""
    html, text = compile_templates(TEMPLATE, "news.html", SUBJECT)
    campaign = CampaignRecord(
        1, "bench", 1, "default", "news@example.com", "News", SUBJECT,
        html, text, "news.html", now, 1,
    )  # fmt: skip
    sender = SenderIdentity(
        DOMAIN, DOMAIN, "bounce", f"https://{DOMAIN}/unsubscribe", f"unsubscribe@{DOMAIN}",
        "sokures",
    )  # fmt: skip
    composer = MessageComposer(campaign, sender, TokenSigner(secrets.token_bytes(32)))
    msg = ClaimedMessage(
        12345, 1, 12345, "rcpt12345@dest2.test", "dest2.test", 0, now, "default",
        name="Person 12345",
    )  # fmt: skip
    return composer.compose(msg, now)


def pem_of(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def dkimpy_sign(pem: bytes, data: bytes) -> bytes:
    """dkimpy with the signer's settings (it parses the PEM at every call, as it is used)."""
    return bytes(
        dkimpy.sign(
            data, b"bench", DOMAIN.encode(), pem,
            include_headers=list(DEFAULT_SIGNED_HEADERS), canonicalize=(b"relaxed", b"simple"),
        )
    )  # fmt: skip


def check_identical(signer: DkimSigner, key: rsa.RSAPrivateKey, msg: ComposedMessage) -> None:
    """Our signature equals dkimpy's for the same message and timestamp, and verifies."""
    data = msg.to_bytes()
    reference = dkimpy_sign(pem_of(key), data)
    found = re.search(rb"\bt=(\d+)", reference)
    assert found is not None
    ours = signer.sign(msg.headers, msg.body, int(found.group(1)))
    if ours != reference:
        raise AssertionError("DkimSigner's signature differs from dkimpy's for the same input")
    record = dns_record(key).encode()
    if not dkimpy.verify(ours + data, dnsfunc=lambda name, timeout=5: record):
        raise AssertionError("dkimpy does not verify DkimSigner's signature")


@dataclass
class Timer:
    count: int = 0
    seconds: float = 0.0

    def run(self, fn: Callable[[], object], n: int) -> None:
        started = time.perf_counter()
        for _ in range(n):
            fn()
        self.seconds += time.perf_counter() - started
        self.count += n

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def one_round(
    signer: DkimSigner, key: rsa.RSAPrivateKey, msg: ComposedMessage, n: int
) -> dict[str, float]:
    data = msg.to_bytes()
    ts = int(time.time())
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    ours, raw = Timer(), Timer()
    per = max(n // BLOCKS, 1)
    for block in range(BLOCKS):
        sides = [(ours, lambda: signer.sign(msg.headers, msg.body, ts)),
                 (raw, lambda: key.sign(data, pad, sha))]  # fmt: skip
        for timer, fn in sides if block % 2 == 0 else reversed(sides):
            timer.run(fn, per)
    pem = pem_of(key)
    ref = Timer()
    ref.run(lambda: dkimpy_sign(pem, data), max(n // 25, 10))
    return {
        "ours_per_s": ours.rate,
        "raw_per_s": raw.rate,
        "dkimpy_per_s": ref.rate,
        "signatures": ours.count,
        "dkimpy_signatures": ref.count,
    }


def run(opts: BenchOptions) -> BenchResult:
    n = 300 if opts.quick else 3000
    key = generate_key("rsa-sha256")
    assert isinstance(key, rsa.RSAPrivateKey)
    signer = DkimSigner(DOMAIN.encode(), b"bench", key)
    msg = compose_message(time.time())
    check_identical(signer, key, msg)
    size = len(msg.to_bytes())
    log(f"dkim: {size} B message from MessageComposer; signature identical to dkimpy's")
    result = BenchResult(setup={"message_bytes": size, "key_bits": key.key_size, "n": n})
    for i in range(opts.rounds):
        numbers = one_round(signer, key, msg, n)
        log(
            f"dkim round {i + 1}/{opts.rounds}: ours {numbers['ours_per_s']:.0f}/s, "
            f"raw {numbers['raw_per_s']:.0f}/s, dkimpy {numbers['dkimpy_per_s']:.0f}/s"
        )
        result.rounds.append(numbers)
    ours = [r["ours_per_s"] for r in result.rounds]
    raw = [r["raw_per_s"] for r in result.rounds]
    ref = [r["dkimpy_per_s"] for r in result.rounds]
    ratio = ratios(ours, raw)
    result.rows += [
        Row(NAME, "RSA-2048 signatures/s (1 thread)", Series.of(ours, "/s"),
            Series.of(raw, "/s"), ratio, f">= {TARGET}", ratio.median >= TARGET),
        Row(NAME, "dkimpy signatures/s (reference)", Series.of(ref, "/s"),
            Series.of(raw, "/s"), ratios(ref, raw)),
    ]  # fmt: skip
    result.notes.append(
        f"dkim: {size} B composed message, relaxed/simple, {len(DEFAULT_SIGNED_HEADERS)} "
        f"header fields signed; raw = key.sign() over {size} B; peer column = raw cryptography"
    )
    return result
