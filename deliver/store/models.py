"""The store's tables, as SQLAlchemy 2 typed models.

Times are seconds since the epoch (``float``): the queue compares them on every
claim, and both SQLite and PostgreSQL index and compare them cheaply. The schema is
created and upgraded by the Alembic migrations in ``deliver/store/migrations``,
never by ``create_all``; ``tests/test_store.py`` checks the two agree.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "Campaign",
    "Contact",
    "ContactImport",
    "ContactList",
    "DeliveryEvent",
    "Domain",
    "ListMember",
    "Message",
    "MessageState",
    "PlacementResult",
    "PlacementRun",
    "ProbeCheck",
    "ProbeReport",
    "ProbeRun",
    "ShapingHit",
    "ShapingState",
    "Suppression",
    "Worker",
    "table",
]

# BIGINT ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY
Id = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class MessageState(enum.StrEnum):
    """Where a message stands. ``queued`` and ``deferred`` are waiting to be sent;
    the rest are final. A message being sent keeps its state and carries a lease."""

    QUEUED = "queued"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"

    @property
    def final(self) -> bool:
        return self not in (MessageState.QUEUED, MessageState.DEFERRED)


PENDING_STATES = (MessageState.QUEUED.value, MessageState.DEFERRED.value)
_PENDING_SQL = "state IN ('queued', 'deferred')"


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    #: the address lowercased: the de-duplication key (mailbox providers ignore case)
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    domain: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str | None] = mapped_column(String(256))
    #: E.164, e.g. +33612345678
    phone: Mapped[str | None] = mapped_column(String(20))
    locale: Mapped[str | None] = mapped_column(String(35))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    last_import_id: Mapped[int | None] = mapped_column(Id)


class ContactList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[float] = mapped_column(Double)


class ListMember(Base):
    __tablename__ = "list_members"

    list_id: Mapped[int] = mapped_column(
        Id, ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ContactImport(Base):
    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(1024))
    list_id: Mapped[int] = mapped_column(Id, ForeignKey("lists.id"))
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    bad: Mapped[int] = mapped_column(Integer, default=0)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    list_id: Mapped[int] = mapped_column(Id, ForeignKey("lists.id"))
    from_addr: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(256))
    #: Jinja2 source of the subject, the HTML part (None for text-only) and the text part
    subject: Mapped[str] = mapped_column(Text)
    html_template: Mapped[str | None] = mapped_column(Text)
    text_template: Mapped[str] = mapped_column(Text)
    template_file: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[float] = mapped_column(Double)
    total: Mapped[int] = mapped_column(Integer, default=0)


class Message(Base):
    """One recipient of one campaign: the durable queue entry and its outcome."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        # status per (state, provider) reads this index alone, with no temporary B-tree
        Index("ix_messages_campaign_state", "campaign_id", "state", "provider"),
        # the claim query's index: only the rows still waiting are in it
        Index(
            "ix_messages_due",
            "campaign_id",
            "next_attempt_at",
            sqlite_where=text(_PENDING_SQL),
            postgresql_where=text(_PENDING_SQL),
        ),
        Index(
            "ix_messages_lease_owner",
            "lease_owner",
            sqlite_where=text("lease_owner IS NOT NULL"),
            postgresql_where=text("lease_owner IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id"))
    rcpt: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(12))
    provider: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    created_at: Mapped[float] = mapped_column(Double)
    next_attempt_at: Mapped[float] = mapped_column(Double)
    #: the worker sending it right now, and until when its claim holds
    lease_owner: Mapped[int | None] = mapped_column(Id)
    lease_until: Mapped[float | None] = mapped_column(Double)
    last_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_enhanced: Mapped[str | None] = mapped_column(String(16))
    last_text: Mapped[str | None] = mapped_column(String(1024))
    reason: Mapped[str | None] = mapped_column(String(24))
    updated_at: Mapped[float] = mapped_column(Double)
    done_at: Mapped[float | None] = mapped_column(Double)


class DeliveryEvent(Base):
    """One delivery attempt (or a decision without one: suppressed, expired)."""

    __tablename__ = "delivery_events"
    __table_args__ = (Index("ix_delivery_events_campaign_at", "campaign_id", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        Id, ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    campaign_id: Mapped[int] = mapped_column(Id)
    at: Mapped[float] = mapped_column(Double)
    rcpt: Mapped[str] = mapped_column(String(320))
    provider: Mapped[str | None] = mapped_column(String(32))
    mx_host: Mapped[str | None] = mapped_column(String(255))
    mx_address: Mapped[str | None] = mapped_column(String(45))
    code: Mapped[int | None] = mapped_column(SmallInteger)
    enhanced: Mapped[str | None] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(String(1024))
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the message's state after this attempt, and the classified reason
    outcome: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(String(24))
    worker_id: Mapped[int | None] = mapped_column(Id)
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class Suppression(Base):
    """An address never to send to again (hard bounce, unsubscribe, complaint, manual)."""

    __tablename__ = "suppressions"

    email_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(24))
    source: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[int | None] = mapped_column(Id)
    detail: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[float] = mapped_column(Double)


class Domain(Base):
    """What routing learnt about a recipient domain (cached MX answer, provider)."""

    __tablename__ = "domains"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str | None] = mapped_column(String(32))
    mx: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    resolved_at: Mapped[float] = mapped_column(Double)


