"""``memory``: peak RSS while sending a 1,000,000-contact campaign.

A 1,000,000-row CSV is streamed to disk once; each round imports it (the importer's
peak RSS from ``os.wait4``), creates the campaign (timed), then runs
``sokures send --relay`` to a counting smtp-sink while sampling the send process's RSS
(VmRSS of it and every descendant) every 0.5 s, plus its ``ru_maxrss`` at exit.
Sending all 1,000,000 takes 20+ minutes here, so by default the send is stopped
gracefully (SIGTERM: it finishes the messages in hand and exits) once the sink has
``--memory-messages`` (200,000); ``--memory-messages 0`` or ``BENCH_FULL=1`` sends all.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import BenchOptions, log, require_programs, temp_dir
from benchmarks.procs import PhaseTimeout, Processes, descendants, wait_rusage
from benchmarks.sink import SMTP_SINK, Sink
from benchmarks.stats import BenchResult, Row, Series
from benchmarks.workspace import Workspace, write_contacts

NAME = "memory"
TARGET_MB = 300
SAMPLE_EVERY = 0.5
IMPORT_TIMEOUT = 3600.0


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    return rss_kib(pid) + sum(rss_kib(k) for k in descendants(pid))


@dataclass
class SendWatch:
    """RSS samples (seconds since start, MiB) of a running send, until it exits."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    maxrss_mb: float = 0.0
    returncode: int | None = None
    stopped_at: int | None = None
    #: seconds since start when SIGTERM was sent (the rest is the graceful shutdown)
    stop_time: float | None = None
    seconds: float = 0.0

    @property
    def peak_mb(self) -> float:
        return max([self.maxrss_mb, *(mb for _, mb in self.samples)])

    @property
    def peak_sending_mb(self) -> float:
        """The peak before SIGTERM: while messages were being sent."""
        end = self.stop_time if self.stop_time is not None else float("inf")
        return max((mb for t, mb in self.samples if t <= end), default=0.0)

    def trend(self) -> list[float]:
        """RSS at 25/50/75/100% of the run."""
        if not self.samples:
            return []
        last = len(self.samples) - 1
        return [self.samples[round(last * q)][1] for q in (0.25, 0.5, 0.75, 1.0)]


def _reap(pid: int) -> tuple[int, int, float] | None:
    """(pid, exit code, ru_maxrss MiB) once ``pid`` exited, else None."""
    got, status, usage = os.wait4(pid, os.WNOHANG)
    if got != pid:
        return None
    return got, os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024


def watch_send(pid: int, sink: Sink, stop_after: int, timeout: float) -> SendWatch:
    watch = SendWatch()
    started = time.monotonic()
    while True:
        done = _reap(pid)
        if done is not None:
            _, watch.returncode, watch.maxrss_mb = done
            break
        now = time.monotonic() - started
        rss = tree_rss_kib(pid)
        if rss:  # 0: it has just exited (a zombie has no VmRSS)
            watch.samples.append((round(now, 2), rss / 1024))
        if stop_after and watch.stopped_at is None and sink.count() >= stop_after:
            watch.stopped_at, watch.stop_time = sink.count(), now
            log(f"memory: sink has {watch.stopped_at:,} messages: SIGTERM to the send")
            os.kill(pid, signal.SIGTERM)
        if now > timeout:
            raise PhaseTimeout(f"sokures send still running after {timeout:.0f} s")
        time.sleep(SAMPLE_EVERY)
    watch.seconds = time.monotonic() - started
    return watch


def import_contacts(ws: Workspace, csv: Path) -> dict[str, float]:
    args = ("contacts", "import", str(csv), "--allow-test-domains", "--json")
    started = time.perf_counter()
    proc, stem = ws.start(*args)
    usage = wait_rusage(proc, IMPORT_TIMEOUT, "sokures contacts import")
    seconds = time.perf_counter() - started
    ws.check(proc, stem, args)
    return {"import_seconds": round(seconds, 2), "import_peak_mb": round(usage.ru_maxrss / 1024, 1)}


