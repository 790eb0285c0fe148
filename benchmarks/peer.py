"""The peer: Postfix + OpenDKIM relaying to smtp-sink, run by the shared harness
``shared/bench/peer_postfix.sh`` (it stops its own processes and cleans up after itself;
we only start it, parse its result lines, and stop it by PID if it overruns)."""

from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import SHARED_BENCH, VENV_BIN, Skipped, log, require_programs
from benchmarks.procs import PhaseTimeout, Processes

__all__ = ["PEER_GRACE", "PEER_SCRIPT", "PeerRun", "require_peer", "run_peer"]

#: time its trap gets to stop Postfix, OpenDKIM and the sinks and clean up
PEER_GRACE = 60.0

PEER_SCRIPT = SHARED_BENCH / "peer_postfix.sh"
_RESULT = re.compile(r"^postfix\+opendkim: (\d+) msgs in ([\d.]+) s = ([\d.]+) msg/s", re.M)
_CEILING = re.compile(r"^ceiling [^:]*: (\d+) msgs in ([\d.]+) s = ([\d.]+) msg/s", re.M)
_KEPT = re.compile(r"peer_postfix: kept (/tmp/peer-postfix\.\w+)")


@dataclass(frozen=True)
class PeerRun:
    n: int
    seconds: float
    rate: float
    ceiling_seconds: float
    ceiling_rate: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.n,
            "seconds": self.seconds,
            "msg_per_s": self.rate,
            "ceiling_seconds": self.ceiling_seconds,
            "ceiling_msg_per_s": self.ceiling_rate,
        }


def require_peer() -> None:
    if not PEER_SCRIPT.exists():
        raise Skipped(f"{PEER_SCRIPT} not found")
    require_programs(
        "postfix", "postconf", "smtp-source", "smtp-sink", "opendkim", "opendkim-genkey", "ss"
    )


def _remove_kept(err: Path) -> None:
    found = _KEPT.search(err.read_text(errors="replace"))
    if found and os.environ.get("KEEP") != "1":
        shutil.rmtree(found.group(1), ignore_errors=True)


def run_peer(procs: Processes, n: int, logs: Path, timeout: float) -> PeerRun:
    """``peer_postfix.sh N`` with SKIP_CEILING=0 and dkimpy verification of a sample."""
    env = {
        **os.environ,
        "SKIP_CEILING": "0",
        "VERIFY_PY": str(VENV_BIN / "python"),
        "TIMEOUT": str(int(timeout)),
        "KEEP": "0",
    }
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with out.open("wb") as o, err.open("wb") as e:
        proc = procs.start(["bash", str(PEER_SCRIPT), str(n)], stdout=o, stderr=e, env=env)
    try:
        procs.wait(proc, timeout + 120, "peer_postfix.sh")
    except PhaseTimeout:
        procs.stop(proc, signal.SIGTERM, grace=PEER_GRACE)  # its trap stops Postfix, sinks
        raise
    except KeyboardInterrupt:
        procs.stop(proc, signal.SIGTERM, grace=PEER_GRACE)
        _remove_kept(err)  # it keeps its dir when it did not finish; an interrupt is no failure
        raise
    text = out.read_text(errors="replace")
    result, ceiling = _RESULT.search(text), _CEILING.search(text)
    if proc.returncode != 0 or result is None or ceiling is None:
        tail = err.read_text(errors="replace").strip()[-1200:]
        raise RuntimeError(f"peer_postfix.sh exited {proc.returncode}: {tail}")
    run = PeerRun(
        int(result.group(1)),
        float(result.group(2)),
        float(result.group(3)),
        float(ceiling.group(2)),
        float(ceiling.group(3)),
    )
    log(
        f"peer postfix+opendkim: {run.n} msgs in {run.seconds:.2f} s = {run.rate:.1f} msg/s "
        f"(ceiling {run.ceiling_rate:.0f} msg/s)"
    )
    return run
