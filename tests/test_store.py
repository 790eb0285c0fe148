"""deliver.store on real databases: SQLite (a file) and PostgreSQL (a throwaway server).

Every test runs on both; under ``CI=true`` PostgreSQL must be there (the fixture fails
instead of skipping). Times are passed to the store explicitly, so no test sleeps.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, func, inspect, select, text

from deliver.errors import ConfigError, InputError, NotFound, StoreError
from deliver.store import ClaimedMessage, MessageState, Outcome, Store, redact_url
from deliver.store.database import head_revision
from deliver.store.models import Base, Message, Suppression, Worker, table
from tests.store_helpers import (
    NOW,
    add_contacts,
    contact_row,
    make_campaign,
    message_row,
    message_rows,
    set_worker,
    suppress,
)

M = table(Message)
S = table(Suppression)
W = table(Worker)
LEASE = 300.0


def campaign_of(
    store: Store,
    emails: Sequence[str],
    *,
    name: str = "spring",
    providers: dict[str, str] | None = None,
) -> int:
    """A campaign over a list holding ``emails``; returns its id."""
    list_id = add_contacts(store, [contact_row(e) for e in emails], list_name=f"list-{name}")
    return make_campaign(store, list_id, name=name, provider_of_domain=providers).id


def emails(n: int, domain: str = "example.com") -> list[str]:
    return [f"user{i:05d}@{domain}" for i in range(n)]


def outcome(
    message: ClaimedMessage,
    state: MessageState,
    at: float,
    *,
    attempts: int = 1,
    next_attempt_at: float | None = None,
    **extra: Any,
) -> Outcome:
    return Outcome(
        message_id=message.id,
        campaign_id=message.campaign_id,
        rcpt=message.rcpt,
        state=state,
        at=at,
        attempts=attempts,
        next_attempt_at=at if next_attempt_at is None else next_attempt_at,
        **extra,
    )


def by_rcpt(claimed: Sequence[ClaimedMessage]) -> dict[str, ClaimedMessage]:
    return {m.rcpt: m for m in claimed}


class StatementLog:
    """The SQL statements every engine in this process sends while the log is open."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __enter__(self) -> StatementLog:
        event.listen(Engine, "before_cursor_execute", self._capture)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(Engine, "before_cursor_execute", self._capture)

    def _capture(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self.statements.append(" ".join(statement.split()))

    def starting_with(self, *verbs: str) -> list[str]:
        return [s for s in self.statements if s.upper().startswith(verbs)]


# ------------------------------------------------------------------ schema --


def test_open_migrates_an_empty_database_to_the_latest_revision(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        with store.engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
            tables = set(inspect(conn).get_table_names())
    finally:
        store.close()
    assert revision == head_revision()
    assert set(Base.metadata.tables) <= tables


def test_reopening_runs_no_ddl_and_keeps_the_data(store_url: str) -> None:
    with StatementLog() as first_open:
        first = Store.open(store_url)
    add_contacts(first, [contact_row("kept@example.com")])
    first.close()
    with StatementLog() as second_open:
        second = Store.open(store_url)
    try:
        assert second.contacts.count() == 1
    finally:
        second.close()
    # the log does see the migration's DDL: its silence on re-open means something
    assert any("CREATE TABLE messages" in s for s in first_open.statements)
    assert second_open.starting_with("CREATE", "ALTER", "DROP", "INSERT", "UPDATE") == []
    # nor does it take the migration lock (it would wait behind any long write)
    assert second_open.starting_with("BEGIN") == []
    assert not any("pg_advisory" in s for s in second_open.statements)
    assert any("alembic_version" in s for s in second_open.statements)


def test_open_creates_the_directory_of_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    store = Store.open(f"sqlite:///{path}")
    store.close()
    assert path.is_file()


def test_migrated_schema_matches_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


OPEN_WHEN_TOLD = """
import sys
from deliver.store import Store
print("ready", flush=True)
sys.stdin.readline()
Store.open(sys.argv[1]).close()
"""


def test_processes_opening_a_fresh_database_at_once_all_succeed(store_url: str) -> None:
    # e.g. workers on several hosts started together against an empty database
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, store_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:  # imports done: now they race for the migration
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [p.returncode for p in procs] == [0] * len(procs), [err for _, err in results]
    store = Store.open(store_url)
    try:
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    finally:
        store.close()


def test_a_failed_migration_leaves_no_half_made_schema(store_url: str) -> None:
    # a table in the way makes the migration fail part way through
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE messages (id INTEGER PRIMARY KEY)"))
        with pytest.raises(StoreError, match="database"):
            Store.open(store_url)
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert tables == {"messages"}


def test_redact_url_hides_the_password() -> None:
    redacted = redact_url("postgresql+psycopg://u:secret@db.example:5432/x")
    assert "secret" not in redacted
    assert redacted == "postgresql+psycopg://u:***@db.example:5432/x"
    assert "secret" not in redact_url("not a url :secret@")


def test_unreachable_database_error_never_shows_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        Store.open("postgresql+psycopg://u:secret@127.0.0.1:1/x")
    assert "secret" not in str(caught.value)
    assert "u:***@127.0.0.1:1/x" in str(caught.value)


def test_unsupported_database_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Store.open("mysql://u:secret@127.0.0.1/x")
    assert "secret" not in str(caught.value)
    assert "mysql" in str(caught.value)


# ------------------------------------------------------------------- claim --


def test_claim_takes_the_oldest_due_messages_of_one_campaign(store: Store) -> None:
    addresses = emails(5)
    spring = campaign_of(store, addresses, name="spring")
    summer = campaign_of(store, addresses, name="summer")
    rows = message_rows(store, spring)
    # due times run against insertion order: the last address is the oldest due
    for age, rcpt in enumerate(reversed(addresses)):
        store.queue.postpone([rows[rcpt]["id"]], NOW - 100 + age)
    store.queue.postpone([rows[addresses[0]]["id"]], NOW + 50)  # not due yet

    worker = store.queue.register_worker(spring, NOW)
    claimed = store.queue.claim(spring, worker, NOW, NOW + LEASE, limit=2)

    assert {m.rcpt for m in claimed} == {addresses[4], addresses[3]}
    assert {m.campaign_id for m in claimed} == {spring}
    for m in claimed:
        row = message_row(store, m.id)
        assert row["lease_owner"] == worker
        assert row["lease_until"] == NOW + LEASE
        assert row["next_attempt_at"] == NOW + LEASE
    assert all(r["lease_owner"] is None for r in message_rows(store, summer).values())

    rest = store.queue.claim(spring, worker, NOW, NOW + LEASE, limit=10)
    assert {m.rcpt for m in rest} == {addresses[2], addresses[1]}


def test_a_claimed_message_is_not_claimed_again_until_its_lease_ends(store: Store) -> None:
    cid = campaign_of(store, emails(3))
    first = store.queue.register_worker(cid, NOW)
    second = store.queue.register_worker(cid, NOW)

    taken = store.queue.claim(cid, first, NOW, NOW + LEASE, limit=10)
    assert len(taken) == 3
    assert store.queue.claim(cid, second, NOW + LEASE - 1, NOW + 2 * LEASE, limit=10) == []

    # the first worker died silently: after its lease the messages are due again
    again = store.queue.claim(cid, second, NOW + LEASE, NOW + 2 * LEASE, limit=10)
    assert sorted(m.id for m in again) == sorted(m.id for m in taken)


def test_claim_skips_excluded_providers_but_not_unrouted_messages(store: Store) -> None:
    cid = campaign_of(
        store,
        ["a@gmail.com", "b@gmail.com", "c@yahoo.com", "d@unknown.example"],
        providers={"gmail.com": "google", "yahoo.com": "yahoo"},
    )
    worker = store.queue.register_worker(cid, NOW)

    claimed = store.queue.claim(
        cid, worker, NOW, NOW + LEASE, limit=10, exclude_providers=["google"]
    )

    assert {(m.rcpt, m.provider) for m in claimed} == {
        ("c@yahoo.com", "yahoo"),
        ("d@unknown.example", None),
    }
    assert store.queue.pending_unleased(cid) == 2


def test_claimed_messages_carry_the_contact_and_its_suppression(store: Store) -> None:
    list_id = add_contacts(
        store,
        [
            contact_row(
                "ana@example.com",
                name="Ana Lima",
                phone="+33612345678",
                locale="fr-CA",
                fields={"plan": "gold", "city": "Lyon"},
            ),
            contact_row("gone@example.com", name="Gone"),
        ],
    )
    cid = make_campaign(store, list_id).id
    # unsubscribed after the campaign was queued: the claim must still notice
    suppress(store, "GONE@example.com", reason="unsubscribed")
    worker = store.queue.register_worker(cid, NOW)

    claimed = by_rcpt(store.queue.claim(cid, worker, NOW, NOW + LEASE, limit=10))

    ana = claimed["ana@example.com"]
    assert (ana.name, ana.phone, ana.locale) == ("Ana Lima", "+33612345678", "fr-CA")
    assert ana.fields == {"plan": "gold", "city": "Lyon"}
    assert ana.suppressed is None
    assert ana.attempts == 0
    assert claimed["gone@example.com"].suppressed == "unsubscribed"


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_claims_never_hand_out_a_message_twice(store: Store, workers: int) -> None:
    total, batch = 2000, 25
    cid = campaign_of(store, emails(total))
    expected = set(message_row_ids(store, cid))
    start = threading.Barrier(workers)

    def drain() -> list[list[int]]:
        worker = store.queue.register_worker(cid, NOW)
        start.wait(timeout=30)
        batches = []
        while claimed := store.queue.claim(cid, worker, NOW, NOW + LEASE, limit=batch):
            batches.append([m.id for m in claimed])
        return batches

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(drain) for _ in range(workers)]
        per_worker = [f.result(timeout=120) for f in futures]

    every_batch = [b for batches in per_worker for b in batches]
    claimed_ids = [i for b in every_batch for i in b]
    assert max(len(b) for b in every_batch) <= batch
    assert len(claimed_ids) == len(set(claimed_ids)), "a message was claimed twice"
    assert set(claimed_ids) == expected
    assert store.queue.leased(cid) == total
    assert store.queue.pending_unleased(cid) == 0


def message_row_ids(store: Store, campaign_id: int) -> list[int]:
    return [r["id"] for r in message_rows(store, campaign_id).values()]


# ------------------------------------------------------------------ record --


@pytest.mark.parametrize(
    ("final", "late"),
    [
        (MessageState.DELIVERED, MessageState.DEFERRED),
        (MessageState.BOUNCED, MessageState.DELIVERED),
        (MessageState.EXPIRED, MessageState.QUEUED),
    ],
)
def test_a_final_state_is_never_overwritten(
    store: Store, final: MessageState, late: MessageState
) -> None:
    cid = campaign_of(store, ["bob@example.com"])
    worker = store.queue.register_worker(cid, NOW)
    (msg,) = store.queue.claim(cid, worker, NOW, NOW + LEASE, limit=1)

    store.queue.record([outcome(msg, final, NOW + 1, code=250, text="first")])
    store.queue.record(
        [outcome(msg, late, NOW + 2, attempts=2, next_attempt_at=NOW + 900, code=421, text="late")]
    )

    row = message_row(store, msg.id)
    assert row["state"] == final.value
    assert (row["last_code"], row["last_text"], row["attempts"]) == (250, "first", 1)
    assert row["done_at"] == NOW + 1
    assert row["next_attempt_at"] == NOW + 1
    assert row["lease_owner"] is None
    assert store.queue.next_due(cid) is None


def test_record_updates_pending_messages_and_inserts_events(store: Store) -> None:
    cid = campaign_of(store, ["bob@example.com", "eve@example.com"])
    worker = store.queue.register_worker(cid, NOW)
    claimed = by_rcpt(store.queue.claim(cid, worker, NOW, NOW + LEASE, limit=2))
    bob, eve = claimed["bob@example.com"], claimed["eve@example.com"]
    long_reply = "4.7.28 slow down " + "x" * 2000

    store.queue.record(
        [
            outcome(
                bob,
                MessageState.DEFERRED,
                NOW + 1,
                next_attempt_at=NOW + 600,
                code=421,
                enhanced="4.7.28",
                text=long_reply,
                reason="speeding",
                provider="google",
                mx_host="mx.example.com",
                mx_address="192.0.2.1",
                tls=True,
                duration_ms=120,
            ),
            # a scheduling decision: the state changes, no event is written
            outcome(eve, MessageState.EXPIRED, NOW + 1, attempts=0, event=False),
        ]
    )
    store.queue.record(
        [outcome(bob, MessageState.DELIVERED, NOW + 700, attempts=2, code=250, text="2.0.0 ok")]
    )

    bob_row = message_row(store, bob.id)
    assert store.queue.find_message(cid, "BOB@example.com") == bob_row
    assert bob_row["state"] == "delivered"
    assert bob_row["attempts"] == 2
    assert bob_row["done_at"] == NOW + 700
    assert bob_row["provider"] == "google"  # kept: the delivered outcome named none
    events = store.queue.events_for(bob.id)
    assert [(e["outcome"], e["code"]) for e in events] == [("deferred", 421), ("delivered", 250)]
    deferred = events[0]
    assert (deferred["mx_host"], deferred["mx_address"], deferred["tls"]) == (
        "mx.example.com",
        "192.0.2.1",
        True,
    )
    assert (deferred["reason"], deferred["enhanced"], deferred["duration_ms"]) == (
        "speeding",
        "4.7.28",
        120,
    )
    assert len(deferred["text"]) == 1000
    assert deferred["text"].endswith("…")
    assert message_row(store, eve.id)["state"] == "expired"
    assert store.queue.events_for(eve.id) == []


def test_a_hard_bounce_suppresses_the_address_once(store: Store) -> None:
    list_id = add_contacts(store, [contact_row("Bob@Example.com"), contact_row("eve@example.com")])
    cid = make_campaign(store, list_id, name="spring").id
    worker = store.queue.register_worker(cid, NOW)
    bob = by_rcpt(store.queue.claim(cid, worker, NOW, NOW + LEASE, limit=2))["Bob@Example.com"]
    bounce = outcome(
        bob,
        MessageState.BOUNCED,
        NOW + 1,
        code=550,
        text="5.1.1 no such user",
        reason="userunknown",
        suppress="userunknown",
    )

    store.queue.record([bounce])
    # the same bounce again (a DSN read twice) is ignored, not an IntegrityError
    store.queue.record([bounce])
    store.queue.record([outcome(bob, MessageState.BOUNCED, NOW + 5, suppress="complaint")])

    with store.engine.connect() as conn:
        rows = conn.execute(select(S.c.email_key, S.c.reason, S.c.source)).all()
    assert [tuple(r) for r in rows] == [("bob@example.com", "userunknown", "bounce")]
    assert store.queue.is_suppressed(["bob@example.com", "eve@example.com"]) == {"bob@example.com"}
    _, suppressed = store.campaigns.create(
        name="summer",
        list_id=list_id,
        from_addr="news@sender.example",
        from_name=None,
        subject="s",
        html_template=None,
        text_template="t",
        template_file="t.txt",
        provider_of_domain={},
        now=NOW + 10,
    )
    assert suppressed == 1


def test_postpone_hands_messages_back_without_an_attempt(store: Store) -> None:
    cid = campaign_of(store, emails(3))
    worker = store.queue.register_worker(cid, NOW)
    claimed = store.queue.claim(cid, worker, NOW, NOW + LEASE, limit=3)
    back, kept = claimed[:2], claimed[2]
    store.queue.record([outcome(kept, MessageState.DELIVERED, NOW + 1)])

    store.queue.postpone([m.id for m in [*back, kept]], NOW + 900, provider="yahoo")

    for m in back:
        row = message_row(store, m.id)
        assert (row["lease_owner"], row["lease_until"]) == (None, None)
        assert row["next_attempt_at"] == NOW + 900
        assert (row["state"], row["attempts"], row["provider"]) == ("queued", 0, "yahoo")
        assert store.queue.events_for(m.id) == []
    assert message_row(store, kept.id)["state"] == "delivered"
    assert message_row(store, kept.id)["provider"] is None
    other = store.queue.register_worker(cid, NOW)
    assert store.queue.claim(cid, other, NOW + 899, NOW + 999, limit=10) == []
    assert len(store.queue.claim(cid, other, NOW + 900, NOW + 999, limit=10)) == 2


# ----------------------------------------------------------------- workers --


def worker_row(store: Store, worker_id: int) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(W).where(W.c.id == worker_id)).one()._mapping)


