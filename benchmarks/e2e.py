"""``e2e``: 20,000 messages end to end against Postfix + OpenDKIM, in the same run.

Ours: ``sokures campaign create`` then ``sokures send --relay`` to ``smtp-sink`` on
loopback (RSA-2048 signed, durable SQLite queue), timed from just before the create
until the sink's counter reports every message; once with one worker and once with
``--workers 2``. Peer: ``shared/bench/peer_postfix.sh N`` (smtp-source -> Postfix ->
OpenDKIM milter -> smtp-sink, same message size, same four destination domains),
which also reports the smtp-source -> smtp-sink ceiling. Each round runs ours, the
peer, ours again, so both face the same noise.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks.campaign_run import CampaignRun, prepare, send_timeout, timed_campaign
from benchmarks.common import BenchOptions, log, require_programs, temp_dir
from benchmarks.peer import PEER_GRACE, PeerRun, require_peer, run_peer
from benchmarks.procs import Processes
from benchmarks.sink import SMTP_SINK
from benchmarks.stats import BenchResult, Row, Series, ratios
from benchmarks.workspace import SHAPING_OVERRIDE, write_contacts

NAME = "e2e"
CONFIGS = (1, 2)  # --workers


def ours_round(base: Path, contacts: Path, n: int, workers: int, tag: str) -> CampaignRun:
    with Processes() as procs:
        directory = base / tag
        directory.mkdir()
        ws, sink = prepare(directory, procs, contacts, dump=True)
        try:
            return timed_campaign(ws, sink, n, workers, f"bench-{tag}")
        finally:
            sink.stop()
            shutil.rmtree(sink.dump_dir, ignore_errors=True)


def one_round(base: Path, contacts: Path, n: int, i: int) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    ours1 = ours_round(base, contacts, n, CONFIGS[0], f"r{i}-w{CONFIGS[0]}")
    raw[f"ours_workers_{CONFIGS[0]}"] = ours1.as_dict()
    with Processes(adopt_orphans=False, grace=PEER_GRACE) as procs:
        peer: PeerRun = run_peer(procs, n, base / f"peer-r{i}", timeout=send_timeout(n))
    raw["peer"] = peer.as_dict()
    ours2 = ours_round(base, contacts, n, CONFIGS[1], f"r{i}-w{CONFIGS[1]}")
    raw[f"ours_workers_{CONFIGS[1]}"] = ours2.as_dict()
    return raw


def rows(result: BenchResult, n: int) -> list[Row]:
    peer = [r["peer"]["msg_per_s"] for r in result.rounds]
    out = []
    for w in CONFIGS:
        ours = [r[f"ours_workers_{w}"]["msg_per_s"] for r in result.rounds]
        ratio = ratios(ours, peer)
        label = f"{n:,} msgs relayed to smtp-sink" + (f", --workers {w}" if w > 1 else "")
        out.append(
            Row(NAME, label, Series.of(ours, " msg/s"), Series.of(peer, " msg/s"), ratio,
                ">= 1 (aim 2)", ratio.median >= 1)
        )  # fmt: skip
    ceiling = [r["peer"]["ceiling_msg_per_s"] for r in result.rounds]
    out.append(Row(NAME, "ceiling smtp-source -> smtp-sink", Series.of(ceiling, " msg/s")))
    return out


def run(opts: BenchOptions) -> BenchResult:
    require_programs(SMTP_SINK)
    require_peer()
    n = 2_000 if opts.quick else 20_000
    result = BenchResult(setup={"messages": n, "shaping_override": SHAPING_OVERRIDE})
    with temp_dir("e2e", opts.keep) as base:
        contacts = base / "contacts.csv"
        write_contacts(contacts, n)
        for i in range(1, opts.rounds + 1):
            log(f"e2e round {i}/{opts.rounds}")
            result.rounds.append(one_round(base, contacts, n, i))
    result.rows = rows(result, n)
    result.notes += [
        "e2e: shaping override for ours (Postfix has no per-destination limits by default): "
        + SHAPING_OVERRIDE.replace("\n", " ").strip(),
        "e2e: ours is timed from `campaign create` (render + enqueue) to the sink's last "
        "message; the peer from smtp-source's first connection; both sinks dump (-d)",
    ]
    return result
