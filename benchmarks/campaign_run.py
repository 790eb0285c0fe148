"""One timed campaign: create it, send it through ``--relay`` to an smtp-sink, and
check what arrived. Shared by the e2e and crash benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import log
from benchmarks.dumps import DumpCheck, check_dump
from benchmarks.procs import Processes
from benchmarks.sink import Sink
from benchmarks.workspace import DOMAIN, Workspace

__all__ = ["CampaignRun", "prepare", "send_timeout", "timed_campaign"]


def send_timeout(n: int) -> float:
    """A generous limit for sending ``n`` messages (20 msg/s would be a failure anyway)."""
    return 120.0 + n / 20


@dataclass
class CampaignRun:
    n: int
    workers: int
    seconds: float
    create_seconds: float
    send_exit_seconds: float
    delivered: int
    check: DumpCheck | None

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.n,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "msg_per_s": round(self.rate, 1),
            "create_seconds": round(self.create_seconds, 3),
            "send_exit_seconds": round(self.send_exit_seconds, 3),
            "status_delivered": self.delivered,
            "dump_check": self.check.describe() if self.check else None,
        }


def prepare(
    directory: Path, procs: Processes, contacts: Path, *, dump: bool
) -> tuple[Workspace, Sink]:
    """Untimed set-up: a sokures installation with the contacts imported, and a sink."""
    ws = Workspace(directory, procs)
    ws.setup(contacts)
    sink = Sink(procs, directory, dump=dump)
    sink.start()
    return ws, sink


def timed_campaign(ws: Workspace, sink: Sink, n: int, workers: int, name: str) -> CampaignRun:
    """Timed from just before ``campaign create`` until the sink counts ``n`` messages;
    then the send must exit cleanly, ``status --json`` show ``n`` delivered, and every
    dumped message carry a DKIM signature (a sample verified with dkimpy)."""
    started = time.perf_counter()
    ws.run(*ws.create_args(name), timeout=600)
    created = time.perf_counter()
    args = ("send", name, "--relay", sink.address, "--workers", str(workers), "--json")
    proc, stem = ws.start(*args)
    ended = sink.wait_for(n, send_timeout(n))
    ws.procs.wait(proc, 120, "sokures send (after the sink had every message)")
    exited = time.perf_counter()
    ws.check(proc, stem, args)
    states = ws.status(name)["states"]
    if states["delivered"] != n:
        raise AssertionError(f"status --json after the send: {states}, expected {n} delivered")
    check = None
    if sink.dump:
        check = check_dump(sink.dump_files(), DOMAIN, ws.dkim_record())
        if not check.ok or check.messages != n:
            raise AssertionError(f"sink dump check failed: {check.describe()}")
    run = CampaignRun(
        n, workers, ended - started, created - started, exited - ended, states["delivered"], check
    )
    log(
        f"ours (--workers {workers}): {n} msgs in {run.seconds:.2f} s = {run.rate:.1f} msg/s "
        f"(create {run.create_seconds:.2f} s); {check.describe() if check else ''}"
    )
    return run