def test_heartbeat_renews_the_leases_still_held(store: Store) -> None:
    cid = campaign_of(store, emails(3))
    worker = store.queue.register_worker(cid, NOW)
    claimed = store.queue.claim(cid, worker, NOW, NOW + 60, limit=3)
    done = claimed[0]
    store.queue.record([outcome(done, MessageState.DELIVERED, NOW + 10)])

    held = store.queue.heartbeat(worker, NOW + 30, NOW + 120)

    assert held == 2
    for m in claimed[1:]:
        row = message_row(store, m.id)
        assert (row["lease_until"], row["next_attempt_at"]) == (NOW + 120, NOW + 120)
    assert message_row(store, done.id)["next_attempt_at"] == NOW + 10
    assert worker_row(store, worker)["heartbeat_at"] == NOW + 30
    other = store.queue.register_worker(cid, NOW)
    # without the heartbeat these would have been due again at NOW + 60
    assert store.queue.claim(cid, other, NOW + 90, NOW + 200, limit=10) == []


def test_stop_worker_releases_its_leases(store: Store) -> None:
    cid = campaign_of(store, emails(4))
    worker = store.queue.register_worker(cid, NOW)
    store.queue.claim(cid, worker, NOW, NOW + LEASE, limit=3)
    assert store.queue.leased(cid) == 3
    assert store.queue.live_workers(NOW, 60) == 1

    store.queue.stop_worker(worker, NOW + 5)

    assert store.queue.leased(cid) == 0
    assert store.queue.pending_unleased(cid) == 4
    assert store.queue.next_due(cid) == NOW
    assert worker_row(store, worker)["stopped_at"] == NOW + 5
    assert store.queue.live_workers(NOW + 5, 60) == 0
    rows = message_rows(store, cid).values()
    assert sorted(r["next_attempt_at"] for r in rows) == [NOW, NOW + 5, NOW + 5, NOW + 5]


