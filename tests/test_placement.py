"""Seed-inbox placement against the lab, through the real command line.

The lab world runs in the test (DNS server process, the four receivers, Dovecot serving
the Maildirs on the providers' addresses); a sokures project set up with ``init`` sends a
campaign's copies to a seed list written for the lab's ports, and ``placement run`` reads
them back over IMAP (or, with IMAP off, from the Maildirs). Each seed's reported placement
is checked against where the lab itself says it put the copy (its journal, by token).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.receiver import read_journal
from lab.world import LAB_PASSWORD, LabOptions, LabWorld
from probes.seedlist import Seed, load_seedlist, seeds_to_toml
from tests.servers.ports import require_program

REPO = Path(__file__).resolve().parents[1]
SEEDS = [  # (address, provider, where the lab puts a bulk, authenticated copy)
    ("seed.gmail@gmail.com", "gmail", "promotions"),
    ("seed.yahoo@yahoo.com", "yahoo", "inbox"),
    ("seed.outlook@outlook.com", "outlook", "inbox"),
    ("junk.seed@yahoo.com", "yahoo", "spam"),
    ("junk.seed@gmail.com", "gmail", "spam"),
    ("blackhole.seed@outlook.com", "outlook", "missing"),
]
TEMPLATE = """<html><body><h1>Hello {{ name }}</h1><p>Our November picks.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>"""


def _project(root: Path, world: LabWorld) -> dict[str, str]:
    env = {**os.environ, "SOKURES_CONFIG": str(root / "sokures.toml"),
           "SOKURES_DATABASE_URL": f"sqlite:///{root / 'sokures.db'}",
           "SOKURES_DNS_NAMESERVERS": world.nameserver,
           "SOKURES_SMTP_PORT": str(world.smtp_port),
           "SOKURES_LAB_PASSWORD": LAB_PASSWORD,
           "SOKURES_LAB_DIR": str(world.directory)}  # fmt: skip
    (root / "c.csv").write_text("email,name\nreader.one@gmail.com,One\n", encoding="utf-8")
    (root / "t.html").write_text(TEMPLATE, encoding="utf-8")
    for args in (["init", "--domain", "shop.example", "--ip", "127.0.0.1"],
                 ["contacts", "import", "c.csv"],
                 ["campaign", "create", "nov", "--template", "t.html", "--from",
                  "Shop <news@shop.example>", "--subject", "Hello {{ name }}"]):  # fmt: skip
        sokures(env, root, *args)
    world.sync_sender()
    return env


def sokures(env: dict[str, str], cwd: Path, *args: str, codes: tuple[int, ...] = (0,)) -> str:
    result = subprocess.run([sys.executable, "-m", "deliver.cli", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode in codes, (args, result.returncode, result.stderr, result.stdout)
    return result.stdout


def _seedlist(root: Path, world: LabWorld, imap_port: int) -> Path:
    seeds = [
        Seed(address=a, provider=p, imap_host=_address(world, p), imap_port=imap_port,
             imap_user=a, secret_env="SOKURES_LAB_PASSWORD", tls="none",
             maildir=world.mail.maildir(a))
        for a, p, _ in SEEDS
    ]  # fmt: skip
    path = root / "seeds.toml"
    path.write_text(seeds_to_toml(seeds, "test"), encoding="utf-8")
    assert len(load_seedlist(path).seeds) == len(SEEDS)
    return path


def _address(world: LabWorld, provider: str) -> str:
    return next(p.address for p in world.providers if p.name == provider)


@pytest.fixture
def lab_world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LabWorld]:
    imap = bool(request.param)
    if imap:
        require_program("/usr/sbin/dovecot", "dovecot-imapd")
    root = tmp_path / "project"
    root.mkdir()
    options = LabOptions(directory=tmp_path / "lab", config=root / "sokures.toml", imap=imap,
                         sms=False, mailboxes=tuple((a, p) for a, p, _ in SEEDS))  # fmt: skip
    with LabWorld(options) as world:
        yield world


def _run(world: LabWorld, root: Path, imap_port: int) -> dict[str, Any]:
    env = _project(root, world)
    seeds = _seedlist(root, world, imap_port)
    out = sokures(env, root, "placement", "run", "nov", "--seeds", str(seeds), "--timeout", "4",
                  "--interval", "0.2", "--json", codes=(1,))  # fmt: skip
    return json.loads(out)


@pytest.mark.parametrize("lab_world", [True], indirect=True, ids=["imap"])
def test_placement_over_imap_reports_where_the_lab_put_each_copy(lab_world, tmp_path):
    assert lab_world.imap is not None
    report = _run(lab_world, tmp_path / "project", lab_world.imap.port)
    _check(report, lab_world)
    # Gmail's spam folder is found by its special-use flag, Outlook's copy never arrives
    by_address = {s["address"]: s for s in report["seeds"]}
    assert by_address["junk.seed@gmail.com"]["folder"] == "[Gmail]/Spam"
    assert by_address["seed.gmail@gmail.com"]["category"] == "promotions"
    assert "dkim=pass" in (by_address["seed.yahoo@yahoo.com"]["auth_results"] or "")


@pytest.mark.parametrize("lab_world", [False], indirect=True, ids=["maildir"])
def test_placement_reads_the_maildirs_when_no_imap_server_runs(lab_world, tmp_path):
    report = _run(lab_world, tmp_path / "project", 9)  # nothing listens on port 9
    _check(report, lab_world)


def _check(report: dict[str, Any], world: LabWorld) -> None:
    journal = {e["seed"]: e for e in read_journal(world.directory / "deliveries.jsonl")
               if e.get("seed")}  # fmt: skip
    expected = {a: where for a, _, where in SEEDS}
    for seed in report["seeds"]:
        assert seed["placement"] == expected[seed["address"]], seed
        lab_put = journal[seed["token"]]["placement"]
        assert seed["placement"] == {"dropped": "missing"}.get(lab_put, lab_put)
        if seed["placement"] != "missing":
            assert seed["seconds"] is not None and seed["seconds"] < 4
    assert {s["placement"] for s in report["seeds"]} == {"inbox", "promotions", "spam", "missing"}
    gmail = report["providers"]["gmail"]
    assert (gmail["seeds"], gmail["promotions"], gmail["spam"]) == (2, 1, 1)
    assert gmail["rates"]["promotions"] == 0.5


@pytest.mark.parametrize("lab_world", [False], indirect=True, ids=["maildir"])
def test_placement_history_is_stored(lab_world, tmp_path):
    root = tmp_path / "project"
    _run(lab_world, root, 9)
    env = {**os.environ, "SOKURES_DATABASE_URL": f"sqlite:///{root / 'sokures.db'}",
           "SOKURES_CONFIG": str(root / "sokures.toml")}  # fmt: skip
    runs = json.loads(sokures(env, root, "placement", "history", "nov", "--json"))
    assert len(runs) == 1 and runs[0]["status"] == "done"
    assert runs[0]["summary"]["outlook"]["missing"] == 1


def test_a_missing_password_variable_stops_before_sending(tmp_path):
    seeds = [Seed(address="s@gmail.com", provider="gmail", imap_host="127.0.0.21",
                  imap_port=10143, imap_user="s@gmail.com", secret_env="SOKURES_TEST_UNSET",
                  tls="none")]  # fmt: skip
    path = tmp_path / "seeds.toml"
    path.write_text(seeds_to_toml(seeds, "t"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "SOKURES_TEST_UNSET"}
    env.update(SOKURES_CONFIG=str(tmp_path / "sokures.toml"),
               SOKURES_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}")  # fmt: skip
    sokures(env, tmp_path, "init", "--domain", "shop.example")
    (tmp_path / "t.txt").write_text("hello {{ name }} {{ unsubscribe_url }}", encoding="utf-8")
    (tmp_path / "c.csv").write_text("email\nx@gmail.com\n", encoding="utf-8")
    sokures(env, tmp_path, "contacts", "import", "c.csv")
    sokures(env, tmp_path, "campaign", "create", "c", "--template", "t.txt", "--from",
            "a@shop.example", "--subject", "s")  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "deliver.cli", "placement", "run", "c",
                             "--seeds", str(path)], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "SOKURES_TEST_UNSET is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_summary_and_why_a_copy_is_missing():
    from probes.placement import SeedResult, classify_missing, summarize

    def seed(address: str, provider: str) -> Seed:
        return Seed(address=address, provider=provider, imap_host="127.0.0.1", imap_port=1,
                    imap_user=address, secret_env="X", tls="none")  # fmt: skip

    refused = SeedResult(seed("a@gmail.com", "gmail"), "t1", smtp_reply="550 5.7.26 blocked")
    lost = SeedResult(seed("b@gmail.com", "gmail"), "t2", accepted=True, sent_at=1.0)
    inbox = SeedResult(seed("c@yahoo.com", "yahoo"), "t3", placement="inbox", sent_at=10.0,
                       found_at=12.5, accepted=True)  # fmt: skip
    for r in (refused, lost, inbox):
        classify_missing(r)
    assert refused.detail == "refused at SMTP: 550 5.7.26 blocked"
    assert lost.detail == "accepted, not in the mailbox by the deadline"
    assert inbox.detail is None and inbox.seconds == 2.5
    summary = summarize([refused, lost, inbox])
    assert summary["gmail"]["missing"] == 2 and summary["gmail"]["rates"]["missing"] == 1.0
    assert summary["yahoo"]["rates"]["inbox"] == 1.0
