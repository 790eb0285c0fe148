"""The sending engine: one worker's loop over the durable queue.

    claim (lease) ─► route (MX → provider) ─► provider lane (shaping) ─► SMTP session
      ─► compose + DKIM sign (thread pool: the RSA step releases the GIL) ─► send
      ─► outcome (delivered / deferred / bounced / expired) ─► recorded in batches

Decisions live elsewhere and are pure (``outcomes``, ``shaping``, ``retry``,
``classify``); this module only awaits. Several workers (processes, or hosts
sharing a PostgreSQL store) run this same loop on one campaign: the queue's leases
keep them apart and the automation-rule state in the store keeps them in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from deliver.compose import MessageComposer
from deliver.dkim import DkimSigner
from deliver.errors import InputError
from deliver.lanes import Destination, ProviderLane
from deliver.outcomes import AttemptContext, decide, suppressed_outcome
from deliver.recorder import DbRunner, OutcomeRecorder, SendStats
from deliver.retry import RetrySchedule
from deliver.routing import Route, RouteFailure, Router
from deliver.settings import Settings
from deliver.shaping import ShapingPolicy
from deliver.store import Store
from deliver.store.campaigns import CampaignRecord
from deliver.store.models import MessageState
from deliver.store.queue import ClaimedMessage, Outcome
from deliver.transport import Delivery, SmtpReply, SmtpSession, open_session

__all__ = ["DeliveryEngine", "EngineOptions", "RunResult"]

_TRANSACTION_STAGES = ("mail", "rcpt", "data")


@dataclass(frozen=True, slots=True)
class EngineOptions:
    helo: str
    connect_timeout: float = 30.0
    command_timeout: float = 120.0
    lease_seconds: float = 120.0
    claim_batch: int = 400
    linger: float = 30.0
    record_batch: int = 256
    record_interval: float = 0.05
    sign_threads: int = 0
    #: workers started together with this one (``send --workers N``): they share the
    #: providers' rates from the start, before the store shows them all as live
    peers: int = 1

    @classmethod
    def from_settings(
        cls, s: Settings, linger: float | None = None, peers: int = 1
    ) -> EngineOptions:
        e = s.engine
        return cls(
            helo=s.sender.helo_name,
            connect_timeout=s.smtp.connect_timeout,
            command_timeout=s.smtp.command_timeout,
            lease_seconds=e.lease_seconds,
            claim_batch=e.claim_batch,
            linger=e.linger if linger is None else linger,
            record_batch=e.record_batch,
            record_interval=e.record_interval,
            sign_threads=e.sign_threads,
            peers=peers,
        )


@dataclass
class RunResult:
    worker_id: int = 0
    #: messages still waiting when the run ended, and when the next one is due
    waiting: int = 0
    next_due: float | None = None
    stopped: bool = False
    stats: dict[str, object] = field(default_factory=dict)


class DeliveryEngine:
    def __init__(
        self,
        *,
        store: Store,
        campaign: CampaignRecord,
        composer: MessageComposer,
        signers: Sequence[DkimSigner],
        policy: ShapingPolicy,
        router: Router,
        options: EngineOptions,
        schedule: RetrySchedule,
        stats: SendStats | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.campaign = campaign
        self.composer = composer
        self.signers = tuple(signers)
        self.policy = policy
        self.router = router
        self.opt = options
        self.schedule = schedule
        self.stats = stats or SendStats()
        self.clock = clock
        self.rng = rng or random.Random()
        self.db = DbRunner()
        self.recorder = OutcomeRecorder(
            self.db,
            store.queue,
            self.stats,
            batch=options.record_batch,
            interval=options.record_interval,
        )
        self.lanes: dict[str, ProviderLane] = {}
        self.active: dict[str, dict[str, float]] = defaultdict(dict)
        self.workers = max(options.peers, 1)
        self.worker_id = 0
        self.inflight = 0
        self.max_inflight = options.claim_batch * 2
        self.stopping = False
        self._progress = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sign_pool = ThreadPoolExecutor(
            max_workers=options.sign_threads or os.cpu_count() or 2,
            thread_name_prefix="sokures-sign",
        )

    # ---------------------------------------------------------------- run --
    async def run(self, stop: asyncio.Event | None = None) -> RunResult:
        stop = stop or asyncio.Event()
        now = self.clock()
        self.worker_id = await self.db(self.store.queue.register_worker, self.campaign.id, now)
        await self.db(self.store.queue.release_dead, now, self.opt.lease_seconds * 2)
        await self._sync_rules()
        recorder = asyncio.create_task(self.recorder.run())
        housekeeping = asyncio.create_task(self._housekeeping())
        claim = asyncio.create_task(self._claim_loop(stop))
        result = RunResult(worker_id=self.worker_id)
        try:
            # A failure to record outcomes (or of the housekeeping) stops the sending at
            # once: what is sent but not recorded is sent again later, so it must stay small.
            await asyncio.wait({claim, recorder, housekeeping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (recorder, housekeeping):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    claim.cancel()
                    raise task.exception()  # type: ignore[misc]
            result.stopped = await claim
        finally:
            await self._shutdown(recorder, housekeeping, result)
        return result

    async def _shutdown(
        self, recorder: asyncio.Task[None], housekeeping: asyncio.Task[None], result: RunResult
    ) -> None:
        """Finish the messages in hand, write what is pending, hand back the leases.
        Every step runs even if one before it fails; the first failure is raised."""
        self.stopping = True
        for lane in self.lanes.values():
            lane.closed = True
        housekeeping.cancel()
        errors: list[BaseException] = []
        steps = (self._drain, self.recorder.close, self._release, lambda: self._summarize(result))
        for step in steps:
            try:
                await step()
            except Exception as exc:
                errors.append(exc)
        recorder.cancel()
        self._sign_pool.shutdown(wait=True)
        self.db.close()
        if errors and sys.exc_info()[1] is None:
            raise errors[0]

    async def _release(self) -> None:
        await self.db(self.store.queue.stop_worker, self.worker_id, self.clock())

    async def _summarize(self, result: RunResult) -> None:
        result.waiting = await self.db(self.store.queue.pending_unleased, self.campaign.id)
        result.next_due = await self.db(self.store.queue.next_due, self.campaign.id)
        result.stats = self.stats.snapshot()

    async def _claim_loop(self, stop: asyncio.Event) -> bool:
        """Claim and dispatch until nothing is due soon; True if stopped from outside."""
        while not stop.is_set():
            room = self.max_inflight - self.inflight
            if room < self.opt.claim_batch // 2:
                await self._wait_progress(0.5)
                continue
            now = self.clock()
            batch = await self.db(
                self.store.queue.claim,
                self.campaign.id,
                self.worker_id,
                now,
                now + self.opt.lease_seconds,
                min(room, self.opt.claim_batch),
                self._blocked_providers(),
            )
            if batch:
                self.inflight += len(batch)
                await self._dispatch(batch)
                continue
            if self.inflight > 0:
                await self._wait_progress(0.5)
                continue
            # outcomes still in memory would make their messages look leased (not due)
            await self.recorder.flush()
            next_due = await self.db(self.store.queue.next_due, self.campaign.id)
            if next_due is None or next_due - self.clock() > self.opt.linger:
                return False
            await self._sleep(min(max(next_due - self.clock(), 0.05), 1.0), stop)
        return True

    # ----------------------------------------------------------- dispatch --
    async def _dispatch(self, batch: list[ClaimedMessage]) -> None:
        now = self.clock()
        routes = await self._routes({m.domain for m in batch})
        postponed: dict[tuple[float, str], list[int]] = defaultdict(list)
        for msg in batch:
            if msg.suppressed:
                self._done(suppressed_outcome(msg, now, msg.suppressed))
                continue
            route = routes[msg.domain]
            if isinstance(route, RouteFailure):
                reply = SmtpReply(route.code, route.enhanced, route.text)
                where = AttemptContext(provider=route.provider or msg.provider)
                self._done(
                    decide(
                        msg,
                        reply,
                        now=now,
                        schedule=self.schedule,
                        rand=self.rng.random(),
                        where=where,
                        permanent=route.permanent,
                    )
                )
                continue
            lane = self._lane(route)
            until = self._hold_until(lane)
            if until is not None:
                postponed[(until, lane.provider)].append(msg.id)
                continue
            dest = lane.put(route, msg)
            self._spawn(lane, dest)
        for (until, provider), ids in postponed.items():
            await self._postpone(ids, until, provider)

    async def _routes(self, domains: set[str]) -> dict[str, Route | RouteFailure]:
        names = sorted(domains)
        found = await asyncio.gather(*(self.router.route(d) for d in names))
        return dict(zip(names, found, strict=True))

    def _hold_until(self, lane: ProviderLane) -> float | None:
        """When a message for this lane should come back instead of waiting here."""
        suspended = lane.suspended_until()
        if suspended is not None:
            return suspended
        if self._lane_full(lane):
            # back when half of what waits has gone: the lane never runs dry meanwhile
            return self.clock() + max(lane.drain_time() / 2, 1.0)
        return None

    def _lane_full(self, lane: ProviderLane) -> bool:
        """The lane holds what its rate drains in half a lease, or half of the in-flight
        window: no provider's backlog may fill the whole window, or a slow provider
        (Gmail at its rate limit) would keep the others' mail from being claimed."""
        limit = lane.capacity(self.opt.lease_seconds / 2)
        # only a named provider's lane can be left out of the claims once it holds its
        # share; an unpaced lane drains as fast as it connects
        if lane.provider != "default" and lane.limits.rate is not None:
            limit = min(limit, max(self.max_inflight // 2, 1))
        return lane.pending >= limit

    def _blocked_providers(self) -> list[str]:
        """Named providers whose lane takes nothing more now (default lanes are per
        destination: holding back every unknown domain for one of them would be wrong)."""
        return [
            lane.provider
            for lane in self.lanes.values()
            if lane.provider != "default"
            and (lane.suspended_until() is not None or self._lane_full(lane))
        ]

    async def _postpone(self, ids: list[int], until: float, provider: str | None) -> None:
        await self.db(self.store.queue.postpone, ids, until, provider=provider)
        self.inflight -= len(ids)
        self.stats.postponed += len(ids)
        self._progress.set()

    def _lane(self, route: Route) -> ProviderLane:
        """The lane of a named provider, or of one destination for the default policy
        (the recipient domain through a relay, the MX hosts when direct)."""
        key = route.provider
        if key == "default":
            site = route.domain if route.relay else ",".join(h.name for h in route.hosts)
            key = f"default:{site}"
        lane = self.lanes.get(key)
        if lane is None:
            lane = ProviderLane(
                key,
                route.provider,
                self.policy.provider(route.provider),
                self.policy.rules_for(route.provider),
                self.clock,
            )
            lane.update(self.active.get(key, {}), self.workers)
            self.lanes[key] = lane
        return lane

    def _spawn(self, lane: ProviderLane, dest: Destination) -> None:
        while not self.stopping and lane.wants_connection(dest):
            lane.connections += 1
            dest.connections += 1
            task = asyncio.create_task(self._connection(lane, dest))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --------------------------------------------------------- connection --
    async def _connection(self, lane: ProviderLane, dest: Destination) -> None:
        session: SmtpSession | None = None
        try:
            session, opened = await open_session(
                dest.route,
                helo=self.opt.helo,
                tls=lane.policy.tls,
                connect_timeout=self.opt.connect_timeout,
                command_timeout=self.opt.command_timeout,
            )
            if session is None:
                await self._connection_failed(lane, dest, opened)
                return
            while not self.stopping and lane.connections <= lane.limits.connections:
                if session.sent >= lane.limits.messages_per_connection:
                    break
                msg = lane.pop(dest)
                if msg is None:
                    break
                if not await lane.permit():
                    lane.push_front(dest, msg)
                    await self._suspend_lane(lane)
                    break
                delivery = await self._deliver(session, lane, msg)
                if not delivery.usable:
                    break
        finally:
            lane.connections -= 1
            dest.connections -= 1
            if session is not None:
                await session.quit()
            if dest.queue and not self.stopping and lane.suspended_until() is None:
                self._spawn(lane, dest)
            self._progress.set()

    async def _deliver(
        self, session: SmtpSession, lane: ProviderLane, msg: ClaimedMessage
    ) -> Delivery:
        loop = asyncio.get_running_loop()
        started = self.clock()
        try:
            envelope, data = await loop.run_in_executor(
                self._sign_pool, self._prepare, msg, started
            )
        except InputError as exc:
            reply = SmtpReply(None, "5.6.0", f"local: {exc}")
            self._done(
                decide(
                    msg,
                    reply,
                    now=self.clock(),
                    schedule=self.schedule,
                    rand=0.0,
                    where=AttemptContext(provider=lane.provider),
                    permanent=True,
                )
            )
            return Delivery(reply, "compose", True, 0.0)
        delivery = await session.send(envelope, msg.rcpt, data)
        force_bounce = await self._react(lane, delivery.reply)
        now = self.clock()
        where = AttemptContext(
            provider=lane.provider,
            mx_host=session.host.name,
            mx_address=session.address,
            tls=session.tls,
            duration_ms=int(delivery.seconds * 1000),
        )
        permanent = None if delivery.stage in _TRANSACTION_STAGES else False
        self._decided(msg, delivery.reply, lane, where, now, permanent, force_bounce)
        return delivery

    def _prepare(self, msg: ClaimedMessage, now: float) -> tuple[str, bytes]:
        """Compose and sign (runs in the signing thread pool)."""
        composed = self.composer.compose(msg, now)
        stamp = int(now)
        signatures = [s.sign(composed.headers, composed.body, stamp) for s in self.signers]
        return composed.envelope_from, composed.to_bytes(signatures)

    async def _connection_failed(
        self, lane: ProviderLane, dest: Destination, opened: Delivery
    ) -> None:
        """No session: defer one message, or all of the destination's if no other
        connection to it is working (the destination is unreachable right now)."""
        force_bounce = await self._react(lane, opened.reply)
        now = self.clock()
        others = dest.connections > 1
        host = dest.route.hosts[0].name if dest.route.hosts else None
        where = AttemptContext(provider=lane.provider, mx_host=host)
        while (msg := lane.pop(dest)) is not None:
            self._decided(msg, opened.reply, lane, where, now, False, force_bounce)
            if others:
                break

    def _decided(
        self,
        msg: ClaimedMessage,
        reply: SmtpReply,
        lane: ProviderLane,
        where: AttemptContext,
        now: float,
        permanent: bool | None,
        force_bounce: bool,
    ) -> None:
        outcome = decide(
            msg,
            reply,
            now=now,
            schedule=self.schedule,
            rand=self.rng.random(),
            where=where,
            permanent=permanent,
            force_bounce=force_bounce,
        )
        self._done(outcome, lane)

    def _done(self, outcome: Outcome, lane: ProviderLane | None = None) -> None:
        until = lane.suspended_until() if lane is not None else None
        if until is not None and outcome.state is MessageState.DEFERRED:
            # no retry before the provider's suspension ends
            outcome = replace(outcome, next_attempt_at=max(outcome.next_attempt_at, until))
        self.recorder.add(outcome)
        self.inflight -= 1
        self._progress.set()

    # ------------------------------------------------------------ shaping --
    async def _react(self, lane: ProviderLane, reply: SmtpReply) -> bool:
        """Feed a reply to the lane's automation rules; True if it must bounce."""
        if reply.ok:
            return False
        text = str(reply)
        now = self.clock()
        bounce = False
        for rule in self.policy.matching_rules(lane.provider, text):
            held = self.active[lane.name].get(rule.id)
            if held is None or held < now or rule.threshold > 1:
                until = await self.db(
                    self.store.shaping.hit,
                    lane.name,
                    rule.id,
                    now,
                    threshold=rule.threshold,
                    window=rule.window,
                    duration=rule.duration,
                    text=text,
                )
                if until is not None:
                    self.active[lane.name][rule.id] = until
                    held = until
                    await self._apply(lane)
            if "bounce" in rule.actions and held is not None and held >= now:
                bounce = True
        return bounce

    async def _apply(self, lane: ProviderLane) -> None:
        if lane.update(self.active.get(lane.name, {}), self.workers):
            await self._suspend_lane(lane)
        self.stats.rules[lane.provider] = sorted(
            {
                r
                for other in self.lanes.values()
                if other.provider == lane.provider
                for r in other.limits.rules
            }
        )

    async def _suspend_lane(self, lane: ProviderLane) -> None:
        """Hand back what waits in the lane, and hold the provider's (or, for a default
        lane, its domains') other waiting messages in the store until the end."""
        until = lane.suspended_until()
        if until is None:
            return
        ids = [m.id for m in lane.take_all()]
        if ids:
            await self._postpone(ids, until, lane.provider)
        if lane.provider != "default":
            await self.db(self.store.queue.hold, self.campaign.id, until, provider=lane.provider)
        else:
            await self.db(
                self.store.queue.hold, self.campaign.id, until, domains=sorted(lane.domains)
            )

    async def _sync_rules(self) -> None:
        now = self.clock()
        active: dict[str, dict[str, float]] = defaultdict(dict)
        for rule in await self.db(self.store.shaping.active, now):
            active[rule.provider][rule.rule] = rule.active_until
        self.active = active
        for lane in self.lanes.values():
            await self._apply(lane)

    async def _housekeeping(self) -> None:
        """Every second: rule state from the store; every quarter lease: heartbeat."""
        last_beat = self.clock()
        while True:
            await asyncio.sleep(1.0)
            await self._sync_rules()
            now = self.clock()
            if now - last_beat >= self.opt.lease_seconds / 4:
                last_beat = now
                lease = now + self.opt.lease_seconds
                await self.db(self.store.queue.heartbeat, self.worker_id, now, lease)
                await self.db(self.store.queue.release_dead, now, self.opt.lease_seconds * 2)
                workers = await self.db(self.store.queue.live_workers, now, self.opt.lease_seconds)
                workers = max(workers, self.opt.peers, 1)
                if workers != self.workers:
                    self.workers = workers
                    for lane in self.lanes.values():
                        await self._apply(lane)

    # ------------------------------------------------------------ helpers --
    async def _drain(self) -> None:
        """Let connections finish the message in hand; release what still waits."""
        while self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.opt.command_timeout + 5)
        for lane in self.lanes.values():
            for _ in lane.take_all():
                self.inflight -= 1

    async def _wait_progress(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout)
        self._progress.clear()

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