def dead_pid() -> int:
    """The pid of a process this test started and killed (reaped: nobody has it now)."""
    proc = subprocess.Popen(["sleep", "60"])
    proc.kill()
    proc.wait(timeout=10)
    return proc.pid


def test_release_dead_frees_dead_and_silent_workers_but_not_live_ones(store: Store) -> None:
    cid = campaign_of(store, emails(8))
    live = store.queue.register_worker(cid, NOW)
    crashed = store.queue.register_worker(cid, NOW)
    set_worker(store, crashed, pid=dead_pid())
    silent = store.queue.register_worker(cid, NOW - 3600)  # e.g. on a host that vanished
    holdings = {
        w: {m.id for m in store.queue.claim(cid, w, NOW, NOW + LEASE, limit=2)}
        for w in (live, crashed, silent)
    }
    assert store.queue.live_workers(NOW, 60) == 2

    released = store.queue.release_dead(NOW + 1, stale_after=60)

    assert released == 4
    assert store.queue.leased(cid) == 2
    for w in (crashed, silent):
        assert worker_row(store, w)["stopped_at"] == NOW + 1
        for mid in holdings[w]:
            row = message_row(store, mid)
            assert (row["lease_owner"], row["next_attempt_at"]) == (None, NOW + 1)
    assert worker_row(store, live)["stopped_at"] is None
    for mid in holdings[live]:
        assert message_row(store, mid)["lease_owner"] == live
    assert store.queue.live_workers(NOW + 1, 60) == 1
    assert store.queue.release_dead(NOW + 2, stale_after=60) == 0