def send_and_watch(
    ws: Workspace, sink: Sink, name: str, stop_after: int, total: int
) -> dict[str, Any]:
    args = ("send", name, "--relay", sink.address, "--json")
    proc, stem = ws.start(*args)
    # bounded: below 50 msg/s something is wrong anyway
    watch = watch_send(proc.pid, sink, stop_after, timeout=300 + (stop_after or total) / 50)
    proc.returncode = watch.returncode  # reaped by os.wait4 in watch_send
    err = stem.with_suffix(".err").read_text(errors="replace").strip()[-400:]
    sent = sink.count()
    return {
        "send_returncode": watch.returncode,
        "send_stderr_tail": err,
        "sent": sent,
        "stopped_at": watch.stopped_at,
        "send_seconds": round(watch.seconds, 1),
        "send_msg_per_s": round(sent / watch.seconds, 1) if watch.seconds else 0.0,
        "peak_rss_mb": round(watch.peak_mb, 1),
        "peak_rss_sending_mb": round(watch.peak_sending_mb, 1),
        "ru_maxrss_mb": round(watch.maxrss_mb, 1),
        "rss_trend_mb": [round(x, 1) for x in watch.trend()],
        "rss_samples": [[t, round(mb, 1)] for t, mb in watch.samples],
    }


def one_round(base: Path, csv: Path, total: int, stop_after: int, i: int) -> dict[str, Any]:
    with Processes() as procs:
        directory = base / f"r{i}"
        directory.mkdir()
        ws = Workspace(directory, procs)
        ws.setup()
        raw: dict[str, Any] = {"contacts": total, **import_contacts(ws, csv)}
        log(f"memory: imported {total:,} contacts in {raw['import_seconds']} s, "
            f"importer peak RSS {raw['import_peak_mb']} MB")  # fmt: skip
        started = time.perf_counter()
        ws.run(*ws.create_args(f"memory-r{i}"), timeout=IMPORT_TIMEOUT)
        raw["create_seconds"] = round(time.perf_counter() - started, 2)
        log(f"memory: campaign of {total:,} created in {raw['create_seconds']} s")
        sink = Sink(procs, directory, dump=False)
        sink.start()
        raw.update(send_and_watch(ws, sink, f"memory-r{i}", stop_after, total))
        raw["states_after"] = ws.status(f"memory-r{i}")["states"]
        sink.stop()
    log(
        f"memory round {i}: peak RSS {raw['peak_rss_mb']} MB while sending {raw['sent']:,} "
        f"of {total:,}; trend {raw['rss_trend_mb']} MB; send exit {raw['send_returncode']}"
    )
    return raw


def run(opts: BenchOptions) -> BenchResult:
    require_programs(SMTP_SINK)
    total = 20_000 if opts.quick else 1_000_000
    stop_after = min(opts.memory_messages, total) if opts.memory_messages else 0
    result = BenchResult(setup={"contacts": total, "stop_after": stop_after})
    with temp_dir("memory", opts.keep) as base:
        csv = base / "contacts.csv"
        started = time.perf_counter()
        size = write_contacts(csv, total)
        result.setup["csv_bytes"] = size
        log(f"memory: wrote {total:,} rows ({size / total:.0f} B/row) in "
            f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        for i in range(1, opts.rounds + 1):
            log(f"memory round {i}/{opts.rounds}")
            result.rounds.append(one_round(base, csv, total, stop_after, i))
    result.rows = rows(result, total)
    for i, r in enumerate(result.rounds, 1):
        result.notes.append(
            f"memory round {i}: send RSS at 25/50/75/100% of the run: "
            f"{' / '.join(f'{x:.0f}' for x in r['rss_trend_mb'])} MB "
            f"(peak {r['peak_rss_sending_mb']:.0f} MB before SIGTERM, "
            f"{r['peak_rss_mb']:.0f} MB with the shutdown); "
            f"sent {r['sent']:,} of {total:,} (queue of {total:,}); "
            f"send exit {r['send_returncode']}"
        )
    return result


def rows(result: BenchResult, total: int) -> list[Row]:
    r = result.rounds
    sent = min(x["sent"] for x in r)
    peak = Series.of([x["peak_rss_mb"] for x in r], " MB")
    return [
        Row(NAME, f"peak RSS sending {sent:,}+ of {total:,}", peak,
            target=f"< {TARGET_MB} MB", passed=max(peak.values) < TARGET_MB),
        Row(NAME, f"importer peak RSS ({total:,} rows)",
            Series.of([x["import_peak_mb"] for x in r], " MB")),
        Row(NAME, f"import time ({total:,} rows)",
            Series.of([x["import_seconds"] for x in r], " s", 1)),
        Row(NAME, f"campaign create time ({total:,})",
            Series.of([x["create_seconds"] for x in r], " s", 1)),
        Row(NAME, "send rate during the memory run",
            Series.of([x["send_msg_per_s"] for x in r], " msg/s")),
    ]  # fmt: skip
