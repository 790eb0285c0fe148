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


def decide(msg: ClaimedMessage, reply: SmtpReply, *, now: float, schedule: RetrySchedule,
           rand: float, where: AttemptContext = AttemptContext(), permanent: bool | None = None,
           force_bounce: bool = False) -> Outcome:
    """The outcome of one attempt. ``permanent`` overrides the reply code (routing)."""
    attempts = msg.attempts + 1
    common = dict(message_id=msg.id, campaign_id=msg.campaign_id, rcpt=msg.rcpt, at=now,
                  attempts=attempts, code=reply.code, enhanced=reply.enhanced, text=reply.text,
                  provider=where.provider, mx_host=where.mx_host, mx_address=where.mx_address,
                  tls=where.tls, duration_ms=where.duration_ms)
    if reply.ok:
        return Outcome(state=MessageState.DELIVERED, next_attempt_at=now,
                       reason=Reason.DELIVERED.value, **common)  # type: ignore[arg-type]
    verdict = classify_reply(reply.code, reply.text, reply.enhanced)
    is_permanent = reply.permanent if permanent is None else permanent
    if is_permanent or force_bounce:
        return Outcome(state=MessageState.BOUNCED, next_attempt_at=now, reason=verdict.reason.value,
                       suppress=verdict.reason.value if is_permanent and verdict.hard else None,
                       **common)  # type: ignore[arg-type]
    hint = retry_hint(reply.text)
    next_at = schedule.next_attempt(attempts=attempts, created_at=msg.created_at, now=now,
                                    rand=rand, hint=hint)
    if next_at is None:
        return Outcome(state=MessageState.EXPIRED, next_attempt_at=now,
                       reason=Reason.EXPIRED.value, **common)  # type: ignore[arg-type]
    return Outcome(state=MessageState.DEFERRED, next_attempt_at=next_at,
                   reason=verdict.reason.value, **common)  # type: ignore[arg-type]


def suppressed_outcome(msg: ClaimedMessage, now: float, why: str) -> Outcome:
    """The address went on the suppression list after the message was queued."""
    return Outcome(message_id=msg.id, campaign_id=msg.campaign_id, rcpt=msg.rcpt,
                   state=MessageState.SUPPRESSED, at=now, attempts=msg.attempts,
                   next_attempt_at=now, reason=Reason.SUPPRESSED.value,
                   text=f"address is on the suppression list ({why})", provider=msg.provider)
