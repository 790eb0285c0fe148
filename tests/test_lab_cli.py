"""``sokures lab up|status|env|down`` and ``sokures demo``, through the real command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.control import lab_down
from tests.servers.ports import require_program

FREE_PORTS = ["--port", "dns=0", "--port", "smtp=0", "--port", "imap=0", "--port", "sms=0"]


def sokures(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([sys.executable, "-m", "deliver.cli", *args], cwd=cwd,
                          env=env or dict(os.environ), capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def test_lab_up_status_env_down(tmp_path):
    require_program("/usr/sbin/dovecot", "dovecot-imapd")
    lab = tmp_path / "lab"
    try:
        up = sokures("lab", "up", "--dir", str(lab), *FREE_PORTS, "--json", cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        state = json.loads(up.stdout)
        assert state["started_now"] is True and state["imap_port"]
        assert [p["rulebook"] for p in state["providers"]] == [
            "gmail@2025-11", "yahoo@2024-02", "outlook@2025-05", None]
        again = sokures("lab", "up", "--dir", str(lab), *FREE_PORTS, "--json", cwd=tmp_path)
        assert json.loads(again.stdout)["started_now"] is False  # one lab per directory

        env_lines = sokures("lab", "env", "--dir", str(lab), cwd=tmp_path).stdout
        exported = dict(re.findall(r"^export (\w+)=(\S+)$", env_lines, re.M))
        assert exported["SOKURES_DNS_NAMESERVERS"] == state["nameserver"]
        assert exported["SOKURES_SMTP_PORT"] == str(state["smtp_port"])

        # init in the project: the lab publishes the sender's records on its own
        env = {**os.environ, **exported, "SOKURES_CONFIG": str(tmp_path / "sokures.toml")}
        assert sokures("init", "--domain", "shop.example", "--ip", "127.0.0.1", cwd=tmp_path,
                       env=env).returncode == 0  # fmt: skip
        status: dict[str, object] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and status.get("sender_domain") != "shop.example":
            time.sleep(0.2)
            status = json.loads(sokures("lab", "status", "--dir", str(lab), "--json",
                                        cwd=tmp_path).stdout)  # fmt: skip
        assert status["running"] is True and status["sender_domain"] == "shop.example"
        probe = sokures("probe", "shop.example", "--ip", "127.0.0.1", "--skip", "dnsbl", "--json",
                        cwd=tmp_path, env=env)  # fmt: skip
        report = json.loads(probe.stdout)
        statuses = {c["id"]: c["status"] for c in report["checks"]}
        for check in ("spf.present", "spf.result", "dmarc.present", "ptr.fcrdns", "mx.present"):
            assert statuses[check] == "pass", (check, report)
        assert all(c["status"] == "pass" for c in report["compliance"].values())

        table = sokures("lab", "status", "--dir", str(lab), cwd=tmp_path)
        assert table.returncode == 0 and "gmail@2025-11" in table.stdout
        down = sokures("lab", "down", "--dir", str(lab), cwd=tmp_path)
        assert down.returncode == 0 and "stopped" in down.stdout
        after = sokures("lab", "status", "--dir", str(lab), cwd=tmp_path)
        assert after.returncode == 1 and "no lab runs" in after.stdout
        assert not (lab / "state.json").exists()
    finally:
        lab_down(lab)


def test_lab_up_with_another_rulebook_and_bad_choices(tmp_path):
    lab = tmp_path / "lab"
    try:
        up = sokures("lab", "up", "--dir", str(lab), *FREE_PORTS, "--no-imap", "--rulebook",
                     "gmail@2024-02", "--json", cwd=tmp_path)  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["providers"][0]["rulebook"] == "gmail@2024-02"
    finally:
        lab_down(lab)
    bad = sokures("lab", "up", "--dir", str(lab), "--rulebook", "gmail", cwd=tmp_path)
    assert bad.returncode == 2 and "expected a rulebook id" in bad.stderr
    port = sokures("lab", "up", "--dir", str(lab), "--port", "ftp=21", cwd=tmp_path)
    assert port.returncode == 2 and "--port" in port.stderr
    missing = sokures("lab", "env", "--dir", str(tmp_path / "none"), cwd=tmp_path)
    assert missing.returncode == 2 and "no lab runs" in missing.stderr


@pytest.mark.timeout(600)
def test_demo_runs_end_to_end(tmp_path):
    """`sokures demo --no-dashboard --contacts 300`: every step, to its summary."""
    require_program("/usr/sbin/dovecot", "dovecot-imapd")
    work = tmp_path / "demo"
    result = sokures("demo", "--no-dashboard", "--contacts", "300", "--workdir", str(work),
                     cwd=tmp_path, timeout=540)  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, (out[-3000:], result.stderr[-2000:])
    for step in ("start the lab", "set up the sender domain", "audit the domain",
                 "import the list", "create the campaign", "send it", "seed placement",
                 "summary", "reach per provider", "seed placement per provider",
                 "demo finished in"):  # fmt: skip
        assert step in out, step
    assert "Traceback" not in out + result.stderr
    lab = json.loads(sokures("lab", "status", "--dir", str(work / "lab"), "--json",
                             cwd=tmp_path).stdout)  # fmt: skip
    assert lab["running"] is False  # the demo stops its lab
    seen = lab["providers_seen"]
    assert seen["gmail"]["promotions"] > 0 and seen["yahoo"]["inbox"] > 0
    assert sum(p["unknown"] for p in seen.values()) > 0
    env = {**os.environ, "SOKURES_DATABASE_URL": f"sqlite:///{work / 'sokures.db'}"}
    runs = json.loads(sokures("placement", "history", "--json", cwd=work, env=env).stdout)
    summary = runs[0]["summary"]
    assert summary["gmail"]["promotions"] == 2 and summary["outlook"]["spam"] == 1
    assert summary["yahoo"]["missing"] == 1
