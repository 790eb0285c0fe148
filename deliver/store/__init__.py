"""The store: every query sokures runs lives in this package.

``Store.open(url)`` returns the engine with the schema migrated and one object per
concern (``contacts``, ``campaigns``, ``queue``, ``shaping``, ``domains``, ``probes``,
``placement``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from deliver.store.campaigns import CampaignRecord, CampaignStore
from deliver.store.contacts import ContactRow, ContactStore, MergeCounts
from deliver.store.database import open_engine, redact_url
from deliver.store.domains import DomainStore
from deliver.store.models import MessageState
from deliver.store.placement import PlacementStore
from deliver.store.probes import ProbeStore, StoredReport
from deliver.store.queue import ClaimedMessage, Outcome, QueueStore
from deliver.store.shaping_state import ActiveRule, ShapingStateStore

__all__ = [
    "ActiveRule",
    "CampaignRecord",
    "ClaimedMessage",
    "ContactRow",
    "MergeCounts",
    "MessageState",
    "Outcome",
    "PlacementStore",
    "ProbeStore",
    "Store",
    "StoredReport",
    "redact_url",
]


@dataclass(frozen=True)
class Store:
    engine: Engine
    contacts: ContactStore
    campaigns: CampaignStore
    queue: QueueStore
    shaping: ShapingStateStore
    domains: DomainStore
    probes: ProbeStore
    placement: PlacementStore

    @classmethod
    def open(cls, url: str) -> Store:
        engine = open_engine(url)
        return cls(
            engine,
            ContactStore(engine),
            CampaignStore(engine),
            QueueStore(engine),
            ShapingStateStore(engine),
            DomainStore(engine),
            ProbeStore(engine),
            PlacementStore(engine),
        )

    def close(self) -> None:
        self.engine.dispose()
