"""What a reply means for a message: delivered, deferred, bounced or expired. Pure.

* 2xx: delivered.
* 5xx, a permanent routing failure (null MX, no such domain) or an automation rule
  with the ``bounce`` action: bounced, never retried; hard bounces (unknown user,
  unknown host, moved, not accepting mail) put the address on the suppression list.
* 4xx or no reply at all (connection refused, dropped, timed out): deferred to the
  retry schedule, or expired once the message has reached its maximum age.
"""

from __future__ import annotations

from dataclasses import dataclass

from deliver.classify import Reason, classify_reply, retry_hint
from deliver.retry import RetrySchedule
from deliver.store.models import MessageState
from deliver.store.queue import ClaimedMessage, Outcome
from deliver.transport import SmtpReply

__all__ = ["AttemptContext", "decide", "suppressed_outcome"]


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """Where and how an attempt was made (recorded with its event)."""

    provider: str | None = None
    mx_host: str | None = None
    mx_address: str | None = None
    tls: bool = False
    duration_ms: int | None = None


def decide(
    msg: ClaimedMessage,
    reply: SmtpReply,
    *,
    now: float,
    schedule: RetrySchedule,
    rand: float,
    where: AttemptContext = AttemptContext(),
    permanent: bool | None = None,
    force_bounce: bool = False,
) -> Outcome:
    """The outcome of one attempt. ``permanent`` overrides the reply code (routing)."""
    if reply.ok:
        return _attempt(msg, reply, where, now, MessageState.DELIVERED, now, Reason.DELIVERED)
    verdict = classify_reply(reply.code, reply.text, reply.enhanced)
    is_permanent = reply.permanent if permanent is None else permanent
    if is_permanent or force_bounce:
        suppress = verdict.reason.value if is_permanent and verdict.hard else None
        return _attempt(msg, reply, where, now, MessageState.BOUNCED, now, verdict.reason, suppress)
    next_at = schedule.next_attempt(
        attempts=msg.attempts + 1,
        created_at=msg.created_at,
        now=now,
        rand=rand,
        hint=retry_hint(reply.text),
    )
    if next_at is None:
        return _attempt(msg, reply, where, now, MessageState.EXPIRED, now, Reason.EXPIRED)
    return _attempt(msg, reply, where, now, MessageState.DEFERRED, next_at, verdict.reason)


def _attempt(
    msg: ClaimedMessage,
    reply: SmtpReply,
    where: AttemptContext,
    now: float,
    state: MessageState,
    next_at: float,
    reason: Reason,
    suppress: str | None = None,
) -> Outcome:
    return Outcome(
        message_id=msg.id,
        campaign_id=msg.campaign_id,
        rcpt=msg.rcpt,
        state=state,
        at=now,
        attempts=msg.attempts + 1,
        next_attempt_at=next_at,
        code=reply.code,
        enhanced=reply.enhanced,
        text=reply.text,
        reason=reason.value,
        provider=where.provider,
        mx_host=where.mx_host,
        mx_address=where.mx_address,
        tls=where.tls,
        duration_ms=where.duration_ms,
        suppress=suppress,
    )


def suppressed_outcome(msg: ClaimedMessage, now: float, why: str) -> Outcome:
    """The address went on the suppression list after the message was queued."""
    return Outcome(
        message_id=msg.id,
        campaign_id=msg.campaign_id,
        rcpt=msg.rcpt,
        state=MessageState.SUPPRESSED,
        at=now,
        attempts=msg.attempts,
        next_attempt_at=now,
        reason=Reason.SUPPRESSED.value,
        text=f"address is on the suppression list ({why})",
        provider=msg.provider,
    )
