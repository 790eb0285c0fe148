"""Contacts, lists and imports.

Imports arrive in batches; each batch is merged in one transaction. The
de-duplication key is the lowercased address. A contact seen again (in a later
row of the same file, or in a later import) is updated, never duplicated: values
present in the new row win, custom fields are merged, empty cells change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from deliver.errors import NotFound
from deliver.store.models import Contact, ContactImport, ContactList, ListMember, table

__all__ = ["ContactRow", "ContactStore", "MergeCounts"]

C = table(Contact)
L = table(ContactList)
LM = table(ListMember)
I = table(ContactImport)  # noqa: E741


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A validated row of an import file."""

    line: int
    email: str
    email_key: str
    domain: str
    name: str | None = None
    phone: str | None = None
    locale: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class MergeCounts:
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0

    def add(self, other: MergeCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.duplicates += other.duplicates


class ContactStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"

    def ensure_list(self, name: str, now: float) -> int:
        with self.engine.begin() as conn:
            conn.execute(self._insert_ignore(L, ["name"]).values(name=name, created_at=now))
            return int(conn.execute(select(L.c.id).where(L.c.name == name)).scalar_one())

    def list_id(self, name: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(select(L.c.id).where(L.c.name == name)).scalar()
        if value is None:
            raise NotFound(f"no contact list named {name!r} (import contacts with --list {name})")
        return int(value)

    def start_import(self, source: str, list_id: int, now: float) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(I)
                    .values(source=source, list_id=list_id, started_at=now)
                    .returning(I.c.id)
                ).scalar_one()
            )

    def finish_import(
        self, import_id: int, now: float, *, rows: int, counts: MergeCounts, bad: int
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(I)
                .where(I.c.id == import_id)
                .values(
                    finished_at=now,
                    rows=rows,
                    inserted=counts.inserted,
                    updated=counts.updated,
                    duplicates=counts.duplicates,
                    bad=bad,
                )
            )

    def merge(
        self, rows: Sequence[ContactRow], import_id: int, list_id: int, now: float
    ) -> MergeCounts:
        """Insert new contacts, update known ones, add all to the list; one transaction."""
        for attempt in range(3):
            try:
                return self._merge_once(rows, import_id, list_id, now)
            except IntegrityError:
                # another import inserted one of these addresses meanwhile: merge again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _merge_once(
        self, rows: Sequence[ContactRow], import_id: int, list_id: int, now: float
    ) -> MergeCounts:
        counts = MergeCounts()
        latest: dict[str, ContactRow] = {}
        for row in rows:
            if row.email_key in latest:
                counts.duplicates += 1
                latest[row.email_key] = _merged_rows(latest[row.email_key], row)
            else:
                latest[row.email_key] = row
        with self.engine.begin() as conn:
            existing = {
                r.email_key: r
                for r in conn.execute(
                    select(
                        C.c.id,
                        C.c.email_key,
                        C.c.name,
                        C.c.phone,
                        C.c.locale,
                        C.c.fields,
                        C.c.last_import_id,
                    ).where(C.c.email_key.in_(list(latest)))
                )
            }
            new = [
                _insert_values(r, import_id, now) for k, r in latest.items() if k not in existing
            ]
            changed = []
            for key, old in existing.items():
                if old.last_import_id == import_id:
                    counts.duplicates += 1
                else:
                    counts.updated += 1
                changed.append(_update_values(old, latest[key], import_id, now))
            ids = [old.id for old in existing.values()]
            if new:
                result = conn.execute(
                    insert(C).returning(C.c.id, sort_by_parameter_order=True), new
                )
                ids.extend(int(r[0]) for r in result)
                counts.inserted += len(new)
            if changed:
                conn.execute(
                    update(C)
                    .where(C.c.id == bindparam("cid"))
                    .values(
                        email=bindparam("email"),
                        name=bindparam("name"),
                        phone=bindparam("phone"),
                        locale=bindparam("locale"),
                        fields=bindparam("fields"),
                        updated_at=bindparam("updated_at"),
                        last_import_id=bindparam("last_import_id"),
                    ),
                    changed,
                )
            if ids:
                conn.execute(
                    self._insert_ignore(LM, ["list_id", "contact_id"]),
                    [{"list_id": list_id, "contact_id": i} for i in ids],
                )
        return counts

    def _insert_ignore(self, table: Any, keys: list[str]) -> Any:
        dialect = postgresql if self._pg else sqlite
        return dialect.insert(table).on_conflict_do_nothing(index_elements=keys)

    def count(self, list_name: str | None = None) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            if list_name is None:
                return int(conn.execute(select(func.count()).select_from(C)).scalar_one())
            stmt = (
                select(func.count())
                .select_from(LM.join(L, L.c.id == LM.c.list_id))
                .where(L.c.name == list_name)
            )
            return int(conn.execute(stmt).scalar_one())

    def get(self, email: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(C).where(C.c.email_key == email.lower())).first()
        return dict(row._mapping) if row else None


def _merged_rows(old: ContactRow, new: ContactRow) -> ContactRow:
    return ContactRow(
        line=new.line,
        email=new.email,
        email_key=new.email_key,
        domain=new.domain,
        name=new.name or old.name,
        phone=new.phone or old.phone,
        locale=new.locale or old.locale,
        fields={**old.fields, **new.fields},
    )


def _insert_values(row: ContactRow, import_id: int, now: float) -> dict[str, Any]:
    return {
        "email": row.email,
        "email_key": row.email_key,
        "domain": row.domain,
        "name": row.name,
        "phone": row.phone,
        "locale": row.locale,
        "fields": row.fields,
        "created_at": now,
        "updated_at": now,
        "last_import_id": import_id,
    }


def _update_values(old: Any, row: ContactRow, import_id: int, now: float) -> dict[str, Any]:
    return {
        "cid": old.id,
        "email": row.email,
        "name": row.name or old.name,
        "phone": row.phone or old.phone,
        "locale": row.locale or old.locale,
        "fields": {**(old.fields or {}), **row.fields},
        "updated_at": now,
        "last_import_id": import_id,
    }
