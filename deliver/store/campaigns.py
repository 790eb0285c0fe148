"""Campaigns, and enqueueing one message per list member in a single statement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, case, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from deliver.errors import InputError, NotFound
from deliver.store.models import (
    Campaign,
    Contact,
    ContactList,
    ListMember,
    Message,
    Suppression,
    table,
)

__all__ = ["CampaignRecord", "CampaignStore"]

CA = table(Campaign)
C = table(Contact)
L = table(ContactList)
LM = table(ListMember)
M = table(Message)
S = table(Suppression)


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    id: int
    name: str
    list_id: int
    list_name: str
    from_addr: str
    from_name: str | None
    subject: str
    html_template: str | None
    text_template: str
    template_file: str
    created_at: float
    total: int


class CampaignStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        *,
        name: str,
        list_id: int,
        from_addr: str,
        from_name: str | None,
        subject: str,
        html_template: str | None,
        text_template: str,
        template_file: str,
        provider_of_domain: Mapping[str, str],
        now: float,
    ) -> tuple[CampaignRecord, int]:
        """Create the campaign and enqueue every member of its list, in one transaction.

        Members on the suppression list are recorded as ``suppressed`` at once.
        Returns the campaign and how many messages were suppressed.
        """
        try:
            with self.engine.begin() as conn:
                cid = int(
                    conn.execute(
                        insert(CA)
                        .values(
                            name=name,
                            list_id=list_id,
                            from_addr=from_addr,
                            from_name=from_name,
                            subject=subject,
                            html_template=html_template,
                            text_template=text_template,
                            template_file=template_file,
                            created_at=now,
                            total=0,
                        )
                        .returning(CA.c.id)
                    ).scalar_one()
                )
                suppressed = S.c.email_key.is_not(None)
                provider = (
                    case(
                        {d: p for d, p in provider_of_domain.items()}, value=C.c.domain, else_=None
                    )
                    if provider_of_domain
                    else literal(None)
                )
                members = (
                    select(
                        literal(cid),
                        C.c.id,
                        C.c.email,
                        C.c.domain,
                        case((suppressed, "suppressed"), else_="queued"),
                        provider,
                        literal(0),
                        literal(now),
                        literal(now),
                        case((suppressed, "suppressed"), else_=None),
                        literal(now),
                        case((suppressed, literal(now)), else_=None),
                    )
                    .select_from(
                        LM.join(C, C.c.id == LM.c.contact_id).outerjoin(
                            S, S.c.email_key == C.c.email_key
                        )
                    )
                    .where(LM.c.list_id == list_id)
                    .order_by(C.c.id)
                )
                conn.execute(
                    insert(M).from_select(
                        [
                            "campaign_id",
                            "contact_id",
                            "rcpt",
                            "domain",
                            "state",
                            "provider",
                            "attempts",
                            "created_at",
                            "next_attempt_at",
                            "reason",
                            "updated_at",
                            "done_at",
                        ],
                        members,
                    )
                )
                counts: dict[str, int] = {
                    str(state): int(n)
                    for state, n in conn.execute(
                        select(M.c.state, func.count())
                        .where(M.c.campaign_id == cid)
                        .group_by(M.c.state)
                    )
                }
                total = sum(counts.values())
                conn.execute(update(CA).where(CA.c.id == cid).values(total=total))
        except IntegrityError:
            raise InputError(f"a campaign named {name!r} exists already") from None
        return self.get(name), int(counts.get("suppressed", 0))

    def get(self, name: str) -> CampaignRecord:
        stmt = (
            select(CA, L.c.name.label("list_name"))
            .join(L, L.c.id == CA.c.list_id)
            .where(CA.c.name == name)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"no campaign named {name!r}")
        m = row._mapping
        return CampaignRecord(
            id=m["id"],
            name=m["name"],
            list_id=m["list_id"],
            list_name=m["list_name"],
            from_addr=m["from_addr"],
            from_name=m["from_name"],
            subject=m["subject"],
            html_template=m["html_template"],
            text_template=m["text_template"],
            template_file=m["template_file"],
            created_at=m["created_at"],
            total=m["total"],
        )

    def names(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(CA.c.name).order_by(CA.c.id))]
