"""``crash``: ``kill -9`` in the middle of a 20,000-message campaign (the issue's
acceptance check; the test suite has a smaller version).

The sink dumps every message so duplicates can be counted by Message-ID (a message
sent again keeps its Message-ID). When the sink has about 40% of the messages the send
process is killed with SIGKILL; the messages in flight are counted at once from the
SQLite file, read-only (state queued/deferred with a lease owner); ``sokures send``
then runs again to completion. Pass: every message in a final state and none queued,
none lost (distinct Message-IDs at the sink == N), duplicates <= in flight.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from benchmarks.campaign_run import prepare, send_timeout
from benchmarks.common import BenchOptions, log, require_programs, temp_dir
from benchmarks.dumps import message_ids
from benchmarks.procs import Processes
from benchmarks.sink import SMTP_SINK, Sink
from benchmarks.stats import BenchResult, Row, Series
from benchmarks.workspace import Workspace, write_contacts

NAME = "crash"
KILL_AT = 0.4
FINAL = ("delivered", "bounced", "expired", "suppressed")


def in_flight(db: Path, campaign_id: int) -> dict[str, int]:
    """Leased messages not yet in a final state, and every state's count (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        leased = conn.execute(
            "SELECT count(*) FROM messages WHERE campaign_id = ? "
            "AND state IN ('queued', 'deferred') AND lease_owner IS NOT NULL",
            (campaign_id,),
        ).fetchone()[0]
        states = conn.execute(
            "SELECT state, count(*) FROM messages WHERE campaign_id = ? GROUP BY state",
            (campaign_id,),
        ).fetchall()
    finally:
        conn.close()
    return {"in_flight": int(leased), **{str(s): int(c) for s, c in states}}


def kill_mid_send(ws: Workspace, sink: Sink, name: str, campaign_id: int, n: int) -> dict[str, Any]:
    args = ("send", name, "--relay", sink.address, "--json")
    proc, _ = ws.start(*args)
    sink.wait_for(int(n * KILL_AT), send_timeout(n))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    at_kill = in_flight(ws.db_path, campaign_id)
    at_kill["sink_count"] = sink.count()
    log(f"crash: kill -9 with the sink at {at_kill['sink_count']}/{n}: {at_kill}")
    return at_kill


def one_round(base: Path, contacts: Path, n: int, i: int) -> dict[str, Any]:
    with Processes() as procs:
        directory = base / f"r{i}"
        directory.mkdir()
        ws, sink = prepare(directory, procs, contacts, dump=True)
        name = f"crash-r{i}"
        created = json.loads(ws.run(*ws.create_args(name), timeout=600))
        at_kill = kill_mid_send(ws, sink, name, int(created["id"]), n)
        started = time.perf_counter()
        ws.run("send", name, "--relay", sink.address, "--json", timeout=send_timeout(n))
        resend_seconds = time.perf_counter() - started
        states = ws.status(name)["states"]
        seen = message_ids(sink.dump_files())
        sink.stop()
    total = sum(seen.values())
    duplicates = total - len(seen)
    raw = {
        "messages": n,
        "at_kill": at_kill,
        "in_flight": at_kill["in_flight"],
        "resend_seconds": round(resend_seconds, 2),
        "states_after": states,
        "received": total,
        "distinct_message_ids": len(seen),
        "without_message_id": seen.get(b"", 0),
        "duplicates": duplicates,
        "lost": n - len(seen),
    }
    raw["nothing_lost"] = (
        sum(states[s] for s in FINAL) == n
        and states["queued"] == 0
        and states["deferred"] == 0
        and raw["lost"] == 0
        and raw["without_message_id"] == 0
    )
    raw["duplicates_bounded"] = duplicates <= at_kill["in_flight"]
    raw["passed"] = raw["nothing_lost"] and raw["duplicates_bounded"]
    log(f"crash round {i}: {raw}")
    return raw


def run(opts: BenchOptions) -> BenchResult:
    require_programs(SMTP_SINK)
    n = 2_000 if opts.quick else 20_000
    result = BenchResult(setup={"messages": n, "kill_at": KILL_AT})
    with temp_dir("crash", opts.keep) as base:
        contacts = base / "contacts.csv"
        write_contacts(contacts, n)
        for i in range(1, opts.rounds + 1):
            log(f"crash round {i}/{opts.rounds}")
            result.rounds.append(one_round(base, contacts, n, i))
    r = result.rounds
    result.rows = [
        Row(NAME, f"lost after kill -9 at {KILL_AT:.0%} of {n:,}",
            Series.of([x["lost"] for x in r]), target="0, all final",
            passed=all(x["nothing_lost"] for x in r)),
        Row(NAME, "in flight at the kill (leased, not final)",
            Series.of([x["in_flight"] for x in r])),
        Row(NAME, "duplicates at the sink (received - distinct)",
            Series.of([x["duplicates"] for x in r]), target="<= in flight",
            passed=all(x["duplicates_bounded"] for x in r)),
    ]  # fmt: skip
    return result
