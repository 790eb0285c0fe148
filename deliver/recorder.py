"""Writing outcomes in batches, and the counters the progress view shows.

Outcomes wait in memory for at most ``interval`` seconds (or until ``batch`` of them
are waiting) and are written in one transaction. Until then their messages keep the
lease, so a crash in between leaves them queued: they are sent again, and that is
the bound on duplicates after a crash (the messages in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from deliver.store.queue import Outcome, QueueStore

__all__ = ["DbRunner", "OutcomeRecorder", "SendStats"]

P = ParamSpec("P")
T = TypeVar("T")
STATES = ("delivered", "deferred", "bounced", "expired", "suppressed")


class DbRunner:
    """Runs store calls on one dedicated thread: the event loop never waits on a commit."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sokures-db")

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class SendStats:
    """Outcomes per provider in this run; snapshots are plain dicts (picklable)."""

    started: float = field(default_factory=time.monotonic)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    postponed: int = 0
    rules: dict[str, list[str]] = field(default_factory=dict)

    def count(self, provider: str | None, state: str) -> None:
        per = self.counts.setdefault(provider or "default", dict.fromkeys(STATES, 0))
        per[state] = per.get(state, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "elapsed": time.monotonic() - self.started,
            "counts": {p: dict(c) for p, c in self.counts.items()},
            "postponed": self.postponed,
            "rules": {p: list(r) for p, r in self.rules.items()},
        }

    @staticmethod
    def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"elapsed": 0.0, "counts": {}, "postponed": 0, "rules": {}}
        for snap in snapshots:
            out["elapsed"] = max(out["elapsed"], snap["elapsed"])
            out["postponed"] += snap["postponed"]
            for provider, counts in snap["counts"].items():
                per = out["counts"].setdefault(provider, dict.fromkeys(STATES, 0))
                for state, n in counts.items():
                    per[state] = per.get(state, 0) + n
            for provider, rules in snap["rules"].items():
                out["rules"].setdefault(provider, [])
                out["rules"][provider] = sorted(set(out["rules"][provider]) | set(rules))
        return out


class OutcomeRecorder:
    def __init__(
        self,
        db: DbRunner,
        queue: QueueStore,
        stats: SendStats,
        *,
        batch: int = 256,
        interval: float = 0.05,
    ) -> None:
        self.db = db
        self.queue = queue
        self.stats = stats
        self.batch = batch
        self.interval = interval
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._closed = False
        self.written = 0

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        if outcome.event or outcome.state.final:
            self.stats.count(outcome.provider, outcome.state.value)
        if len(self._pending) >= self.batch:
            self._wake.set()

    async def run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.batch], self._pending[self.batch :]
            await self.db(self.queue.record, batch)
            self.written += len(batch)

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        await self.flush()
