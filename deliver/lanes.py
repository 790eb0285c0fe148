"""Provider lanes: where claimed messages wait for a connection and a rate permit.

A lane holds one provider's messages, grouped by destination (the MX hosts or the
relay: messages to one destination can share a connection). It applies the
provider's effective limits (rate, connections, messages per connection, suspension)
recomputed whenever the automation rules in force change.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator, Mapping

from deliver.routing import Route
from deliver.shaping import AutomationRule, EffectiveLimits, ProviderPolicy, effective_limits, gcra
from deliver.store.queue import ClaimedMessage

__all__ = ["Destination", "ProviderLane"]


class Destination:
    __slots__ = ("connections", "queue", "route")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.queue: deque[ClaimedMessage] = deque()
        self.connections = 0


class ProviderLane:
    def __init__(
        self,
        name: str,
        provider: str,
        policy: ProviderPolicy,
        rules: tuple[AutomationRule, ...],
        clock: Callable[[], float],
    ) -> None:
        #: the lane's key ("google", or "default:<destination>") and its provider
        self.name = name
        self.provider = provider
        self.policy = policy
        self.rules = rules
        self.clock = clock
        self.limits: EffectiveLimits = effective_limits(policy, rules, {}, clock())
        self.tat = 0.0
        self.destinations: dict[tuple[str, ...], Destination] = {}
        self.pending = 0
        self.connections = 0
        #: set when the worker stops: waiting for a permit ends at once
        self.closed = False
        #: recipient domains routed here (a default lane is held by its domains)
        self.domains: set[str] = set()

    def update(self, active: Mapping[str, float], workers: int) -> bool:
        """Recompute the limits; True when the lane just became suspended."""
        was = self.suspended_until() is not None
        self.limits = effective_limits(self.policy, self.rules, active, self.clock(), workers)
        return not was and self.suspended_until() is not None

    def suspended_until(self) -> float | None:
        until = self.limits.suspended_until
        return until if until is not None and until > self.clock() else None

    def capacity(self, horizon: float) -> int:
        """How many messages may wait here: what the rate drains within ``horizon`` s."""
        floor = max(self.limits.connections * 4, 16)
        if self.limits.rate is None:
            return max(floor, 5000)
        return int(min(max(self.limits.rate.per_second * horizon, floor), 5000))

    def drain_time(self) -> float:
        """Seconds the rate needs for what waits here now."""
        if self.limits.rate is None:
            return 0.0
        return self.pending / self.limits.rate.per_second

    def put(self, route: Route, msg: ClaimedMessage) -> Destination:
        dest = self.destinations.get(route.key)
        if dest is None:
            dest = self.destinations[route.key] = Destination(route)
        dest.queue.append(msg)
        self.pending += 1
        self.domains.add(route.domain)
        return dest

    def pop(self, dest: Destination) -> ClaimedMessage | None:
        if not dest.queue:
            return None
        self.pending -= 1
        return dest.queue.popleft()

    def push_front(self, dest: Destination, msg: ClaimedMessage) -> None:
        dest.queue.appendleft(msg)
        self.pending += 1

    def take_all(self) -> Iterator[ClaimedMessage]:
        """Empty the lane (suspension, shutdown)."""
        for dest in self.destinations.values():
            while dest.queue:
                self.pending -= 1
                yield dest.queue.popleft()

    def wants_connection(self, dest: Destination) -> bool:
        return self.connections < self.limits.connections and dest.connections < len(dest.queue)

    async def permit(self) -> bool:
        """Wait for the rate to allow one more message; False if the lane is suspended."""
        while True:
            if self.closed or self.suspended_until() is not None:
                return False
            rate = self.limits.rate
            if rate is None:
                return True
            wait, tat = gcra(self.tat, self.clock(), rate.interval, self.limits.burst)
            if wait <= 0:
                self.tat = tat
                return True
            # limits may change while waiting (a rule fires or ends): look again soon
            await asyncio.sleep(min(wait, 0.5))
