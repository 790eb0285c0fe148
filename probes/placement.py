"""Seed-inbox placement: where a campaign's copies land at each provider.

A run sends every seed mailbox of a seed list (:mod:`probes.seedlist`) one copy of the
campaign's message, composed, DKIM-signed, routed and sent the way ``sokures send`` sends
(:class:`deliver.compose.MessageComposer`, :class:`deliver.routing.Router`,
:func:`deliver.transport.open_session`), marked with a token of its own in the
``X-Sokures-Seed`` header and in the body. It then reads each seed mailbox
(:mod:`probes.mailboxes`: IMAP with special-use folders and Gmail's extensions, or the
lab's Maildir directly when no IMAP server answers) until the copy is found or the
deadline passes. Each seed ends as ``inbox``, ``promotions`` (a Gmail tab), ``spam``,
``missing`` (never arrived, or refused at SMTP: the reply is kept) or ``error`` (its
mailbox could not be read); per provider, the rates of each.

The decisions (:func:`summarize`, :func:`classify_missing`) are pure; the I/O is thin.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deliver.compose import MessageComposer
from deliver.dns import Resolver
from deliver.routing import Route, Router
from deliver.send import sender_identity, signers_for
from deliver.settings import Settings
from deliver.shaping import ShapingPolicy
from deliver.store.campaigns import CampaignRecord
from deliver.store.queue import ClaimedMessage
from deliver.tokens import TokenSigner, load_token_key
from deliver.transport import open_session
from deliver.units import parse_host_port
from probes.mailboxes import SEED_HEADER, MailboxReader
from probes.seedlist import Seed, SeedList

__all__ = ["PLACEMENTS", "PlacementOptions", "SeedResult", "run_placement", "summarize"]

PLACEMENTS = ("inbox", "promotions", "spam", "missing", "error")
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits
#: message ids of seed copies live far above any queue id, so a bounce of a seed copy
#: never traces back to a campaign message
_SEED_ID_BASE = 1 << 48


def new_token() -> str:
    return "sk" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(20))


@dataclass(frozen=True)
class PlacementOptions:
    #: seconds to wait for every copy after the last one was sent
    timeout: float = 300.0
    #: seconds between two reads of a mailbox
    interval: float = 2.0


@dataclass
class SeedResult:
    seed: Seed
    token: str
    placement: str = "missing"
    sent_at: float | None = None
    smtp_reply: str | None = None
    folder: str | None = None
    category: str | None = None
    found_at: float | None = None
    auth_results: tuple[str, ...] = ()
    detail: str | None = None
    #: the copy was accepted by the receiver: there is something to look for
    accepted: bool = field(default=False, repr=False)

    @property
    def seconds(self) -> float | None:
        if self.found_at is None or self.sent_at is None:
            return None
        return round(max(0.0, self.found_at - self.sent_at), 2)

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.seed.address, "provider": self.seed.provider,
                "token": self.token, "placement": self.placement, "folder": self.folder,
                "category": self.category, "sent_at": self.sent_at, "found_at": self.found_at,
                "seconds": self.seconds, "smtp_reply": self.smtp_reply,
                "auth_results": "\n".join(self.auth_results) or None,
                "detail": self.detail}  # fmt: skip


def summarize(results: Sequence[SeedResult]) -> dict[str, dict[str, Any]]:
    """Per provider: seeds, the count of each placement and its rate (of the seeds)."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        row = out.setdefault(r.seed.provider, {"seeds": 0, **dict.fromkeys(PLACEMENTS, 0)})
        row["seeds"] += 1
        row[r.placement] += 1
    for row in out.values():
        row["rates"] = {p: round(row[p] / row["seeds"], 4) for p in PLACEMENTS}
    return out


def classify_missing(result: SeedResult) -> None:
    """Why a copy that was not found is missing (pure: reads the result's own facts)."""
    if result.placement != "missing" or result.detail:
        return
    if not result.accepted and result.smtp_reply:
        result.detail = f"refused at SMTP: {result.smtp_reply}"
    elif result.accepted:
        result.detail = "accepted, not in the mailbox by the deadline"


# --- sending ------------------------------------------------------------------------------


def _claimed(campaign: CampaignRecord, seed: Seed, index: int, run_id: int) -> ClaimedMessage:
    domain = seed.address.rpartition("@")[2]
    return ClaimedMessage(id=_SEED_ID_BASE + run_id * 1000 + index, campaign_id=campaign.id,
                          contact_id=0, rcpt=seed.address, domain=domain, attempts=0,
                          created_at=time.time(), provider=None, name="Seed",
                          fields={"email": seed.address})  # fmt: skip


