"""The summary table printed at the end, and ``bench-out/results.json``."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import BenchResult, Row

__all__ = ["Outcome", "summary_table", "write_json"]

HEADERS = ("benchmark", "figure", "ours", "peer", "ratio", "target", "result")


@dataclass
class Outcome:
    """How one benchmark ended: ``ok``, ``skipped`` or ``failed`` (with why)."""

    name: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    result: BenchResult = field(default_factory=BenchResult)


def _verdict(row: Row) -> str:
    return {True: "pass", False: "FAIL", None: ""}[row.passed]


def _cells(row: Row) -> list[str]:
    return [
        row.benchmark,
        row.figure,
        row.ours.show(),
        row.peer.show() if row.peer else "",
        row.ratio.show() if row.ratio else "",
        row.target,
        _verdict(row),
    ]


def _spread(row: Row) -> list[str]:
    """The second line under a row: min–max over the rounds, where there are several."""
    parts = [row.ours.spread(), row.peer.spread() if row.peer else ""]
    parts.append(row.ratio.spread() if row.ratio else "")
    if not any(parts):
        return []
    return ["", "  (min–max over rounds)", *parts, "", ""]


def summary_table(outcomes: Sequence[Outcome], rounds: int) -> str:
    lines: list[list[str]] = [list(HEADERS)]
    for o in outcomes:
        if o.status != "ok":
            lines.append([o.name, f"({o.status}, see below)", "", "", "", "", o.status])
            continue
        for row in o.result.rows:
            lines.append(_cells(row))
            spread = _spread(row)
            if spread:
                lines.append(spread)
    widths = [max(len(r[i]) for r in lines) for i in range(len(HEADERS))]
    out = []
    for r in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    out.insert(1, "-" * min(sum(widths) + 12, 160))
    out.append(f"medians over {rounds} round(s); ratio = ours / peer, per round, then the median")
    for o in outcomes:
        if o.status != "ok":
            out.append(f"{o.status}: {o.name}: {o.reason}")
        out.extend(f"note: {n}" for n in o.result.notes)
    return "\n".join(out)


def write_json(path: Path, outcomes: Sequence[Outcome], meta: dict[str, Any]) -> None:
    data = {
        **meta,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(),
        },
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "benchmarks": {
            o.name: {
                "status": o.status,
                "reason": o.reason,
                "seconds": round(o.seconds, 1),
                "setup": o.result.setup,
                "summary": [r.as_dict() for r in o.result.rows],
                "rounds": o.result.rounds,
                "notes": o.result.notes,
            }
            for o in outcomes
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