# ---------------------------------------------------------------- counting --


def test_counts_next_due_leased_and_pending_unleased(store: Store) -> None:
    cid = campaign_of(
        store,
        ["a@gmail.com", "b@gmail.com", "c@gmail.com", "d@yahoo.com", "e@yahoo.com", "f@x.example"],
        providers={"gmail.com": "google", "yahoo.com": "yahoo"},
    )
    assert store.queue.next_due(cid) == NOW
    worker = store.queue.register_worker(cid, NOW)
    m = by_rcpt(store.queue.claim(cid, worker, NOW, NOW + LEASE, limit=6))
    store.queue.record(
        [
            outcome(m["a@gmail.com"], MessageState.DELIVERED, NOW + 1),
            outcome(m["d@yahoo.com"], MessageState.BOUNCED, NOW + 1),
            outcome(m["b@gmail.com"], MessageState.DEFERRED, NOW + 1, next_attempt_at=NOW + 600),
        ]
    )
    store.queue.postpone([m["e@yahoo.com"].id], NOW + 120)
    # c@gmail.com and f@x.example stay leased until NOW + LEASE

    assert store.queue.counts(cid) == {
        ("delivered", "google"): 1,
        ("deferred", "google"): 1,
        ("queued", "google"): 1,
        ("bounced", "yahoo"): 1,
        ("queued", "yahoo"): 1,
        ("queued", None): 1,
    }
    assert store.queue.leased(cid) == 2
    assert store.queue.pending_unleased(cid) == 2
    assert store.queue.next_due(cid) == NOW + 120


