"""Seed placement history: one run per placement test, one row per seed's copy.

A row per seed (rather than a JSON blob per run) lets the dashboard count placements per
provider and run in SQL; the run also keeps a summary so its history reads in one query.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, case, func, insert, select, update

from deliver.errors import NotFound
from deliver.store.models import PlacementResult, PlacementRun, table

__all__ = [
    "COUNTED",
    "PLACEMENTS",
    "RESULT_FIELDS",
    "RUN_STATUSES",
    "PlacementStore",
    "summarize",
]

R = table(PlacementRun)
P = table(PlacementResult)

#: where a seed's copy can end up; "error" means the seed could not be read (not "missing")
PLACEMENTS = ("inbox", "promotions", "spam", "missing", "error")
RUN_STATUSES = ("running", "done", "error")
#: the counts of a provider's summary: seeds, then one per placement
COUNTED = ("seeds", *PLACEMENTS)
#: the keys ``add_results`` takes; the first five are required
RESULT_FIELDS = (
    "address", "provider", "token", "placement", "sent_at",
    "folder", "category", "found_at", "seconds", "smtp_reply", "auth_results", "detail",
)  # fmt: skip
_REQUIRED = RESULT_FIELDS[:5]
_RUN_COLUMNS = (
    R.c.id, R.c.campaign_id, R.c.campaign_name, R.c.seedlist, R.c.started_at,
    R.c.finished_at, R.c.deadline_seconds, R.c.status, R.c.summary,
)  # fmt: skip


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """{provider: {"seeds", "inbox", "promotions", "spam", "missing", "error"}} of results
    (each with ``provider`` and ``placement``), providers in order of first appearance."""
    summary: dict[str, dict[str, int]] = {}
    for result in results:
        counts = summary.setdefault(result["provider"], dict.fromkeys(COUNTED, 0))
        counts["seeds"] += 1
        counts[_placement(result["placement"])] += 1
    return summary


class PlacementStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start_run(
        self,
        campaign_id: int | None,
        campaign_name: str,
        seedlist: str,
        deadline_seconds: float,
        *,
        now: float | None = None,
    ) -> int:
        """Record a run as "running"; returns its id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(R)
                .values(
                    campaign_id=campaign_id,
                    campaign_name=campaign_name,
                    seedlist=seedlist,
                    started_at=time.time() if now is None else now,
                    deadline_seconds=float(deadline_seconds),
                    status="running",
                    summary={},
                )
                .returning(R.c.id)
            )
            return int(result.scalar_one())

    def add_results(self, run_id: int, results: Sequence[Mapping[str, Any]]) -> int:
        """Store seed results (keys from :data:`RESULT_FIELDS`) in one statement; returns
        how many. An unknown key or placement is a programming error (``ValueError``)."""
        rows = [_result_row(run_id, result) for result in results]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(P), rows)
        return len(rows)

    def finish_run(
        self,
        run_id: int,
        summary: Mapping[str, Mapping[str, int]] | None = None,
        status: str = "done",
        *,
        now: float | None = None,
    ) -> dict[str, dict[str, int]]:
        """Close a run with its summary (counted from the stored results when None);
        returns the summary stored."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self.engine.begin() as conn:
            stored = (
                {p: dict(counts) for p, counts in summary.items()}
                if summary is not None
                else _counts(conn, run_id)
            )
            done = conn.execute(
                update(R)
                .where(R.c.id == run_id)
                .values(
                    finished_at=time.time() if now is None else now, status=status, summary=stored
                )
            )
            if done.rowcount == 0:
                raise NotFound(f"no placement run {run_id}")
        return stored

    def run(self, run_id: int) -> dict[str, Any]:
        """One run, as :meth:`history` gives it; :class:`NotFound` if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*_RUN_COLUMNS).where(R.c.id == run_id)).mappings().first()
        if row is None:
            raise NotFound(f"no placement run {run_id}")
        return dict(row)

    def history(self, campaign_name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs (of one campaign, or all), newest first: each with ``id``,
        ``campaign_id``, ``campaign_name``, ``seedlist``, ``started_at``, ``finished_at``,
        ``deadline_seconds``, ``status`` and ``summary``."""
        query = select(*_RUN_COLUMNS).order_by(R.c.started_at.desc(), R.c.id.desc()).limit(limit)
        if campaign_name is not None:
            query = query.where(R.c.campaign_name == campaign_name)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def results(self, run_id: int) -> list[dict[str, Any]]:
        """A run's seed results in the order they were added (every column)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(P).where(P.c.run_id == run_id).order_by(P.c.id))
            return [dict(row) for row in rows.mappings()]

    def provider_rates(
        self, campaign_name: str | None = None, limit_runs: int = 20
    ) -> list[dict[str, Any]]:
        """Placement per provider and run, for the latest ``limit_runs`` finished runs (not
        "running"), oldest run first then by provider: a time series for the dashboard.

        Each row: ``run_id``, ``campaign_name``, ``started_at``, ``provider``, the counts
        ``seeds``, ``inbox``, ``promotions``, ``spam``, ``missing``, ``error``, and
        ``inbox_rate``, ``promotions_rate``, ``spam_rate``, ``missing_rate``: fractions of
        the seeds that could be read (``seeds - error``; None when none could).
        Counted in SQL, one row per (run, provider).
        """
        runs = select(R.c.id).where(R.c.status != "running")
        if campaign_name is not None:
            runs = runs.where(R.c.campaign_name == campaign_name)
        latest = runs.order_by(R.c.started_at.desc(), R.c.id.desc()).limit(limit_runs).subquery()
        query = (
            select(R.c.id, R.c.campaign_name, R.c.started_at, P.c.provider,
                   *_placement_counts())
            .join(P, P.c.run_id == R.c.id)
            .where(R.c.id.in_(select(latest.c.id)))
            .group_by(R.c.id, R.c.campaign_name, R.c.started_at, P.c.provider)
            .order_by(R.c.started_at, R.c.id, P.c.provider)
        )  # fmt: skip
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_rates(row._mapping) for row in rows]


