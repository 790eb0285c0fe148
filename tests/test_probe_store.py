"""Probe history in the store, on SQLite and PostgreSQL: reports and checks kept in order,
newest first per domain, failures countable by check id."""

from __future__ import annotations

from deliver.store import Store, StoredReport


def report(subject: str, at: float, *statuses: tuple[str, str]) -> StoredReport:
    checks = [
        {"id": check_id, "status": status, "message": f"{check_id} {status}",
         "evidence": {"n": i, "nested": {"list": [1, "two", None]}}, "fix": None}
        for i, (check_id, status) in enumerate(statuses)
    ]  # fmt: skip
    worst = "fail" if any(s == "fail" for _, s in statuses) else "pass"
    return StoredReport(subject, at, worst, {"gmail@2025-11": {"status": worst}}, checks)


def test_reports_and_their_checks_round_trip_in_order(store: Store) -> None:
    run = store.probes.start_run("domain", {"selectors": ["s1"]}, 1_000.0)
    batch = [
        report(f"d{i}.example", 1_000.0 + i, ("spf.present", "pass"), ("dmarc.policy", "warn"))
        for i in range(300)
    ]
    batch.append(report("d7.example", 2_000.0, ("spf.present", "fail")))
    assert store.probes.add_reports(run, batch) == 301
    assert store.probes.add_reports(run, []) == 0
    store.probes.finish_run(run, 3_000.0)

    newest, older = store.probes.history("d7.example")
    assert newest.checked_at == 2_000.0 and newest.status == "fail"
    assert [c["id"] for c in older.checks] == ["spf.present", "dmarc.policy"]
    assert older.checks[1]["evidence"] == {"n": 1, "nested": {"list": [1, "two", None]}}
    assert older.compliance == {"gmail@2025-11": {"status": "pass"}}
    # every report got its own checks (ids matched to rows in insertion order)
    for i in (0, 150, 299):
        (only,) = store.probes.history(f"d{i}.example")
        assert only.checked_at == 1_000.0 + i
        assert [c["message"] for c in only.checks] == ["spf.present pass", "dmarc.policy warn"]
    assert store.probes.failing_counts() == {("dmarc.policy", "warn"): 300,
                                             ("spf.present", "fail"): 1}
    assert store.probes.failing_counts(since=1_500.0) == {("spf.present", "fail"): 1}
