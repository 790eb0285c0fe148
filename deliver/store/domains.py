"""What routing learnt about recipient domains: their provider and MX hosts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from deliver.store.models import Domain, table

__all__ = ["DomainStore"]

D = table(Domain)


class DomainStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"

    def save(self, name: str, provider: str | None, mx: list[str], now: float) -> None:
        dialect = postgresql if self._pg else sqlite
        values: dict[str, Any] = {"provider": provider, "mx": {"hosts": mx}, "resolved_at": now}
        stmt = dialect.insert(D).values(name=name, **values)
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))

    def provider_of(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(D.c.provider).where(D.c.name == name)).scalar()
        return str(value) if value is not None else None
