"""Running ``probe`` over many domains: one process, or several forked workers.

With ``--workers N`` the domain list is cut into N contiguous shards; each worker (a fork
of this process, so nothing is imported twice) audits its shard with its own resolver,
stores its reports under the parent's run and writes its JSON lines to its own file. The
parent concatenates the files in shard order, so the output keeps the input order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from deliver.cli.output import err_console
from deliver.settings import Settings

__all__ = ["ProbeSetup", "RunSummary", "make_resolver", "run_domains", "stream_domains"]

T = TypeVar("T")

#: below this many domains per worker, forking costs more than it saves
MIN_DOMAINS_PER_WORKER = 100


@dataclass
class ProbeSetup:
    settings: Settings
    nameservers: tuple[str, ...]
    options: Any  # probes.checks.ProbeOptions
    rulebooks: list[Any]
    bulk: bool

    def record(self) -> dict[str, Any]:
        """What the stored run says about its options (never a secret)."""
        return {
            "nameservers": list(self.nameservers),
            "selectors": list(self.options.selectors),
            "ips": list(self.options.ips),
            "rulebooks": [r.id for r in self.rulebooks],
            "skip": sorted(self.options.skip),
            "bulk": self.bulk,
        }


@dataclass
class RunSummary:
    domains: int = 0
    findings: int = 0
    elapsed: float = 0.0
    #: the reports, kept only when they are to be shown as a table
    reports: list[Any] = field(default_factory=list)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed: auditing is mostly event-loop
    overhead (a dozen small lookups per domain), which uvloop roughly halves."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def make_resolver(settings: Settings, nameservers: Sequence[str]) -> Any:
    """The one resolver of a probe run: ``nameservers`` (or the system's), the probes'
    timeout, and no queue in front of the socket (each domain in flight asks a dozen names
    at once)."""
    from deliver.dns import Resolver

    return Resolver(
        nameservers,
        timeout=settings.probes.dns_timeout,
        concurrency=max(settings.dns.concurrency, 16 * settings.probes.concurrency),
    )


async def stream_domains(
    setup: ProbeSetup, domains: Sequence[str], emit: Callable[[Any], None]
) -> None:
    """Audit ``domains``, calling ``emit`` with each DomainReport in input order."""
    from contextlib import AsyncExitStack

    from probes.audit import audit_domains
    from probes.checks import ProbeContext
    from probes.rulebook import ComplianceMemo

    compliance = ComplianceMemo(bulk=setup.bulk).judge_all

    async with AsyncExitStack() as stack:
        http = None
        if "mta_sts" not in setup.options.skip:  # httpx loads only when policies are fetched
            import httpx

            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=10.0, follow_redirects=False)
            )
        ctx = ProbeContext(make_resolver(setup.settings, setup.nameservers), setup.options, http)
        async for report in audit_domains(
            ctx,
            domains,
            setup.rulebooks,
            compliance,
            concurrency=setup.settings.probes.concurrency,
        ):
            emit(report)


class ReportSink:
    """Stores reports in batches (one transaction per batch) as they come."""

    BATCH = 250

    def __init__(self, store: Any | None, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self.batch: list[Any] = []

    def add(self, report: Any) -> None:
        """A report audited in this process."""
        if self.store is not None:
            self._append(report.domain, report.checked_at, report.status.value,
                         report.compliance, [c.to_dict() for c in report.checks])  # fmt: skip

    def add_json(self, line: bytes) -> None:
        """A report as a worker wrote it (one JSON line; stored when read)."""
        if self.store is not None:
            data = _loads(line)
            self._append(data["domain"], time.time(), data["status"], data["compliance"],
                         data["checks"])  # fmt: skip

    def _append(self, subject: str, at: float, status: str, compliance: Any, checks: Any) -> None:
        from deliver.store import StoredReport

        self.batch.append(StoredReport(subject, at, status, compliance, checks))
        if len(self.batch) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and self.batch:
            self.store.probes.add_reports(self.run_id, self.batch)
            self.batch = []


def needs_action(report: Any) -> bool:
    """A check failed or could not be made, or a rulebook is not met."""
    if report.status.value in ("fail", "error"):
        return True
    return any(c.get("status") in ("fail", "error") for c in report.compliance.values())


def _loads(line: bytes) -> Any:
    try:
        import orjson
    except ImportError:
        return json.loads(line)
    return orjson.loads(line)


def _to_json(report: Any) -> str:
    """One report as a JSON line: orjson when installed (a tenth of the time of the
    standard library's encoder on these nested reports), else json."""
    data = report.to_dict()
    try:
        import orjson
    except ImportError:
        return json.dumps(data, ensure_ascii=False)
    try:
        return orjson.dumps(data).decode()
    except TypeError:  # a value orjson does not know (json may, or says which)
        return json.dumps(data, ensure_ascii=False)


def workers_for(requested: int, domains: int) -> int:
    """``--workers 0`` (auto): one per CPU, when there are enough domains to share."""
    if requested > 0:
        return max(1, min(requested, domains))
    return max(1, min(os.cpu_count() or 1, domains // MIN_DOMAINS_PER_WORKER))


def run_domains(
    setup: ProbeSetup,
    domains: Sequence[str],
    *,
    json_out: bool,
    store: Any | None,
    workers: int = 1,
    keep_reports: bool = False,
    write: Callable[[str], object] | None = None,
) -> RunSummary:
    """Audit ``domains``: JSON lines through ``write`` when ``json_out``, reports stored
    when ``store`` is given, reports kept for a table when ``keep_reports``."""
    run_id = store.probes.start_run("domain", setup.record(), time.time()) if store else 0
    started = time.monotonic()
    # An audit allocates many short-lived objects and few cycles: the cyclic collector's
    # default thresholds make it sweep the whole start-up heap again and again. Freeze what
    # start-up built (also spares forked workers copy-on-write) and collect less often.
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)
    try:
        if workers > 1:
            summary = _forked(setup, domains, workers, store, run_id, json_out, keep_reports, write)
        else:
            summary = _in_process(setup, domains, store, run_id, json_out, keep_reports, write)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        if store is not None:
            store.probes.finish_run(run_id, time.time())
    summary.domains = len(domains)
    summary.elapsed = time.monotonic() - started
    return summary


def _in_process(
    setup: ProbeSetup,
    domains: Sequence[str],
    store: Any | None,
    run_id: int,
    json_out: bool,
    keep_reports: bool,
    write: Callable[[str], object] | None,
    progress: bool = True,
) -> RunSummary:
    summary = RunSummary()
    sink = ReportSink(store, run_id)
    bar = _Progress(len(domains), enabled=progress and not json_out)

    def emit(report: Any) -> None:
        summary.findings += needs_action(report)
        sink.add(report)
        if json_out and write is not None:
            write(_to_json(report) + "\n")
        if keep_reports:
            summary.reports.append(report)
        bar.advance()

    with bar:
        run_async(stream_domains(setup, domains, emit))
    sink.flush()
    return summary


def _shard(domains: Sequence[str], parts: int) -> list[Sequence[str]]:
    """Domain i to worker i mod parts: costly domains (long SPF include chains, say) often
    come in runs in a list, and dealing them out keeps the workers finishing together."""
    return [domains[i::parts] for i in range(parts)]


def _interleaved(paths: Sequence[Path]) -> Iterator[str]:
    """The workers' lines dealt back in input order (the inverse of :func:`_shard`)."""
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(p.open(encoding="utf-8")) for p in paths]
        while True:
            for f in files:
                line = f.readline()
                if not line:
                    return
                yield line


def _worker(setup: ProbeSetup, shard: Sequence[str], out: Path) -> None:
    """In a forked child: audit a shard, write JSON lines to ``out``, findings to out.n.
    The parent stores the lines as they come: one writer, no lock contention."""
    code = 0
    try:
        with out.open("w", encoding="utf-8", buffering=1 << 16) as f:
            summary = _in_process(setup, shard, None, 0, True, False, f.write, False)
        out.with_suffix(".n").write_text(str(summary.findings))
    except BaseException as exc:  # reported by the parent; no traceback with user data
        out.with_suffix(".err").write_text(f"{type(exc).__name__}: {exc}"[:500])
        code = 1
    finally:
        os._exit(code)


def _forked(
    setup: ProbeSetup,
    domains: Sequence[str],
    workers: int,
    store: Any | None,
    run_id: int,
    json_out: bool,
    keep_reports: bool,
    write: Callable[[str], object] | None,
) -> RunSummary:
    from probes.audit import prepare

    prepare(setup.options.skip)
    gc.freeze()  # what prepare built too: shared with the workers, never swept
    context = multiprocessing.get_context("fork")
    summary = RunSummary()
    sink = ReportSink(store, run_id)
    with tempfile.TemporaryDirectory(prefix="sokures-probe-") as tmp:
        outs = [Path(tmp) / f"shard{i}.jsonl" for i in range(workers)]
        procs = [
            context.Process(target=_worker, args=(setup, shard, out), daemon=True)
            for shard, out in zip(_shard(domains, workers), outs, strict=True)
        ]
        bar = _Progress(len(domains), enabled=not json_out)
        tails = [_Tail(out) for out in outs]
        with bar:
            for p in procs:
                p.start()
            done = 0
            while True:
                alive = any(p.is_alive() for p in procs)
                if store is not None or bar.enabled:  # else reading costs the workers CPU
                    for tail in tails:
                        for raw in tail.lines():
                            sink.add_json(raw)
                            done += 1
                    bar.update(done)
                if not alive:
                    break
                time.sleep(0.05)
            for p in procs:
                p.join()
            for tail in tails:
                tail.close()
        sink.flush()
        failed = [o.with_suffix(".err").read_text() for o in outs if o.with_suffix(".err").exists()]
        if failed or any(p.exitcode for p in procs):
            raise RuntimeError(f"a probe worker failed: {failed[0] if failed else 'killed'}")
        summary.findings = sum(int(out.with_suffix(".n").read_text()) for out in outs)
        for line in _interleaved(outs):
            if json_out and write is not None:
                write(line)
            if keep_reports:
                summary.reports.append(_report_from_json(line))
    return summary


class _Tail:
    """The complete lines a worker has appended to its file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        self.partial = b""

    def lines(self) -> list[bytes]:
        if self.file is None:
            try:
                self.file = self.path.open("rb")
            except FileNotFoundError:
                return []
        data = self.partial + self.file.read()
        *complete, self.partial = data.split(b"\n")
        return complete

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _report_from_json(line: str) -> Any:
    from probes.audit import DomainReport
    from probes.checks import CheckResult

    data = json.loads(line)
    checks = tuple(CheckResult.from_dict(c) for c in data["checks"])
    return DomainReport(data["domain"], checks, data.get("compliance") or {})


class _Progress:
    """A Rich progress bar over the domains, on stderr, when it is a terminal."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        from rich.progress import Progress

        self.enabled = enabled and err_console.is_terminal and total > 1
        self.bar = Progress(console=err_console, transient=True)
        self.task = self.bar.add_task("probing", total=total)

    def advance(self) -> None:
        if self.enabled:
            self.bar.advance(self.task)

    def update(self, completed: int) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=completed)

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
