"""``python -m benchmarks [--only NAME] [--rounds R] [--quick] [--memory-messages N]``

Runs the benchmarks (all of them by default, at the issue's sizes), prints a summary
table of medians over the rounds and writes every round's numbers to
``bench-out/results.json``. ``KEEP=1`` keeps the temp dirs; ``BENCH_FULL=1`` sends the
whole 1,000,000-message campaign in the memory benchmark. Exit status 1 when a
benchmark failed or missed its target.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

from benchmarks.common import ROOT, BenchOptions, Skipped, log
from benchmarks.report import Outcome, summary_table, write_json
from benchmarks.stats import BenchResult

#: name -> module (each has ``run(BenchOptions) -> BenchResult``), in running order
BENCHMARKS = {
    "dkim": "benchmarks.dkim_signing",
    "e2e": "benchmarks.e2e",
    "crash": "benchmarks.crash",
    "memory": "benchmarks.memory",
    "probe": "benchmarks.probes",
    "demo": "benchmarks.demo",
}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, BenchOptions]:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", choices=list(BENCHMARKS), help="run only NAME")
    p.add_argument("--rounds", type=int, default=None, help="rounds per benchmark (default 3)")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 round: a smoke check")
    p.add_argument(
        "--memory-messages",
        type=int,
        default=None,
        help="memory: stop the send after N messages (default 200000; 0 = all 1,000,000)",
    )
    args = p.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        p.error("--rounds must be at least 1")
    memory = args.memory_messages
    if memory is None:
        memory = 0 if os.environ.get("BENCH_FULL") == "1" else (2_000 if args.quick else 200_000)
    opts = BenchOptions(
        rounds=rounds,
        quick=args.quick,
        keep=os.environ.get("KEEP") == "1",
        memory_messages=memory,
    )
    return args, opts


def run_one(name: str, opts: BenchOptions) -> Outcome:
    started = time.monotonic()
    log(f"=== {name} ===")
    try:
        run: Callable[[BenchOptions], BenchResult] = importlib.import_module(BENCHMARKS[name]).run
        outcome = Outcome(name, "ok", result=run(opts))
    except Skipped as exc:
        log(f"{name}: skipped: {exc}")
        outcome = Outcome(name, "skipped", str(exc))
    except Exception as exc:
        log(f"{name}: failed:\n{traceback.format_exc()}")
        outcome = Outcome(name, "failed", f"{type(exc).__name__}: {exc}")
    outcome.seconds = time.monotonic() - started
    log(f"{name}: {outcome.status} in {outcome.seconds:.0f} s")
    return outcome


def _terminate(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt  # unwinds through every `finally`: processes, temp dirs


def main(argv: list[str] | None = None) -> int:
    args, opts = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    started = time.monotonic()
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        for name in names:
            outcomes.append(run_one(name, opts))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: every process started was stopped")
    total = time.monotonic() - started
    meta = {
        "argv": sys.argv[1:] if argv is None else argv,
        "rounds": opts.rounds,
        "quick": opts.quick,
        "memory_messages": opts.memory_messages,
        "interrupted": interrupted,
        "seconds": round(total, 1),
    }
    out = opts.out_dir / "results.json"
    write_json(out, outcomes, meta)
    print(summary_table(outcomes, opts.rounds))
    print(f"whole run: {total / 60:.1f} min; raw numbers in {out.relative_to(ROOT)}")
    failed = any(o.status == "failed" for o in outcomes) or any(
        r.passed is False for o in outcomes for r in o.result.rows
    )
    return 130 if interrupted else int(failed)


if __name__ == "__main__":
    sys.exit(main())