def test_reading_an_unknown_campaign_gives_empty_answers(store: Store) -> None:
    assert store.queue.counts(999) == {}
    assert store.queue.next_due(999) is None
    assert store.queue.leased(999) == 0
    assert store.queue.pending_unleased(999) == 0


# --------------------------------------------------------------- campaigns --


def test_create_enqueues_every_member_in_one_statement(store: Store) -> None:
    members = ["ann@gmail.com", "bob@yahoo.com", "cat@nowhere.example", "Dan@Gmail.com"]
    list_id = add_contacts(store, [contact_row(e) for e in members], list_name="news")
    add_contacts(store, [contact_row("outsider@gmail.com")], list_name="other")
    suppress(store, "bob@yahoo.com", reason="complaint")

    with StatementLog() as log:
        record, suppressed = store.campaigns.create(
            name="spring",
            list_id=list_id,
            from_addr="news@sender.example",
            from_name="News",
            subject="Hi",
            html_template="<p>Hi</p>",
            text_template="Hi",
            template_file="hi.html",
            provider_of_domain={"gmail.com": "google", "yahoo.com": "yahoo"},
            now=NOW,
        )

    assert log.starting_with("INSERT INTO MESSAGES") != []
    assert len(log.starting_with("INSERT INTO MESSAGES")) == 1
    assert (record.name, record.list_name, record.total, suppressed) == ("spring", "news", 4, 1)
    assert (record.html_template, record.from_name) == ("<p>Hi</p>", "News")
    rows = message_rows(store, record.id)
    assert set(rows) == set(members)
    assert {r: (v["state"], v["provider"]) for r, v in rows.items()} == {
        "ann@gmail.com": ("queued", "google"),
        "bob@yahoo.com": ("suppressed", "yahoo"),
        "cat@nowhere.example": ("queued", None),
        "Dan@Gmail.com": ("queued", "google"),
    }
    bob = rows["bob@yahoo.com"]
    assert (bob["reason"], bob["done_at"]) == ("suppressed", NOW)
    assert rows["ann@gmail.com"]["done_at"] is None
    assert all(r["next_attempt_at"] == NOW and r["attempts"] == 0 for r in rows.values())
    assert store.campaigns.get("spring") == record


