"""Probe history: runs, one report per audited domain or message, one row per check.

A row per check (rather than a JSON blob per report) lets the dashboard count, in SQL,
which domains fail which check over time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from deliver.store.models import ProbeCheck, ProbeReport, ProbeRun, table

__all__ = ["ProbeStore", "StoredReport"]

R = table(ProbeRun)
P = table(ProbeReport)
C = table(ProbeCheck)


@dataclass(frozen=True, slots=True)
class StoredReport:
    subject: str
    checked_at: float
    status: str
    compliance: Mapping[str, Any]
    #: each {"id", "status", "message", "evidence", "fix"}
    checks: Sequence[Mapping[str, Any]]


class ProbeStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start_run(self, kind: str, options: Mapping[str, Any], now: float) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(R).values(kind=kind, started_at=now, options=dict(options)).returning(R.c.id)
            )
            return int(result.scalar_one())

    def finish_run(self, run_id: int, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(R).where(R.c.id == run_id).values(finished_at=now))

    def add_reports(self, run_id: int, reports: Iterable[StoredReport]) -> int:
        """Write reports and their checks in one transaction (two statements, each run
        over many rows); returns how many reports."""
        batch = list(reports)
        if not batch:
            return 0
        with self.engine.begin() as conn:
            ids = (
                conn.execute(
                    insert(P).returning(P.c.id, sort_by_parameter_order=True),
                    [
                        {
                            "run_id": run_id,
                            "subject": report.subject,
                            "checked_at": report.checked_at,
                            "status": report.status,
                            "compliance": dict(report.compliance),
                        }
                        for report in batch
                    ],
                )
                .scalars()
                .all()
            )
            rows = [
                {
                    "report_id": report_id,
                    "check_id": c["id"],
                    "status": c["status"],
                    "message": c["message"],
                    "evidence": dict(c.get("evidence") or {}),
                    "fix": c.get("fix"),
                }
                for report_id, report in zip(ids, batch, strict=True)
                for c in report.checks
            ]
            if rows:
                conn.execute(insert(C), rows)
        return len(batch)

    def history(self, subject: str, limit: int = 20) -> list[StoredReport]:
        """The latest reports for a domain (or message subject), newest first."""
        with self.engine.connect() as conn:
            reports = conn.execute(
                select(P.c.id, P.c.subject, P.c.checked_at, P.c.status, P.c.compliance)
                .where(P.c.subject == subject)
                .order_by(P.c.checked_at.desc(), P.c.id.desc())
                .limit(limit)
            ).all()
            ids = [r.id for r in reports]
            checks: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
            if ids:
                for c in conn.execute(
                    select(C).where(C.c.report_id.in_(ids)).order_by(C.c.id)
                ).mappings():
                    checks[c["report_id"]].append(
                        {
                            "id": c["check_id"],
                            "status": c["status"],
                            "message": c["message"],
                            "evidence": c["evidence"],
                            "fix": c["fix"],
                        }
                    )
        return [
            StoredReport(r.subject, r.checked_at, r.status, r.compliance, checks[r.id])
            for r in reports
        ]

    def failing_counts(self, since: float = 0.0) -> dict[tuple[str, str], int]:
        """(check id, status) -> reports with that outcome since ``since``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(C.c.check_id, C.c.status, func.count())
                .join(P, P.c.id == C.c.report_id)
                .where(P.c.checked_at >= since, C.c.status != "pass")
                .group_by(C.c.check_id, C.c.status)
            ).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}
