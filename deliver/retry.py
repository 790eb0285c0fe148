"""When to try a deferred message again, and when to give up on it.

Exponential backoff with jitter, capped, until the message's maximum age; a hint in
the reply ("try again in 30 seconds") is honoured instead of the schedule. There is
always one last attempt at the maximum age itself; a message still deferred after
it is expired with its last reply kept. Pure: the caller passes ``now`` and a
uniform random number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deliver.settings import RetrySettings

__all__ = ["RetrySchedule"]


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    initial: float = 300.0
    factor: float = 2.0
    max_interval: float = 4 * 3600.0
    max_age: float = 5 * 86400.0
    jitter: float = 0.2

    @classmethod
    def from_settings(cls, s: RetrySettings) -> RetrySchedule:
        return cls(s.initial, s.factor, s.max_interval, s.max_age, s.jitter)

    def delay(self, attempts: int, rand: float, hint: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 = the first)."""
        if hint is not None:
            return min(max(hint, 1.0), self.max_interval)
        try:
            grown = self.initial * self.factor ** max(attempts - 1, 0)
        except OverflowError:  # float ** raises past 1e308 (a thousand short retries do it)
            grown = math.inf
        base = min(grown, self.max_interval)
        return max(base * (1.0 + self.jitter * (2.0 * rand - 1.0)), 1.0)

    def next_attempt(
        self,
        *,
        attempts: int,
        created_at: float,
        now: float,
        rand: float,
        hint: float | None = None,
    ) -> float | None:
        """When to try again, or None when the message has reached its maximum age."""
        deadline = created_at + self.max_age
        if now >= deadline:
            return None
        return min(now + self.delay(attempts, rand, hint), deadline)