def test_create_without_a_provider_map_leaves_messages_unrouted(store: Store) -> None:
    cid = campaign_of(store, ["ann@gmail.com", "bob@yahoo.com"], providers={})
    assert store.queue.counts(cid) == {("queued", None): 2}


def test_create_refuses_a_duplicate_name_and_changes_nothing(store: Store) -> None:
    list_id = add_contacts(store, [contact_row(e) for e in emails(3)])
    first = make_campaign(store, list_id, name="spring")

    with pytest.raises(InputError, match="'spring' exists already"):
        make_campaign(store, list_id, name="spring", now=NOW + 1)

    assert store.campaigns.names() == ["spring"]
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(M)).scalar_one() == 3
    assert store.campaigns.get("spring") == first


def test_get_of_an_unknown_campaign_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no campaign named 'nope'"):
        store.campaigns.get("nope")


# ----------------------------------------------------------------- shaping --


def test_an_immediate_rule_fires_at_once(store: Store) -> None:
    until = store.shaping.hit(
        "yahoo", "ts03", NOW, threshold=1, window=3600, duration=1800, text="421 4.7.0 [TS03]"
    )
    assert until == NOW + 1800
    (active,) = store.shaping.active(NOW + 1)
    assert (active.provider, active.rule, active.active_until) == ("yahoo", "ts03", NOW + 1800)
    assert store.shaping.active(NOW + 1800) == []


