"""Running ``sokures send``: build the engine from the settings, run one or more
worker processes, and show their progress.

With ``--workers N`` each worker is its own process with its own event loop and
signing threads, claiming from the same durable queue; the parent only displays
the counters the workers report. SIGINT/SIGTERM stop the workers cleanly: they
finish the message in hand and hand the rest back to the queue.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue as queue_mod
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deliver.compose import MessageComposer, SenderIdentity
from deliver.dkim import DkimSigner
from deliver.dns import Resolver
from deliver.engine import DeliveryEngine, EngineOptions, RunResult
from deliver.errors import ConfigError
from deliver.recorder import SendStats
from deliver.retry import RetrySchedule
from deliver.routing import Router
from deliver.settings import Settings
from deliver.shaping import ShapingPolicy
from deliver.store import Store
from deliver.store.campaigns import CampaignRecord
from deliver.tokens import TokenSigner, load_token_key
from deliver.units import parse_host_port

__all__ = [
    "SendRequest",
    "SendSummary",
    "build_engine",
    "run_send",
    "sender_identity",
    "signers_for",
]

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SendRequest:
    """What ``sokures send`` was asked to do (picklable: worker processes get it)."""

    campaign: str
    relay: str | None = None
    linger: float | None = None
    workers: int = 1


@dataclass
class SendSummary:
    campaign: str
    seconds: float
    stats: dict[str, Any]
    waiting: int = 0
    next_due: float | None = None
    stopped: bool = False
    worker_errors: list[str] = field(default_factory=list)


def sender_identity(settings: Settings) -> SenderIdentity:
    s = settings.sender
    domain = settings.require_domain()
    if not s.unsubscribe_url or not s.unsubscribe_url.startswith("https://"):
        raise ConfigError(
            f"{settings.config_path}: sender.unsubscribe_url must be an https URL "
            "(RFC 8058 one-click unsubscribe)"
        )
    if not s.unsubscribe_mailto or "@" not in s.unsubscribe_mailto:
        raise ConfigError(f"{settings.config_path}: sender.unsubscribe_mailto must be an address")
    return SenderIdentity(
        domain=domain,
        bounce_domain=s.bounce_domain or domain,
        bounce_prefix=s.bounce_prefix,
        unsubscribe_url=s.unsubscribe_url,
        unsubscribe_mailto=s.unsubscribe_mailto,
        feedback_sender=s.feedback_id,
    )


def signers_for(settings: Settings) -> list[DkimSigner]:
    domain = settings.require_domain()
    keys = settings.signing_keys
    if not keys:
        raise ConfigError(f"{settings.config_path}: no DKIM key configured: run `sokures init`")
    return [DkimSigner.from_file(domain, k.selector, k.key_file, k.algorithm) for k in keys]


def build_engine(
    settings: Settings,
    store: Store,
    campaign: CampaignRecord,
    request: SendRequest,
    stats: SendStats,
) -> DeliveryEngine:
    policy = ShapingPolicy.load(settings.shaping_file)
    tokens = TokenSigner(load_token_key(settings.sender.token_key_file))
    composer = MessageComposer(campaign, sender_identity(settings), tokens)
    relay = request.relay if request.relay is not None else settings.smtp.relay
    if relay:
        try:
            relay_address = parse_host_port(relay, 25)
        except ValueError as exc:
            raise ConfigError(f"--relay {exc}") from None
        router = Router(None, policy, relay=relay_address)
    else:
        resolver = Resolver(
            settings.dns.nameservers,
            timeout=settings.dns.timeout,
            concurrency=settings.dns.concurrency,
        )
        router = Router(resolver, policy, port=settings.smtp.port)
    return DeliveryEngine(
        store=store,
        campaign=campaign,
        composer=composer,
        signers=signers_for(settings),
        policy=policy,
        router=router,
        options=EngineOptions.from_settings(settings, request.linger, peers=request.workers),
        schedule=RetrySchedule.from_settings(settings.retry),
        stats=stats,
    )


async def _run_engine(
    settings: Settings, request: SendRequest, report: ProgressFn | None, stop: asyncio.Event
) -> RunResult:
    store = Store.open(settings.database_url)
    try:
        campaign = store.campaigns.get(request.campaign)
        stats = SendStats()
        engine = build_engine(settings, store, campaign, request, stats)
        task = asyncio.create_task(engine.run(stop))
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if report:
                report(stats.snapshot())
        return task.result()
    finally:
        store.close()


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _worker_main(settings: Settings, request: SendRequest, updates: Any, index: int) -> None:
    """A worker process: runs the engine, sends counter snapshots to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns ^C into SIGTERM

    async def main() -> RunResult:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        return await _run_engine(
            settings, request, lambda snap: updates.put(("stats", index, snap)), stop
        )

    try:
        result = asyncio.run(main())
        updates.put(("done", index, result.stats, result.waiting, result.next_due, result.stopped))
    except Exception as exc:  # reported by the parent as a one-line error
        updates.put(("error", index, f"{type(exc).__name__}: {exc}"))


def run_send(
    settings: Settings, request: SendRequest, *, progress: ProgressFn | None = None
) -> SendSummary:
    """Send the campaign with ``request.workers`` workers; returns when they are done."""
    started = time.monotonic()
    if request.workers <= 1:
        return _run_in_process(settings, request, progress, started)
    ctx = mp.get_context("spawn")
    updates = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main, args=(settings, request, updates, i), name=f"sokures-worker-{i}"
        )
        for i in range(request.workers)
    ]
    for p in procs:
        p.start()

    def forward(*_: object) -> None:  # ^C or SIGTERM: the workers stop cleanly
        for p in procs:
            p.terminate()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = _collect(request, procs, updates, progress)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in procs:
            p.join(timeout=30)
    summary.seconds = time.monotonic() - started
    return summary


def _collect(
    request: SendRequest, procs: list[Any], updates: Any, progress: ProgressFn | None
) -> SendSummary:
    """Read the workers' reports until each has finished (or died)."""
    snaps: dict[int, dict[str, Any]] = {}
    summary = SendSummary(request.campaign, 0.0, {})
    finished: set[int] = set()
    while len(finished) < len(procs):
        try:
            kind, index, *rest = updates.get(timeout=0.25)
        except queue_mod.Empty:
            for i, p in enumerate(procs):
                if not p.is_alive() and i not in finished:
                    finished.add(i)
                    summary.worker_errors.append(f"worker {i} exited with code {p.exitcode}")
            continue
        if kind in ("stats", "done"):
            snaps[index] = rest[0]
        if kind == "done":
            summary.waiting = rest[1]
            summary.next_due = min(filter(None, [summary.next_due, rest[2]]), default=None)
            summary.stopped = summary.stopped or rest[3]
            finished.add(index)
        elif kind == "error":
            summary.worker_errors.append(f"worker {index}: {rest[0]}")
            finished.add(index)
        if progress and snaps:
            progress(SendStats.merge(list(snaps.values())))
    summary.stats = SendStats.merge(list(snaps.values()))
    return summary


def _run_in_process(
    settings: Settings, request: SendRequest, progress: ProgressFn | None, started: float
) -> SendSummary:
    async def main() -> RunResult:
        stop = asyncio.Event()
        _install_stop(stop)
        return await _run_engine(settings, request, progress, stop)

    result = asyncio.run(main())
    return SendSummary(
        request.campaign,
        time.monotonic() - started,
        dict(result.stats),
        waiting=result.waiting,
        next_due=result.next_due,
        stopped=result.stopped,
    )
