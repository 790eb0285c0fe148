"""Helpers shared by the store and contacts tests: the database URL per backend, and
small builders that put contacts, campaigns and suppressions into a real store.

Everything here goes through the store's own API or plain SQL on the real database;
nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from deliver.store import Store
from deliver.store.campaigns import CampaignRecord
from deliver.store.contacts import ContactRow
from deliver.store.models import Message, Suppression, Worker, table

__all__ = [
    "BACKENDS",
    "NOW",
    "add_contacts",
    "contact_row",
    "make_campaign",
    "message_row",
    "message_rows",
    "set_worker",
    "store_url_for",
    "suppress",
]

#: a fixed "now" (seconds since the epoch): the store takes times as arguments
NOW = 1_700_000_000.0

#: pytest params for a fixture parametrised over both databases
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

M = table(Message)
S = table(Suppression)
W = table(Worker)


def store_url_for(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty database of the backend named by ``request.param``.

    PostgreSQL comes from the ``postgres_url`` fixture, which fails (never skips) when
    the server programs are missing and ``CI=true``.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    assert isinstance(url, str)
    return url


def contact_row(
    email: str,
    *,
    line: int = 2,
    name: str | None = None,
    phone: str | None = None,
    locale: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> ContactRow:
    """A validated import row for ``email`` (the importer's output shape)."""
    return ContactRow(
        line=line,
        email=email,
        email_key=email.lower(),
        domain=email.rpartition("@")[2].lower(),
        name=name,
        phone=phone,
        locale=locale,
        fields=dict(fields or {}),
    )


def add_contacts(
    store: Store, rows: Iterable[ContactRow], *, list_name: str = "default", now: float = NOW
) -> int:
    """Merge ``rows`` into ``list_name`` as one import; returns the list id."""
    list_id = store.contacts.ensure_list(list_name, now)
    import_id = store.contacts.start_import("test", list_id, now)
    store.contacts.merge(list(rows), import_id, list_id, now)
    return list_id


def make_campaign(
    store: Store,
    list_id: int,
    *,
    name: str = "spring",
    provider_of_domain: Mapping[str, str] | None = None,
    now: float = NOW,
) -> CampaignRecord:
    record, _suppressed = store.campaigns.create(
        name=name,
        list_id=list_id,
        from_addr="news@sender.example",
        from_name="News",
        subject="Hello {{ contact.name }}",
        html_template=None,
        text_template="Hello",
        template_file="hello.txt",
        provider_of_domain=provider_of_domain or {},
        now=now,
    )
    return record


def suppress(store: Store, email: str, reason: str = "unsubscribed", now: float = NOW) -> None:
    """Put ``email`` on the suppression list, as an unsubscribe would."""
    with store.engine.begin() as conn:
        conn.execute(
            insert(S).values(
                email_key=email.lower(), reason=reason, source="manual", created_at=now
            )
        )


def message_rows(store: Store, campaign_id: int) -> dict[str, dict[str, Any]]:
    """Every message of the campaign as a dict, keyed by recipient address."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(M).where(M.c.campaign_id == campaign_id)).all()
    return {r.rcpt: dict(r._mapping) for r in rows}


def message_row(store: Store, message_id: int) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = conn.execute(select(M).where(M.c.id == message_id)).one()
    return dict(row._mapping)


def set_worker(store: Store, worker_id: int, **values: Any) -> None:
    """Change a worker row (its pid, its last heartbeat) as another process would have."""
    with store.engine.begin() as conn:
        conn.execute(update(W).where(W.c.id == worker_id).values(**values))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store on SQLite (a file) and on PostgreSQL (a fresh database)."""
    return store_url_for(request, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()