def test_a_three_per_hour_rule_fires_on_the_third_hit_in_the_window(store: Store) -> None:
    def hit(at: float) -> float | None:
        return store.shaping.hit(
            "google", "slow", at, threshold=3, window=3600, duration=600, text="421 4.7.28"
        )

    # spread wider than the window: never three inside one hour
    assert hit(NOW) is None
    assert hit(NOW + 2000) is None
    assert hit(NOW + 4000) is None
    assert store.shaping.active(NOW + 4000) == []
    # the hits at NOW + 2000 and NOW + 4000 are still in the window with this one
    assert hit(NOW + 4100) == NOW + 4700
    assert [a.rule for a in store.shaping.active(NOW + 4200)] == ["slow"]
    # a fired trigger counts afresh: one more hit does not re-fire it
    assert hit(NOW + 4200) is None


def test_pruned_hits_no_longer_count(store: Store) -> None:
    def hit(at: float) -> float | None:
        return store.shaping.hit(
            "google", "slow", at, threshold=3, window=3600, duration=600, text="421"
        )

    assert hit(NOW) is None
    assert hit(NOW + 10) is None
    store.shaping.prune(before=NOW + 5)
    assert hit(NOW + 20) is None  # two hits left in the window, not three
    assert hit(NOW + 30) == NOW + 630


def test_active_lists_only_rules_still_in_force_and_clear_ends_them(store: Store) -> None:
    shaping = store.shaping
    shaping.hit("google", "a", NOW, threshold=1, window=60, duration=100, text="x")
    shaping.hit("yahoo", "b", NOW, threshold=1, window=60, duration=1000, text="y")
    shaping.hit("outlook", "c", NOW, threshold=1, window=60, duration=1000, text="z")

    assert {(a.provider, a.rule) for a in shaping.active(NOW + 500)} == {
        ("yahoo", "b"),
        ("outlook", "c"),
    }
    shaping.clear("yahoo")
    assert [(a.provider, a.rule) for a in shaping.active(NOW + 500)] == [("outlook", "c")]
    shaping.clear()
    assert shaping.active(NOW) == []
    # a rule that fires again after a clear is active again
    shaping.hit("google", "a", NOW + 10, threshold=1, window=60, duration=100, text="x")
    assert [a.rule for a in shaping.active(NOW + 20)] == ["a"]


# ----------------------------------------------------------------- domains --


def test_domains_remember_the_provider_and_mx_hosts(store: Store) -> None:
    assert store.domains.provider_of("gmail.com") is None
    store.domains.save("gmail.com", "google", ["gmail-smtp-in.l.google.com"], NOW)
    store.domains.save("small.example", None, [], NOW)
    assert store.domains.provider_of("gmail.com") == "google"
    assert store.domains.provider_of("small.example") is None

    store.domains.save("small.example", "microsoft", ["small-example.mail.protection"], NOW + 1)

    assert store.domains.provider_of("small.example") == "microsoft"
    assert store.domains.provider_of("gmail.com") == "google"
