"""``probe``: auditing 1,000 domains against checkdmarc, same Knot server, same run.

``shared/bench/peer_checkdmarc.sh`` generates the broken zones and their ground truth
(``zones/truth.tsv``), serves them with Knot on 127.0.0.153:53, times checkdmarc over all
the domains, compares checkdmarc with the truth and then, with ``VS_CMD`` set, times our
command against the same server while it is still up:

    sokures probe --from-file DOMAINS --nameserver 127.0.0.153 --selector s1
        --skip dnsbl --skip mta_sts --json --no-store [--workers N]

Each round runs the script once per ``--workers`` setting (1, and 2 when the CLI has the
option), so every ratio compares two runs against the same server under the same noise.
The target (>= 10x, aim 20x) holds for the last setting, the machine's two cores; the
one-process figure is shown for reference (checkdmarc is single-threaded).
Our time is the script's (``vs:`` line): it includes ``bash -c`` and one ``knotc stats``
call after our run (a few ms), which counts the queries Knot answered us. Our output is
then judged against the truth by :mod:`benchmarks.probe_truth`; any disagreement fails
the benchmark, and the rows list per area how both tools agree.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import probe_truth
from benchmarks.common import (
    SHARED_BENCH,
    VENV_BIN,
    BenchOptions,
    Skipped,
    log,
    require_programs,
    temp_dir,
)
from benchmarks.procs import PhaseTimeout, Processes
from benchmarks.stats import BenchResult, Row, Series, ratios

__all__ = ["NAME", "ScriptRun", "run"]

NAME = "probe"
SCRIPT = SHARED_BENCH / "peer_checkdmarc.sh"
DNS_ADDR = "127.0.0.153"
DOMAINS = 1000  # the script regenerates the zones when D changes: keep the default set
SELECTOR = "s1"
TARGET, AIM = 10.0, 20.0
#: a whole script run: zones (~6 s when regenerated), checkdmarc (~40 s), ours
SCRIPT_TIMEOUT = 900.0
#: its trap stops checkdmarc and knotd
SCRIPT_GRACE = 30.0

_CHECKDMARC = re.compile(r"^checkdmarc: (\d+) domains in ([\d.]+) s = ([\d.]+) domains/s", re.M)
_VS = re.compile(r"^vs: (\d+) domains in ([\d.]+) s = ([\d.]+) domains/s = ([\d.]+)x", re.M)
_QUERIES = re.compile(r"knotd answered (\d+) queries during the run \(([\d.]+)/domain\)")
_QTYPES = re.compile(r"query types: (.*)$", re.M)
_KEPT = re.compile(r"peer_checkdmarc: kept (/tmp/peer-checkdmarc\.\w+)")
_STAT = re.compile(r"^mod-stats\.(request-protocol|query-type)\[([^\]]+)\] = (\d+)$", re.M)
#: what the CLI may print to stderr as a summary: a query count, its own time
_CLI_QUERIES = re.compile(r"([\d,]+) (?:DNS )?quer(?:y|ies)\b")
_CLI_TIME = re.compile(r"audited ([\d,]+) domains? in ([\d.]+) s")


@dataclass(frozen=True)
class ScriptRun:
    """What one ``peer_checkdmarc.sh`` run printed, both sides."""

    domains: int
    checkdmarc_seconds: float
    ours_seconds: float
    checkdmarc_queries: int | None
    checkdmarc_query_types: str

    @property
    def checkdmarc_rate(self) -> float:
        return self.domains / self.checkdmarc_seconds

    @property
    def ours_rate(self) -> float:
        return self.domains / self.ours_seconds

    @property
    def ratio(self) -> float:
        return self.checkdmarc_seconds / self.ours_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "domains": self.domains,
            "checkdmarc_seconds": self.checkdmarc_seconds,
            "checkdmarc_domains_per_s": round(self.checkdmarc_rate, 2),
            "ours_seconds": self.ours_seconds,
            "ours_domains_per_s": round(self.ours_rate, 2),
            "ratio": round(self.ratio, 3),
            "checkdmarc_queries": self.checkdmarc_queries,
            "checkdmarc_query_types": self.checkdmarc_query_types,
        }


# ------------------------------------------------------------ prerequisites ----


def _port_in_use(addr: str, port: int = 53) -> str | None:
    """Why ``addr:port`` cannot be had (UDP or TCP), or None when both are free."""
    for kind, name in ((socket.SOCK_DGRAM, "UDP"), (socket.SOCK_STREAM, "TCP")):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((addr, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"something already listens on {addr}:{port}/{name}"
                return f"cannot bind {addr}:{port}/{name}: {exc}"
    return None


def _probe_help() -> str:
    sokures = VENV_BIN / "sokures"
    if not sokures.exists():
        raise Skipped(f"{sokures} not found (make install)")
    try:
        done = subprocess.run(
            [str(sokures), "probe", "--help"], capture_output=True, text=True, timeout=120,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise RuntimeError("`sokures probe --help` did not answer within 120 s") from None
    if done.returncode != 0 or "--from-file" not in done.stdout:
        raise Skipped(f"`sokures probe` is not available: {done.stderr.strip()[-300:]}")
    return done.stdout


def require() -> str:
    """Skipped unless everything the script and our side need is here; the help text."""
    if not SCRIPT.exists():
        raise Skipped(f"{SCRIPT} not found")
    require_programs("knotd", "knotc", "kdig", "ss", "python3", "pgrep")
    if os.geteuid() != 0:
        raise Skipped("peer_checkdmarc.sh runs knotd on port 53 as user knot: it needs root")
    return _probe_help()


# --------------------------------------------------------------- one run ----


def probe_command(workers: int, has_workers: bool) -> str:
    """Our command as the script runs it (``$DOMAINS_FILE``, ``$DNS_ADDR`` from its env)."""
    argv = [
        str(VENV_BIN / "sokures"), "probe", "--from-file", "$DOMAINS_FILE",
        "--nameserver", "$DNS_ADDR", "--selector", SELECTOR,
        "--skip", "dnsbl", "--skip", "mta_sts", "--json", "--no-store",
    ]  # fmt: skip
    if has_workers:
        argv += ["--workers", str(workers)]
    return " ".join(f'"{a}"' if a.startswith("$") else shlex.quote(a) for a in argv)


def ours_command(out: Path, workers: int, has_workers: bool) -> str:
    """``VS_CMD``: our run, then Knot's counters; never fails the script itself (our
    exit status goes to ``ours.exit`` and is judged here, with the output)."""
    cmd = probe_command(workers, has_workers)
    o = shlex.quote(str(out))
    # after our run, find the script's knotd (its child, pidfile in WORK/run) with bash
    # builtins only (this is timed); the script saved its counters after checkdmarc
    return (
        f"t0=$EPOCHREALTIME; {cmd} > {o}/ours.jsonl 2> {o}/ours.stderr; rc=$?; t1=$EPOCHREALTIME; "
        f'echo "$rc $t0 $t1" > {o}/ours.exit; '
        "for f in /tmp/peer-checkdmarc.*/run/knot.pid; do "
        'p=; { read -r p || [[ -n $p ]]; } < "$f" '  # the pidfile has no final newline
        '&& read -r _ _ _ pp _ < "/proc/$p/stat" && [[ $pp == "$PPID" ]] '
        "&& w=${f%/run/knot.pid}; done 2>/dev/null; "
        f'[[ -n ${{w:-}} ]] && cp "$w/stats-after" {o}/knot-before '
        f'&& knotc -c "$w/knot.conf" stats > {o}/knot-after 2>/dev/null; exit 0'
    )


def _knot_counters(path: Path) -> dict[str, int]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return {f"{m[1]}[{m[2]}]": int(m[3]) for m in _STAT.finditer(text)}


def _ours_queries(out: Path) -> dict[str, Any]:
    """Queries Knot answered during our run (its counters after - before), and any
    query count our CLI printed to stderr."""
    before, after = _knot_counters(out / "knot-before"), _knot_counters(out / "knot-after")
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    found: dict[str, Any] = {}
    if before and after:
        found["queries"] = sum(v for k, v in delta.items() if k.startswith("request-protocol"))
        found["query_types"] = " ".join(
            f"{k[11:-1]}={v}" for k, v in delta.items() if k.startswith("query-type")
        )
    stderr = (out / "ours.stderr").read_text(errors="replace")
    cli = _CLI_QUERIES.findall(stderr)
    if cli:
        found["cli_queries"] = int(cli[-1].replace(",", ""))
    cli_time = _CLI_TIME.findall(stderr)
    if cli_time:  # the CLI's own clock: the rest of our time is start-up and exit
        found["cli_seconds"] = float(cli_time[-1][1])
    return found


def _remove_kept(err_text: str, keep: bool) -> None:
    found = _KEPT.search(err_text)
    if found and not keep:
        shutil.rmtree(found.group(1), ignore_errors=True)


def _parse(out_text: str, err_text: str) -> ScriptRun:
    cd, vs = _CHECKDMARC.search(out_text), _VS.search(out_text)
    if cd is None or vs is None:
        raise RuntimeError(f"peer_checkdmarc.sh printed no checkdmarc/vs line: {out_text[-500:]}")
    queries, qtypes = _QUERIES.search(err_text), _QTYPES.search(err_text)
    return ScriptRun(
        domains=int(vs.group(1)),
        checkdmarc_seconds=float(cd.group(2)),
        ours_seconds=float(vs.group(2)),
        checkdmarc_queries=int(queries.group(1)) if queries else None,
        checkdmarc_query_types=qtypes.group(1).strip() if qtypes else "",
    )


def run_script(procs: Processes, work: Path, vs_cmd: str, keep: bool) -> ScriptRun:
    """``peer_checkdmarc.sh 1000`` with ``VS_CMD``; its own trap stops knotd."""
    busy = _port_in_use(DNS_ADDR)
    if busy:
        raise RuntimeError(f"{busy}: peer_checkdmarc.sh serves the zones there; stop it first")
    env = {**os.environ, "DNS_ADDR": DNS_ADDR, "VS_CMD": vs_cmd, "KEEP": "1" if keep else "0"}
    out, err = work / "script.out", work / "script.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = procs.start(["bash", str(SCRIPT), str(DOMAINS)], stdout=o, stderr=e, env=env)
    try:
        procs.wait(proc, SCRIPT_TIMEOUT, "peer_checkdmarc.sh")
    except (PhaseTimeout, KeyboardInterrupt):
        procs.stop(proc, signal.SIGTERM, grace=SCRIPT_GRACE)  # its trap stops knotd
        _remove_kept(err.read_text(errors="replace"), keep)
        raise
    err_text = err.read_text(errors="replace")
    if proc.returncode != 0:
        tail = err_text.strip()[-1500:]
        _remove_kept(err_text, keep)
        raise RuntimeError(f"peer_checkdmarc.sh exited {proc.returncode}: {tail}")
    return _parse(out.read_text(errors="replace"), err_text)


def _check_ours(work: Path, domains: int) -> dict[str, Any]:
    """Our exit status and time as the VS_CMD recorded them; a crash is an error."""
    try:
        rc_text, t0, t1 = (work / "ours.exit").read_text().split()
    except (OSError, ValueError):
        raise RuntimeError("our command did not run (no ours.exit)") from None
    stderr = (work / "ours.stderr").read_text(errors="replace").strip()
    with (work / "ours.jsonl").open(errors="replace") as fh:
        lines = sum(1 for line in fh if line.strip())
    # exit 1 may mean "findings" (most of these domains are broken on purpose)
    if int(rc_text) not in (0, 1) or lines != domains:
        raise RuntimeError(
            f"sokures probe exited {rc_text} with {lines}/{domains} JSON lines: {stderr[-1200:]}"
        )
    return {"exit": int(rc_text), "inner_seconds": round(float(t1) - float(t0), 3),
            "stderr_tail": stderr[-300:]}  # fmt: skip


def one_run(base: Path, opts: BenchOptions, tag: str, workers: int, has_workers: bool
            ) -> dict[str, Any]:  # fmt: skip
    work = base / tag
    work.mkdir()
    with Processes() as procs:
        script = run_script(procs, work, ours_command(work, workers, has_workers), opts.keep)
    raw: dict[str, Any] = {"workers": workers, **script.as_dict()}
    raw["ours"] = _check_ours(work, script.domains) | _ours_queries(work)
    raw["ours"]["outside_seconds"] = round(script.ours_seconds - raw["ours"]["inner_seconds"], 3)
    records, problems = probe_truth.read_jsonl(work / "ours.jsonl")
    agreement = probe_truth.compare(probe_truth.load_truth(), records, SELECTOR)
    agreement.problems[:0] = problems
    tsv = opts.out_dir / "probe" / f"disagreements-{tag}.tsv"
    probe_truth.write_disagreements(tsv, agreement)
    raw["truth"] = agreement.as_dict() | {"ok": agreement.ok, "disagreements_tsv": str(tsv)}
    raw["checkdmarc_truth"] = probe_truth.checkdmarc_vs_truth().as_dict()
    shutil.copy(probe_truth.CHECKDMARC_TSV, work / "checkdmarc_vs_truth.tsv")
    log(
        f"probe {tag}: ours {script.ours_rate:.1f} domains/s ({script.ours_seconds:.2f} s), "
        f"checkdmarc {script.checkdmarc_rate:.1f} domains/s = {script.ratio:.2f}x; "
        f"queries ours {raw['ours'].get('queries', '?')}, checkdmarc {script.checkdmarc_queries}"
    )
    log(f"probe {tag}: vs truth: {agreement.summary()}" + ("" if agreement.ok else f" -> {tsv}"))
    return raw


# ---------------------------------------------------------------- summary ----


def _speed_rows(result: BenchResult, configs: list[int]) -> list[Row]:
    out = []
    for w in configs:
        runs = [r[f"workers_{w}"] for r in result.rounds]
        ours = Series.of([r["ours_domains_per_s"] for r in runs], " domains/s", 1)
        peer = Series.of([r["checkdmarc_domains_per_s"] for r in runs], " domains/s", 1)
        ratio = ratios(ours.values, peer.values)
        label = f"{DOMAINS:,} domains audited" + (f", --workers {w}" if w > 1 else "")
        if w == configs[-1]:  # the target is for the machine's cores (2 here), not one
            target, ok = f">= {TARGET:.0f} (aim {AIM:.0f})", ratio.median >= TARGET
        else:
            target, ok = "(one process)", None
        out.append(Row(NAME, label, ours, peer, ratio, target, ok))
    queries = [
        (r["ours"]["queries"] / r["domains"], r["checkdmarc_queries"] / r["domains"])
        for rd in result.rounds for r in (rd[f"workers_{configs[0]}"],)
        if r["ours"].get("queries") is not None and r["checkdmarc_queries"]
    ]  # fmt: skip
    if queries:
        out.append(Row(NAME, "DNS queries per domain (Knot's counters)",
                       Series.of([q[0] for q in queries], "", 1),
                       Series.of([q[1] for q in queries], "", 1)))  # fmt: skip
    return out


def _truth_rows(result: BenchResult, configs: list[int]) -> list[Row]:
    """Per area: ours (worst run of each round) and checkdmarc, against the truth."""
    runs = [[r[f"workers_{w}"] for w in configs] for r in result.rounds]
    out = []
    for area in probe_truth.AREAS:
        per_round = [min(run["truth"]["agree"].get(area, [0, 0]) for run in rnd) for rnd in runs]
        total = per_round[0][1]
        if not total:
            continue
        peer_values = [rnd[0]["checkdmarc_truth"]["agree"].get(area) for rnd in runs]
        peer = None
        if all(peer_values):
            peer = Series.of([v[0] for v in peer_values if v], f"/{peer_values[0][1]:,}")
        ok = all(a == t for a, t in per_round)
        out.append(Row(NAME, f"{area} agrees with truth.tsv",
                       Series.of([a for a, _ in per_round], f"/{total:,}"), peer, None,
                       "all", ok))  # fmt: skip
    faults = runs[0][0]["truth"]["rfc7489_faults"]
    ours = [min(run["truth"]["rfc7489_reported"] for run in rnd) for rnd in runs]
    peer_found = [rnd[0]["checkdmarc_truth"]["rfc7489_reported"] for rnd in runs]
    out.append(Row(NAME, "RFC 7489 DMARC faults reported (no p, adkim=x, pct=150)",
                   Series.of(ours, f"/{faults}"), Series.of(peer_found, f"/{faults}"), None,
                   f"{faults}", all(o == faults for o in ours)))  # fmt: skip
    whole = all(run["truth"]["ok"] for rnd in runs for run in rnd)
    out.append(Row(NAME, "every domain's verdicts = truth (every run)",
                   Series.of([sum(run["truth"]["disagreements"] for run in rnd) for rnd in runs],
                             " disagreements"), None, None, "0", whole))  # fmt: skip
    return out


def run(opts: BenchOptions) -> BenchResult:
    has_workers = "--workers" in require()
    configs = [1, 2] if has_workers else [1]
    result = BenchResult(setup={
        "domains": DOMAINS, "dns": f"{DNS_ADDR}:53 (Knot)", "selector": SELECTOR,
        "workers": configs, "command": probe_command(1, has_workers),
    })  # fmt: skip
    with temp_dir("probe", opts.keep) as base:
        for i in range(1, opts.rounds + 1):
            log(f"probe round {i}/{opts.rounds}")
            result.rounds.append(
                {f"workers_{w}": one_run(base, opts, f"r{i}-w{w}", w, has_workers)
                 for w in configs}
            )  # fmt: skip
    result.rows = _speed_rows(result, configs) + _truth_rows(result, configs)
    result.notes += [
        "probe: each ratio pairs our run with checkdmarc's in the same peer_checkdmarc.sh run "
        "(same Knot, same zones); our time is the script's vs: line (bash -c + one knotc call "
        "included)",
        "probe: checkdmarc's own summary counts the 73 RFC 7489-only DMARC faults as agreement "
        "(RFC 9989 accepts them); here they count as invalid; its mx is ok/warn only and it "
        "does not check DKIM",
        f"probe: disagreements per run in {opts.out_dir / 'probe'}/disagreements-*.tsv",
    ]
    if not has_workers:
        result.notes.append("probe: `sokures probe` has no --workers: measured with 1 only")
    return result
