"""The durable queue: claiming messages with a lease, recording outcomes, workers.

A claim moves ``next_attempt_at`` to the end of the lease, so a claimed row is not
due for anyone else; if its worker dies, the row becomes due again when the lease
runs out (or at once, when a worker on the same host sees the dead process).
On PostgreSQL the claim locks rows with ``FOR UPDATE SKIP LOCKED`` so workers on
several hosts never take the same row; on SQLite the single UPDATE statement is
atomic on its own. A final state is never overwritten.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from deliver.store.models import (
    PENDING_STATES,
    Contact,
    DeliveryEvent,
    Message,
    MessageState,
    Suppression,
    Worker,
    table,
)

__all__ = ["ClaimedMessage", "Outcome", "QueueStore", "process_alive"]

M = table(Message)
E = table(DeliveryEvent)
W = table(Worker)
C = table(Contact)
S = table(Suppression)


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message a worker holds the lease on, with what composing it needs."""

    id: int
    campaign_id: int
    contact_id: int
    rcpt: str
    domain: str
    attempts: int
    created_at: float
    provider: str | None
    name: str | None = None
    phone: str | None = None
    locale: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    #: the suppression reason when the address is on the list (checked at every claim)
    suppressed: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt (or a decision without one) did to a message."""

    message_id: int
    campaign_id: int
    rcpt: str
    state: MessageState
    at: float
    attempts: int
    next_attempt_at: float
    code: int | None = None
    enhanced: str | None = None
    text: str | None = None
    reason: str | None = None
    provider: str | None = None
    mx_host: str | None = None
    mx_address: str | None = None
    tls: bool = False
    duration_ms: int | None = None
    #: add the recipient to the suppression list with this reason (hard bounces)
    suppress: str | None = None
    #: record a delivery event (False for a pure scheduling decision)
    event: bool = True


def process_alive(pid: int) -> bool:
    """The process runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal said it exists
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class QueueStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"

    # ------------------------------------------------------------- workers --
    def register_worker(self, campaign_id: int | None, now: float) -> int:
        with self.engine.begin() as conn:
            row = conn.execute(
                insert(W)
                .values(
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    campaign_id=campaign_id,
                    started_at=now,
                    heartbeat_at=now,
                )
                .returning(W.c.id)
            ).one()
        return int(row[0])

    def heartbeat(self, worker_id: int, now: float, lease_until: float) -> int:
        """Renew the worker's heartbeat and every lease it holds; returns leases held."""
        with self.engine.begin() as conn:
            conn.execute(update(W).where(W.c.id == worker_id).values(heartbeat_at=now))
            result = conn.execute(
                update(M)
                .where(M.c.lease_owner == worker_id, M.c.state.in_(PENDING_STATES))
                .values(lease_until=lease_until, next_attempt_at=lease_until)
            )
        return int(result.rowcount or 0)

    def stop_worker(self, worker_id: int, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(M)
                .where(M.c.lease_owner == worker_id)
                .values(lease_owner=None, lease_until=None, next_attempt_at=now)
            )
            conn.execute(update(W).where(W.c.id == worker_id).values(stopped_at=now))

    def live_workers(self, now: float, stale_after: float) -> int:
        """Workers with a recent heartbeat (they share the providers' rates)."""
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count())
                .select_from(W)
                .where(W.c.stopped_at.is_(None), W.c.heartbeat_at >= now - stale_after)
            ).scalar_one()
        return int(n)

    def release_dead(self, now: float, stale_after: float) -> int:
        """Hand back the leases of workers that are gone: a dead process on this host,
        or no heartbeat anywhere for ``stale_after`` seconds. Returns rows released."""
        host = socket.gethostname()
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(W.c.id, W.c.host, W.c.pid, W.c.heartbeat_at).where(W.c.stopped_at.is_(None))
            ).all()
            dead = [
                r.id
                for r in rows
                if (r.host == host and r.pid != os.getpid() and not process_alive(r.pid))
                or r.heartbeat_at < now - stale_after
            ]
            if not dead:
                return 0
            released = conn.execute(
                update(M)
                .where(M.c.lease_owner.in_(dead), M.c.state.in_(PENDING_STATES))
                .values(lease_owner=None, lease_until=None, next_attempt_at=now)
            ).rowcount
            conn.execute(
                update(M)
                .where(M.c.lease_owner.in_(dead))
                .values(lease_owner=None, lease_until=None)
            )
            conn.execute(update(W).where(W.c.id.in_(dead)).values(stopped_at=now))
        return int(released or 0)

    # --------------------------------------------------------------- claim --
    def claim(
        self,
        campaign_id: int,
        worker_id: int,
        now: float,
        lease_until: float,
        limit: int,
        exclude_providers: Sequence[str] = (),
    ) -> list[ClaimedMessage]:
        """Lease up to ``limit`` due messages of the campaign, oldest due first."""
        due = (
            select(M.c.id)
            .where(
                M.c.campaign_id == campaign_id,
                M.c.state.in_(PENDING_STATES),
                M.c.next_attempt_at <= now,
            )
            .order_by(M.c.next_attempt_at)
            .limit(limit)
        )
        if exclude_providers:
            due = due.where(or_(M.c.provider.is_(None), M.c.provider.not_in(exclude_providers)))
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(M)
            .where(M.c.id.in_(due.scalar_subquery()))
            .values(lease_owner=worker_id, lease_until=lease_until, next_attempt_at=lease_until)
            .returning(
                M.c.id,
                M.c.campaign_id,
                M.c.contact_id,
                M.c.rcpt,
                M.c.domain,
                M.c.attempts,
                M.c.created_at,
                M.c.provider,
            )
        )
        with self.engine.begin() as conn:
            rows = conn.execute(stmt).all()
            if not rows:
                return []
            contacts = {
                r.id: r
                for r in conn.execute(
                    select(C.c.id, C.c.name, C.c.phone, C.c.locale, C.c.fields, S.c.reason)
                    .select_from(C.outerjoin(S, S.c.email_key == C.c.email_key))
                    .where(C.c.id.in_([r.contact_id for r in rows]))
                )
            }
        out = []
        for r in sorted(rows, key=lambda r: r.id):
            c = contacts.get(r.contact_id)
            out.append(
                ClaimedMessage(
                    r.id,
                    r.campaign_id,
                    r.contact_id,
                    r.rcpt,
                    r.domain,
                    r.attempts,
                    r.created_at,
                    r.provider,
                    c.name if c else None,
                    c.phone if c else None,
                    c.locale if c else None,
                    dict(c.fields or {}) if c else {},
                    c.reason if c else None,
                )
            )
        return out

    def postpone(
        self, message_ids: Iterable[int], until: float, *, provider: str | None = None
    ) -> None:
        """Give messages back without an attempt, due again at ``until``."""
        params = [{"mid": i} for i in message_ids]
        if not params:
            return
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "next_attempt_at": until,
        }
        if provider is not None:
            values["provider"] = provider
        with self.engine.begin() as conn:
            conn.execute(
                update(M).where(M.c.id == bindparam("mid"), _pending()).values(**values), params
            )

    def hold(
        self,
        campaign_id: int,
        until: float,
        *,
        provider: str | None = None,
        domains: Sequence[str] = (),
    ) -> int:
        """Make the waiting (unleased) messages of a provider, or of some recipient
        domains, due no earlier than ``until``: a suspension every worker sees."""
        if provider is None and not domains:
            return 0
        which = M.c.provider == provider if provider is not None else M.c.domain.in_(domains)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(M)
                .where(
                    M.c.campaign_id == campaign_id,
                    M.c.state.in_(PENDING_STATES),
                    M.c.lease_owner.is_(None),
                    M.c.next_attempt_at < until,
                    which,
                )
                .values(next_attempt_at=until)
            )
        return int(result.rowcount or 0)

    # -------------------------------------------------------------- record --
    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of outcomes in one transaction: states, events, suppressions."""
        if not outcomes:
            return
        updates = [
            {
                "mid": o.message_id,
                "state": o.state.value,
                "attempts": o.attempts,
                "next_attempt_at": o.next_attempt_at,
                "last_code": o.code,
                "last_enhanced": o.enhanced,
                "last_text": _clip(o.text),
                "reason": o.reason,
                "provider": o.provider,
                "updated_at": o.at,
                "done_at": o.at if o.state.final else None,
            }
            for o in outcomes
        ]
        stmt = (
            update(M)
            .where(M.c.id == bindparam("mid"), _pending())
            .values(
                state=bindparam("state"),
                attempts=bindparam("attempts"),
                next_attempt_at=bindparam("next_attempt_at"),
                lease_owner=None,
                lease_until=None,
                last_code=bindparam("last_code"),
                last_enhanced=bindparam("last_enhanced"),
                last_text=bindparam("last_text"),
                reason=bindparam("reason"),
                provider=func.coalesce(bindparam("provider"), M.c.provider),
                updated_at=bindparam("updated_at"),
                done_at=bindparam("done_at"),
            )
        )
        events = [
            {
                "message_id": o.message_id,
                "campaign_id": o.campaign_id,
                "at": o.at,
                "rcpt": o.rcpt,
                "provider": o.provider,
                "mx_host": o.mx_host,
                "mx_address": o.mx_address,
                "code": o.code,
                "enhanced": o.enhanced,
                "text": _clip(o.text),
                "tls": o.tls,
                "outcome": o.state.value,
                "reason": o.reason,
                "duration_ms": o.duration_ms,
            }
            for o in outcomes
            if o.event
        ]
        suppress = [
            {
                "email_key": o.rcpt.lower(),
                "reason": o.suppress,
                "source": "bounce",
                "message_id": o.message_id,
                "detail": _clip(o.text),
                "created_at": o.at,
            }
            for o in outcomes
            if o.suppress
        ]
        with self.engine.begin() as conn:
            conn.execute(stmt, updates)
            if events:
                conn.execute(insert(E), events)
            if suppress:
                conn.execute(self._insert_ignore(S, ["email_key"]), suppress)

    def _insert_ignore(self, table: Any, keys: list[str]) -> Any:
        if self._pg:
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)

    # ------------------------------------------------------------- reading --
    def next_due(self, campaign_id: int) -> float | None:
        """When the campaign's next waiting message is due (leased ones included)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.min(M.c.next_attempt_at)).where(
                    M.c.campaign_id == campaign_id, M.c.state.in_(PENDING_STATES)
                )
            ).scalar()
        return float(value) if value is not None else None

    def pending_unleased(self, campaign_id: int) -> int:
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count())
                .select_from(M)
                .where(
                    M.c.campaign_id == campaign_id,
                    M.c.state.in_(PENDING_STATES),
                    M.c.lease_owner.is_(None),
                )
            ).scalar_one()
        return int(n)

    def leased(self, campaign_id: int) -> int:
        """Messages some worker holds right now (in flight)."""
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count())
                .select_from(M)
                .where(
                    M.c.campaign_id == campaign_id,
                    M.c.lease_owner.is_not(None),
                    M.c.state.in_(PENDING_STATES),
                )
            ).scalar_one()
        return int(n)

    def counts(self, campaign_id: int) -> dict[tuple[str, str | None], int]:
        """Messages per (state, provider)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(M.c.state, M.c.provider, func.count())
                .where(M.c.campaign_id == campaign_id)
                .group_by(M.c.state, M.c.provider)
            ).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def reasons(self, campaign_id: int) -> dict[tuple[str, str], int]:
        """Messages per (state, reason) for those not delivered (bounces, deferrals)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(M.c.state, M.c.reason, func.count())
                .where(
                    M.c.campaign_id == campaign_id,
                    M.c.state != "delivered",
                    M.c.reason.is_not(None),
                )
                .group_by(M.c.state, M.c.reason)
            ).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def is_suppressed(self, email_keys: Sequence[str]) -> set[str]:
        if not email_keys:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(S.c.email_key).where(S.c.email_key.in_(email_keys))).all()
        return {r[0] for r in rows}

    def events_for(self, message_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(E).where(E.c.message_id == message_id).order_by(E.c.id))
            return [dict(r._mapping) for r in rows]

    def find_message(self, campaign_id: int, rcpt: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(M).where(
                    and_(M.c.campaign_id == campaign_id, func.lower(M.c.rcpt) == rcpt.lower())
                )
            ).first()
        return dict(row._mapping) if row else None


def _pending() -> Any:
    """``state IN ('queued', 'deferred')`` spelt so it also works in executemany()."""
    return or_(M.c.state == PENDING_STATES[0], M.c.state == PENDING_STATES[1])


def _clip(text: str | None, limit: int = 1000) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