class ShapingState(Base):
    """An automation rule's state for one provider, shared by every worker."""

    __tablename__ = "shaping_state"

    #: the lane: a provider's name, or "default:<destination>" for the default policy
    provider: Mapped[str] = mapped_column(String(255), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: the rule's action holds until then (None: never triggered)
    active_until: Mapped[float | None] = mapped_column(Double)
    last_text: Mapped[str | None] = mapped_column(String(1024))
    updated_at: Mapped[float] = mapped_column(Double)


class ShapingHit(Base):
    """A reply that matched an automation rule; "N per hour" triggers count these."""

    __tablename__ = "shaping_hits"
    __table_args__ = (Index("ix_shaping_hits_rule_at", "provider", "rule", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    provider: Mapped[str] = mapped_column(String(255))
    rule: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Double)


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[int | None] = mapped_column(Id)
    started_at: Mapped[float] = mapped_column(Double)
    heartbeat_at: Mapped[float] = mapped_column(Double)
    stopped_at: Mapped[float | None] = mapped_column(Double)


def table(model: type[Base]) -> Table:
    """The model's Core table (typed: ``Model.__table__`` is a bare FromClause to mypy)."""
    t = model.__table__
    assert isinstance(t, Table)
    return t


class ProbeRun(Base):
    """One ``sokures probe`` or ``check-message`` run: when, and with which options."""

    __tablename__ = "probe_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: "domain" (probe) or "message" (check-message)
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    #: rulebook ids evaluated, selectors, sending IPs, nameserver: never secrets
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProbeReport(Base):
    """One domain (or message) audited in a run; the history the dashboard shows."""

    __tablename__ = "probe_reports"
    __table_args__ = (Index(None, "subject", "checked_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        Id, ForeignKey("probe_runs.id", ondelete="CASCADE"), index=True
    )
    #: the domain, or for a message its file name / Message-ID
    subject: Mapped[str] = mapped_column(String(998))
    checked_at: Mapped[float] = mapped_column(Double)
    #: the worst check status: pass, warn, error, fail
    status: Mapped[str] = mapped_column(String(8))
    #: {rulebook id: {"status", "failed", ...}}
    compliance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProbeCheck(Base):
    """One check's result within a report; a row each, so SQL can count failures by id."""

    __tablename__ = "probe_checks"
    __table_args__ = (Index(None, "check_id", "status"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    report_id: Mapped[int] = mapped_column(
        Id, ForeignKey("probe_reports.id", ondelete="CASCADE"), index=True
    )
    check_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fix: Mapped[str | None] = mapped_column(Text)


class PlacementRun(Base):
    """One seed placement test of a campaign (``sokures placement run``)."""

    __tablename__ = "placement_runs"
    __table_args__ = (Index(None, "campaign_name", "started_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: NULL once the campaign is deleted; the history keeps its name
    campaign_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("campaigns.id", ondelete="SET NULL"), index=True
    )
    campaign_name: Mapped[str] = mapped_column(String(128))
    #: the seed list's name (or file)
    seedlist: Mapped[str] = mapped_column(String(1024))
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    deadline_seconds: Mapped[float] = mapped_column(Double)
    #: running, done, error
    status: Mapped[str] = mapped_column(String(8))
    #: {provider: {"seeds", "inbox", "promotions", "spam", "missing", "error"}}
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PlacementResult(Base):
    """Where one seed's copy landed in a placement run."""

    __tablename__ = "placement_results"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        Id, ForeignKey("placement_runs.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(320), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    #: the unique token put in the copy's header and body
    token: Mapped[str] = mapped_column(String(64))
    #: inbox, promotions, spam, missing, error
    placement: Mapped[str] = mapped_column(String(12))
    #: the mailbox it was found in, and the provider's category (Gmail's tabs)
    folder: Mapped[str | None] = mapped_column(String(255))
    category: Mapped[str | None] = mapped_column(String(32))
    sent_at: Mapped[float] = mapped_column(Double)
    found_at: Mapped[float | None] = mapped_column(Double)
    #: seconds from sending to arrival
    seconds: Mapped[float | None] = mapped_column(Double)
    #: the receiver's answer when it refused the copy
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    #: the receiver's Authentication-Results header (RFC 8601)
    auth_results: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
