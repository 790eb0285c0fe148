"""``sokures lab up|down|status|env``: the lab as a background process.

``up`` starts ``python -m lab.server`` in its own session (it outlives the command), logs
to ``DIR/lab.log`` and returns once the lab's ``state.json`` names the new process. Fixed
ports by default, so ``seedlists/lab.toml`` and a shell's ``eval "$(sokures lab env)"``
can rely on them: DNS 127.0.0.20:5300, SMTP 2525 and IMAP 10143 on each provider's
address (127.0.0.21-24), the SMS gateway on http://127.0.0.25:8088.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deliver.errors import ConfigError
from deliver.store.queue import process_alive
from lab.dns_process import REPO_ROOT
from lab.receiver import journal_counts, read_journal
from lab.world import read_state

__all__ = ["DEFAULT_PORTS", "LabUp", "lab_dir", "lab_down", "lab_status", "lab_up"]

DEFAULT_PORTS = {"dns": 5300, "smtp": 2525, "imap": 10143, "sms": 8088}
START_SECONDS = 30.0
STOP_SECONDS = 15.0
DEFAULT_SEEDS = REPO_ROOT / "seedlists" / "lab.toml"


def lab_dir(given: Path | None = None) -> Path:
    """``--dir``, else ``SOKURES_LAB_DIR``, else ``./sokures-lab``."""
    return (given or Path(os.environ.get("SOKURES_LAB_DIR") or "sokures-lab")).resolve()


@dataclass(frozen=True)
class LabUp:
    directory: Path
    config: Path | None = None
    rulebooks: tuple[str, ...] = ()
    ports: tuple[tuple[str, int], ...] = tuple(DEFAULT_PORTS.items())
    imap: bool = True
    seeds: Path | None = DEFAULT_SEEDS
    bounce_delay: float = 5.0

    def argv(self) -> list[str]:
        args = [sys.executable, "-P", "-m", "lab.server", "--dir", str(self.directory),
                "--bounce-delay", str(self.bounce_delay)]  # fmt: skip
        if self.config is not None:
            args += ["--config", str(self.config.resolve())]
        for rulebook in self.rulebooks:
            args += ["--rulebook", rulebook]
        for name, port in self.ports:
            args += [f"--{name}-port", str(port)]
        if not self.imap:
            args.append("--no-imap")
        if self.seeds is not None and self.seeds.exists():
            args += ["--seeds", str(self.seeds.resolve())]
        return args


def running_state(directory: Path) -> dict[str, Any] | None:
    state = read_state(directory)
    if state is None or not process_alive(int(state.get("pid", 0))):
        return None
    return state


def lab_up(up: LabUp) -> tuple[dict[str, Any], bool]:
    """Start the lab unless it runs already; (its state, whether this call started it)."""
    up.directory.mkdir(parents=True, exist_ok=True)
    state = running_state(up.directory)
    if state is not None:
        return state, False
    (up.directory / "state.json").unlink(missing_ok=True)
    log = (up.directory / "lab.log").open("ab")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    process = subprocess.Popen(up.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               start_new_session=True, env=env, cwd=up.directory)  # fmt: skip
    log.close()
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        state = read_state(up.directory)
        if state is not None and state.get("pid") == process.pid:
            return state, True
        if process.poll() is not None:
            raise ConfigError(f"the lab did not start: {_log_tail(up.directory)}")
        time.sleep(0.1)
    process.terminate()
    raise ConfigError(f"the lab did not start in {START_SECONDS:.0f} s: {_log_tail(up.directory)}")


def _log_tail(directory: Path) -> str:
    try:
        lines = (directory / "lab.log").read_text("utf-8", "replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(lines[-3:]) or "empty log"


def lab_down(directory: Path) -> bool:
    """Stop the lab; False when none was running."""
    state = running_state(directory)
    if state is None:
        (directory / "state.json").unlink(missing_ok=True)
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while process_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if process_alive(pid):
        os.kill(pid, signal.SIGKILL)
    (directory / "state.json").unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our own child when started by this process (the demo)


def lab_status(directory: Path) -> dict[str, Any]:
    """The state of the lab in ``directory`` and what its providers did so far."""
    state = running_state(directory)
    out: dict[str, Any] = {"directory": str(directory), "running": state is not None}
    if state is not None:
        out.update(state)
    out["providers_seen"] = journal_counts(read_journal(directory / "deliveries.jsonl"))
    sms = directory / "sms.jsonl"
    if sms.exists():
        from lab.sms_gateway import message_counts

        out["sms"] = message_counts(sms)
    return out


def parse_ports(items: Sequence[str]) -> dict[str, int]:
    """``dns=5353`` style overrides of :data:`DEFAULT_PORTS` (0: a free port)."""
    ports = dict(DEFAULT_PORTS)
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in ports or not value.isdigit() or int(value) > 65535:
            raise ConfigError(f"--port {item!r}: expected one of {', '.join(ports)}=PORT")
        ports[name] = int(value)
    return ports
