"""Automation-rule state shared by every worker: matching replies and active actions.

Each matching reply is a row, so workers in several processes or hosts count them
without read-modify-write races; a rule whose trigger fires gets ``active_until``,
which every worker reads back within a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from deliver.store.models import ShapingHit, ShapingState, table

__all__ = ["ActiveRule", "ShapingStateStore"]

H = table(ShapingHit)
ST = table(ShapingState)


@dataclass(frozen=True, slots=True)
class ActiveRule:
    provider: str
    rule: str
    active_until: float


class ShapingStateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"

    def hit(
        self,
        provider: str,
        rule: str,
        now: float,
        *,
        threshold: int,
        window: float,
        duration: float,
        text: str,
    ) -> float | None:
        """Count a matching reply; when ``threshold`` hits fall inside ``window`` seconds,
        the rule becomes active for ``duration``. Returns ``active_until`` if it fired."""
        with self.engine.begin() as conn:
            if threshold > 1:
                conn.execute(insert(H).values(provider=provider, rule=rule, at=now))
                hits = conn.execute(
                    select(func.count())
                    .select_from(H)
                    .where(H.c.provider == provider, H.c.rule == rule, H.c.at > now - window)
                ).scalar_one()
                if int(hits) < threshold:
                    return None
            until = now + duration
            dialect = postgresql if self._pg else sqlite
            stmt = dialect.insert(ST).values(
                provider=provider,
                rule=rule,
                active_until=until,
                last_text=text[:1000],
                updated_at=now,
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["provider", "rule"],
                    set_={"active_until": until, "last_text": text[:1000], "updated_at": now},
                )
            )
            # a fired trigger starts counting afresh
            conn.execute(delete(H).where(H.c.provider == provider, H.c.rule == rule))
        return until

    def active(self, now: float) -> list[ActiveRule]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ST.c.provider, ST.c.rule, ST.c.active_until).where(ST.c.active_until > now)
            ).all()
        return [ActiveRule(r[0], r[1], float(r[2])) for r in rows]

    def clear(self, provider: str | None = None) -> None:
        """End every active rule (of one provider): an operator's reset."""
        with self.engine.begin() as conn:
            stmt = update(ST).values(active_until=None)
            if provider:
                stmt = stmt.where(ST.c.provider == provider)
            conn.execute(stmt)

    def prune(self, before: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(H).where(H.c.at < before))