def _placement(value: Any) -> str:
    if value not in PLACEMENTS:
        raise ValueError(f"unknown placement {value!r} (one of {', '.join(PLACEMENTS)})")
    assert isinstance(value, str)
    return value


def _result_row(run_id: int, result: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(result) - set(RESULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown placement result keys: {', '.join(sorted(unknown))}")
    missing = [key for key in _REQUIRED if result.get(key) is None]
    if missing:
        raise ValueError(f"placement result lacks {', '.join(missing)}")
    _placement(result["placement"])
    row = dict.fromkeys(RESULT_FIELDS)
    row.update(result)
    row["run_id"] = run_id
    return row


def _placement_counts() -> list[ColumnElement[int]]:
    """COUNT(*) AS seeds, then SUM(CASE placement WHEN p THEN 1 ELSE 0 END) AS p for each."""
    counts: list[ColumnElement[int]] = [func.count().label("seeds")]
    counts += [
        func.sum(case((P.c.placement == placement, 1), else_=0)).label(placement)
        for placement in PLACEMENTS
    ]
    return counts


def _counts(conn: Connection, run_id: int) -> dict[str, dict[str, int]]:
    """A run's summary counted in SQL from its stored results."""
    rows = conn.execute(
        select(P.c.provider, *_placement_counts())
        .where(P.c.run_id == run_id)
        .group_by(P.c.provider)
        .order_by(func.min(P.c.id))
    ).all()
    return {row.provider: {key: int(row._mapping[key]) for key in COUNTED} for row in rows}


def _rates(row: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": int(row["id"]),
        "campaign_name": row["campaign_name"],
        "started_at": row["started_at"],
        "provider": row["provider"],
    }
    out.update({key: int(row[key]) for key in COUNTED})
    judged = out["seeds"] - out["error"]
    for placement in ("inbox", "promotions", "spam", "missing"):
        out[f"{placement}_rate"] = out[placement] / judged if judged else None
    return out
