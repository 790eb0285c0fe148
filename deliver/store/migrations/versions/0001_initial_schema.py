"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 18:01:12.088601
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column(
            "last_import_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("email_key", name=op.f("uq_contacts_email_key")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_domain"), ["domain"], unique=False)

    op.create_table(
        "domains",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("mx", sa.JSON(), nullable=False),
        sa.Column("resolved_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_domains")),
    )
    op.create_table(
        "lists",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_lists_name")),
    )
    op.create_table(
        "shaping_hits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shaping_hits")),
    )
    with op.batch_alter_table("shaping_hits", schema=None) as batch_op:
        batch_op.create_index("ix_shaping_hits_rule_at", ["provider", "rule", "at"], unique=False)

    op.create_table(
        "shaping_state",
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("active_until", sa.Double(), nullable=True),
        sa.Column("last_text", sa.String(length=1024), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "rule", name=op.f("pk_shaping_state")),
    )
    op.create_table(
        "suppressions",
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("detail", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("email_key", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=False),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("list_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("from_addr", sa.String(length=320), nullable=False),
        sa.Column("from_name", sa.String(length=256), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html_template", sa.Text(), nullable=True),
        sa.Column("text_template", sa.Text(), nullable=False),
        sa.Column("template_file", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], name=op.f("fk_campaigns_list_id_lists")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("list_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("bad", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], name=op.f("fk_imports_list_id_lists")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    op.create_table(
        "list_members",
        sa.Column("list_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_list_members_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["lists.id"],
            name=op.f("fk_list_members_list_id_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("list_id", "contact_id", name=op.f("pk_list_members")),
    )
    with op.batch_alter_table("list_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_list_members_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("rcpt", sa.String(length=320), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column(
            "lease_owner", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("last_code", sa.SmallInteger(), nullable=True),
        sa.Column("last_enhanced", sa.String(length=16), nullable=True),
        sa.Column("last_text", sa.String(length=1024), nullable=True),
        sa.Column("reason", sa.String(length=24), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("done_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_messages_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_messages_contact_id_contacts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "campaign_id", "contact_id", name=op.f("uq_messages_campaign_id_contact_id")
        ),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_campaign_state", ["campaign_id", "state", "provider"], unique=False
        )
        batch_op.create_index(
            "ix_messages_due",
            ["campaign_id", "next_attempt_at"],
            unique=False,
            sqlite_where=sa.text("state IN ('queued', 'deferred')"),
            postgresql_where=sa.text("state IN ('queued', 'deferred')"),
        )
        batch_op.create_index(
            "ix_messages_lease_owner",
            ["lease_owner"],
            unique=False,
            sqlite_where=sa.text("lease_owner IS NOT NULL"),
            postgresql_where=sa.text("lease_owner IS NOT NULL"),
        )

    op.create_table(
        "delivery_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("rcpt", sa.String(length=320), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("mx_host", sa.String(length=255), nullable=True),
        sa.Column("mx_address", sa.String(length=45), nullable=True),
        sa.Column("code", sa.SmallInteger(), nullable=True),
        sa.Column("enhanced", sa.String(length=16), nullable=True),
        sa.Column("text", sa.String(length=1024), nullable=True),
        sa.Column("tls", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=True),
        sa.Column("worker_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_delivery_events_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_events")),
    )
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_events_campaign_at", ["campaign_id", "at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_delivery_events_message_id"), ["message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_events_message_id"))
        batch_op.drop_index("ix_delivery_events_campaign_at")

    op.drop_table("delivery_events")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_messages_lease_owner",
            sqlite_where=sa.text("lease_owner IS NOT NULL"),
            postgresql_where=sa.text("lease_owner IS NOT NULL"),
        )
        batch_op.drop_index(
            "ix_messages_due",
            sqlite_where=sa.text("state IN ('queued', 'deferred')"),
            postgresql_where=sa.text("state IN ('queued', 'deferred')"),
        )
        batch_op.drop_index("ix_messages_campaign_state")

    op.drop_table("messages")
    with op.batch_alter_table("list_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_list_members_contact_id"))

    op.drop_table("list_members")
    op.drop_table("imports")
    op.drop_table("campaigns")
    op.drop_table("workers")
    op.drop_table("suppressions")
    op.drop_table("shaping_state")
    with op.batch_alter_table("shaping_hits", schema=None) as batch_op:
        batch_op.drop_index("ix_shaping_hits_rule_at")

    op.drop_table("shaping_hits")
    op.drop_table("lists")
    op.drop_table("domains")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_domain"))

    op.drop_table("contacts")