async def send_copies(
    settings: Settings, campaign: CampaignRecord, results: Sequence[SeedResult], run_id: int
) -> None:
    """Compose, sign and send each seed its copy; the SMTP reply goes in its result."""
    tokens = TokenSigner(load_token_key(settings.sender.token_key_file))
    composer = MessageComposer(campaign, sender_identity(settings), tokens)
    signers = signers_for(settings)
    policy = ShapingPolicy.load(settings.shaping_file)
    if settings.smtp.relay:
        router = Router(None, policy, relay=parse_host_port(settings.smtp.relay, 25))
    else:
        resolver = Resolver(settings.dns.nameservers, timeout=settings.dns.timeout)
        router = Router(resolver, policy, port=settings.smtp.port)

    async def one(index: int, result: SeedResult) -> None:
        msg = _claimed(campaign, result.seed, index, run_id)
        composed = composer.compose(msg, time.time(), extra_headers=[(SEED_HEADER, result.token)],
                                    footer=f"seed reference {result.token}")  # fmt: skip
        stamp = int(time.time())
        signatures = [s.sign(composed.headers, composed.body, stamp) for s in signers]
        route = await router.route(msg.domain)
        if not isinstance(route, Route):
            result.smtp_reply = f"{route.code} {route.enhanced} {route.text}"
            return
        session, opened = await open_session(
            route, helo=settings.sender.helo_name, tls=policy.provider(route.provider).tls,
            connect_timeout=30.0, command_timeout=60.0,
        )  # fmt: skip
        if session is None:
            result.smtp_reply = str(opened.reply)
            return
        try:
            result.sent_at = time.time()
            sent = await session.send(composed.envelope_from, msg.rcpt,
                                      composed.to_bytes(signatures))  # fmt: skip
            result.smtp_reply = str(sent.reply)
            result.accepted = sent.reply.ok
        finally:
            await session.quit()

    await asyncio.gather(*(one(i, r) for i, r in enumerate(results)))


# --- reading ------------------------------------------------------------------------------


def open_reader(seed: Seed, secret: str) -> MailboxReader:
    """The seed's mailbox reader, logged in: IMAP; the Maildir when IMAP is unreachable
    and the seed names one that exists."""
    from probes.mailboxes import ImapReader, MailboxUnreachable, MaildirReader

    reader: MailboxReader = ImapReader(seed.imap_host, seed.imap_port, seed.imap_user, secret,
                                       auth=seed.auth, tls=seed.tls)  # fmt: skip
    try:
        reader.connect()
    except MailboxUnreachable:
        reader.close()
        if seed.maildir is None or not seed.maildir.exists():
            raise
        reader = MaildirReader(seed.maildir, seed.provider)
        reader.connect()
    return reader


def watch(
    result: SeedResult, secret: str, deadline: float, interval: float,
    on_found: Callable[[SeedResult], None] | None = None,
) -> None:  # fmt: skip
    """Read the seed's mailbox until its copy shows up or ``deadline`` (monotonic) passes.
    Runs in a worker thread: the readers are synchronous (imaplib)."""
    from probes.mailboxes import MailboxError

    try:
        reader = open_reader(result.seed, secret)
    except MailboxError as exc:
        result.placement, result.detail = "error", str(exc)
        return
    try:
        while True:
            found = reader.find(result.token)
            if found is not None:
                result.placement, result.folder = found.placement, found.folder
                result.category, result.auth_results = found.category, found.auth_results
                result.found_at = found.arrived_at or time.time()
                if on_found is not None:
                    on_found(result)
                return
            if time.monotonic() + interval > deadline:
                return
            time.sleep(interval)
    except MailboxError as exc:
        result.placement, result.detail = "error", str(exc)
    finally:
        reader.close()


async def run_placement(
    settings: Settings,
    campaign: CampaignRecord,
    seeds: SeedList,
    secrets_by_seed: Sequence[str],
    options: PlacementOptions,
    run_id: int = 0,
    on_found: Callable[[SeedResult], None] | None = None,
) -> list[SeedResult]:
    """Send and read; every seed's result, in the seed list's order. ``secrets_by_seed``:
    each seed's password or token (:meth:`Seed.secret`), read before anything is sent."""
    results = [SeedResult(seed, new_token()) for seed in seeds.seeds]
    await send_copies(settings, campaign, results, run_id)
    deadline = time.monotonic() + options.timeout
    await asyncio.gather(*(
        asyncio.to_thread(watch, r, secret, deadline, options.interval, on_found)
        for r, secret in zip(results, secrets_by_seed, strict=True) if r.accepted
    ))  # fmt: skip
    for r in results:
        classify_missing(r)
    return results
