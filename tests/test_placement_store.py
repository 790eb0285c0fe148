"""Placement history in the store, on SQLite and PostgreSQL: runs and seed results kept in
order, newest runs first, rates per provider and run counted in SQL, and migration 0003
applied and reverted."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import delete, inspect, select

from deliver.errors import NotFound
from deliver.store import Store
from deliver.store.database import MIGRATIONS
from deliver.store.models import Campaign, PlacementResult, PlacementRun, table
from deliver.store.placement import PlacementStore, summarize
from tests.store_helpers import NOW, add_contacts, contact_row, make_campaign


def result(address: str, provider: str, placement: str, **extra: Any) -> dict[str, Any]:
    found = placement in ("inbox", "promotions", "spam")
    row: dict[str, Any] = {
        "address": address,
        "provider": provider,
        "token": f"tok-{address}",
        "placement": placement,
        "sent_at": NOW,
        "found_at": NOW + 4.5 if found else None,
        "seconds": 4.5 if found else None,
    }
    row.update(extra)
    return row


LAB_RESULTS = [
    result("seed.gmail@gmail.com", "gmail", "inbox", folder="INBOX", category="primary",
           auth_results="mx.lab; dkim=pass header.d=sender.test; dmarc=pass"),
    result("seed.gmail2@gmail.com", "gmail", "promotions", folder="INBOX", category="promotions"),
    result("seed.yahoo@yahoo.com", "yahoo", "inbox", folder="INBOX"),
    result("blackhole.seed@yahoo.com", "yahoo", "missing", detail="not found before the deadline"),
    result("junk.seed@outlook.com", "outlook", "spam", folder="Junk"),
    result("seed.outlook@outlook.com", "outlook", "missing",
           smtp_reply="550 5.7.515 Access denied, sending domain does not meet the required"
                      " authentication level."),
    result("seed.others@example.net", "others", "error", detail="IMAP login failed"),
]  # fmt: skip


def placement(store: Store) -> PlacementStore:
    return PlacementStore(store.engine)


def test_a_run_and_its_results_round_trip(store: Store) -> None:
    campaign = make_campaign(store, add_contacts(store, [contact_row("a@example.com")]))
    runs = placement(store)
    run_id = runs.start_run(campaign.id, "spring", "lab", 120, now=NOW)
    assert runs.run(run_id)["status"] == "running"
    assert runs.add_results(run_id, LAB_RESULTS[:4]) == 4
    assert runs.add_results(run_id, LAB_RESULTS[4:]) == 3
    assert runs.add_results(run_id, []) == 0
    summary = runs.finish_run(run_id, now=NOW + 30)  # counted from the stored rows, in SQL

    expected = summarize(LAB_RESULTS)
    assert summary == expected
    assert expected["yahoo"] == {"seeds": 2, "inbox": 1, "promotions": 0, "spam": 0,
                                 "missing": 1, "error": 0}  # fmt: skip
    (run,) = runs.history()
    assert run == {
        "id": run_id, "campaign_id": campaign.id, "campaign_name": "spring", "seedlist": "lab",
        "started_at": NOW, "finished_at": NOW + 30, "deadline_seconds": 120.0,
        "status": "done", "summary": expected,
    }  # fmt: skip
    assert runs.run(run_id) == run
    stored = runs.results(run_id)
    assert [r["address"] for r in stored] == [r["address"] for r in LAB_RESULTS]
    for got, sent in zip(stored, LAB_RESULTS, strict=True):
        assert got["run_id"] == run_id
        assert {k: got[k] for k in sent} == sent
    assert stored[1]["smtp_reply"] is None and stored[5]["smtp_reply"].startswith("550 5.7.515")


def test_history_is_newest_first_per_campaign_and_keeps_deleted_campaigns(
    store: Store,
) -> None:
    campaign = make_campaign(store, add_contacts(store, [contact_row("a@example.com")]))
    runs = placement(store)
    ids = []
    for i, name in enumerate(["spring", "autumn", "spring", "spring"]):
        run_id = runs.start_run(campaign.id if name == "spring" else None, name, "lab", 60,
                                now=NOW + i)  # fmt: skip
        runs.finish_run(run_id, {"gmail": {"seeds": 1, "inbox": 1}}, now=NOW + i + 1)
        ids.append(run_id)
    assert [r["id"] for r in runs.history()] == ids[::-1]
    assert [r["id"] for r in runs.history("spring", limit=2)] == [ids[3], ids[2]]
    assert [r["id"] for r in runs.history("winter")] == []

    with store.engine.begin() as conn:  # the campaign goes; its placement history stays
        conn.execute(delete(table(Campaign)).where(table(Campaign).c.id == campaign.id))
    kept = runs.history("spring")
    assert len(kept) == 3 and {r["campaign_id"] for r in kept} == {None}


def test_deleting_a_run_deletes_its_results(store: Store) -> None:
    runs = placement(store)
    run_id = runs.start_run(None, "spring", "lab", 60, now=NOW)
    runs.add_results(run_id, LAB_RESULTS)
    other = runs.start_run(None, "spring", "lab", 60, now=NOW)
    runs.add_results(other, LAB_RESULTS[:1])
    with store.engine.begin() as conn:
        conn.execute(delete(table(PlacementRun)).where(table(PlacementRun).c.id == run_id))
        left = conn.execute(select(table(PlacementResult).c.run_id)).scalars().all()
    assert left == [other]


def test_bad_results_are_refused_and_nothing_is_written(store: Store) -> None:
    runs = placement(store)
    run_id = runs.start_run(None, "spring", "lab", 60, now=NOW)
    with pytest.raises(ValueError, match="unknown placement 'junk'"):
        runs.add_results(run_id, [LAB_RESULTS[0], result("x@gmail.com", "gmail", "junk")])
    with pytest.raises(ValueError, match="unknown placement result keys: folderr"):
        runs.add_results(run_id, [result("x@gmail.com", "gmail", "inbox", folderr="INBOX")])
    with pytest.raises(ValueError, match="lacks token"):
        runs.add_results(run_id, [result("x@gmail.com", "gmail", "inbox", token=None)])
    assert runs.results(run_id) == []
    with pytest.raises(ValueError, match="unknown run status"):
        runs.finish_run(run_id, status="finished")
    with pytest.raises(NotFound, match="no placement run 999"):
        runs.finish_run(999)
    with pytest.raises(NotFound):
        runs.run(999)


def test_provider_rates_per_run_are_counted_in_sql(store: Store) -> None:
    runs = placement(store)
    first = runs.start_run(None, "spring", "lab", 60, now=NOW)
    runs.add_results(first, LAB_RESULTS)
    runs.finish_run(first, now=NOW + 1)
    second = runs.start_run(None, "spring", "lab", 60, now=NOW + 100)
    runs.add_results(second, [result(f"s{i}@gmail.com", "gmail", "spam" if i % 4 else "inbox")
                              for i in range(8)])  # fmt: skip
    runs.finish_run(second, status="error", now=NOW + 101)
    other = runs.start_run(None, "autumn", "lab", 60, now=NOW + 200)
    runs.add_results(other, LAB_RESULTS[:1])
    runs.finish_run(other, now=NOW + 201)
    running = runs.start_run(None, "spring", "lab", 60, now=NOW + 300)  # not counted yet
    runs.add_results(running, LAB_RESULTS)

    rates = runs.provider_rates("spring")
    assert [(r["run_id"], r["provider"]) for r in rates] == [
        (first, "gmail"), (first, "others"), (first, "outlook"), (first, "yahoo"),
        (second, "gmail"),
    ]  # fmt: skip
    gmail = rates[0]
    assert gmail == {
        "run_id": first, "campaign_name": "spring", "started_at": NOW, "provider": "gmail",
        "seeds": 2, "inbox": 1, "promotions": 1, "spam": 0, "missing": 0, "error": 0,
        "inbox_rate": 0.5, "promotions_rate": 0.5, "spam_rate": 0.0, "missing_rate": 0.0,
    }  # fmt: skip
    # a seed that could not be read says nothing about placement: no rate at all
    assert rates[1]["error"] == 1 and rates[1]["inbox_rate"] is None
    assert (rates[4]["seeds"], rates[4]["inbox_rate"], rates[4]["spam_rate"]) == (8, 0.25, 0.75)
    assert [r["run_id"] for r in runs.provider_rates("spring", limit_runs=1)] == [second]
    assert {r["run_id"] for r in runs.provider_rates()} == {first, second, other}
    assert runs.provider_rates("winter") == []


def test_migration_0003_goes_down_and_up_again(store_url: str) -> None:
    opened = Store.open(store_url)
    try:
        with opened.engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
            down = set(inspect(conn).get_table_names())
            command.upgrade(cfg, "head")
            up = set(inspect(conn).get_table_names())
        assert {"placement_runs", "placement_results"}.isdisjoint(down)
        assert {"probe_runs", "campaigns"} <= down
        assert {"placement_runs", "placement_results"} <= up
        run_id = placement(opened).start_run(None, "spring", "lab", 60, now=NOW)
        assert placement(opened).add_results(run_id, LAB_RESULTS) == len(LAB_RESULTS)
    finally:
        opened.close()
