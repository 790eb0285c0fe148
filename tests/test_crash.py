"""Nothing accepted into the queue is lost: ``kill -9`` of ``sokures send`` in the middle of
a campaign, then a second ``sokures send``, leaves every message delivered, and the
duplicates at the receiver are bounded by the messages in flight at the kill.
The real CLI in subprocesses, a real receiver, the store on disk."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine_lab import EngineLab
from tests.servers.smtp_receiver import ReceiverFarm

SOKURES = str(Path(sys.executable).with_name("sokures"))
N = 3000


def cli(lab: EngineLab, *args: str) -> list[str]:
    return [SOKURES, "--config", str(lab.config), *args]


def in_flight(db: Path) -> int:
    """Messages a worker holds a lease on: claimed, maybe sent, not recorded."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM messages WHERE lease_owner IS NOT NULL "
            "AND state IN ('queued', 'deferred')"
        ).fetchone()
    return int(n)


def wait_accepted(farm: ReceiverFarm, n: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while len(farm.journal.accepted) < n:
        assert proc.poll() is None, "sokures send ended before the kill"
        assert time.monotonic() < deadline, "the receiver got too few messages"
        time.sleep(0.005)


@pytest.fixture
def campaign(
    tmp_path: Path, receivers: Callable[..., ReceiverFarm]
) -> tuple[EngineLab, ReceiverFarm]:
    farm = receivers(["127.0.0.1"])
    lab = EngineLab(tmp_path, f"sqlite:///{tmp_path / 'sokures.db'}")
    lab.import_contacts([f"ok-{i}@dest{i % 4}.test" for i in range(N)])
    lab.campaign("big")
    return lab, farm


def test_kill_9_then_resume_loses_nothing(campaign: tuple[EngineLab, ReceiverFarm]) -> None:
    lab, farm = campaign
    env = {**os.environ, "SOKURES_ENGINE_LINGER": "2"}
    proc = subprocess.Popen(
        cli(lab, "send", "big", "--relay", farm.relay, "--json"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_accepted(farm, N // 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    held = in_flight(lab.root / "sokures.db")
    received_at_kill = len(farm.journal.accepted)
    assert 0 < received_at_kill < N

    second = subprocess.run(
        cli(lab, "send", "big", "--relay", farm.relay, "--json"),
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0, second.stderr.decode()
    status = json.loads(second.stdout)
    assert status["states"]["delivered"] == N
    assert status["states"]["queued"] == status["states"]["deferred"] == 0

    counts = Counter(farm.journal.delivered_to())
    assert set(counts) == {f"ok-{i}@dest{i % 4}.test" for i in range(N)}  # none lost
    duplicates = sum(counts.values()) - N
    print(f"kill -9 after {received_at_kill} received: {held} in flight, {duplicates} duplicates")
    assert duplicates <= held, f"{duplicates} duplicates but only {held} in flight at the kill"


def test_sigterm_stops_cleanly_and_resumes_without_duplicates(
    campaign: tuple[EngineLab, ReceiverFarm],
) -> None:
    lab, farm = campaign
    proc = subprocess.Popen(
        cli(lab, "send", "big", "--relay", farm.relay, "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_accepted(farm, N // 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    stopped = json.loads(out)
    assert stopped["stopped"] is True
    assert in_flight(lab.root / "sokures.db") == 0  # every lease handed back
    assert stopped["states"]["queued"] > 0

    subprocess.run(
        cli(lab, "send", "big", "--relay", farm.relay), check=True, timeout=120, capture_output=True
    )
    delivered = farm.journal.delivered_to()
    assert len(delivered) == len(set(delivered)) == N
