"""``sokures demo``: the whole pipeline on one machine, against the lab.

The demo is the sequence of commands an operator would run, each one the real
``sokures`` command line (shown before it runs), pointed at the lab by environment
variables: adding a step is adding one line to :func:`steps`. Everything it writes
stays in the work directory (``./demo-run`` by default), started afresh each time.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
from rich.console import Console
from rich.table import Table

from lab.world import LabWorld
from lab.zones import Record

__all__ = ["DemoOptions", "generate_contacts", "run_demo"]

SENDER_DOMAIN = "shop.example"
CAMPAIGN = "november-news"
# lab mistypes of the big providers' domains: they do not exist (NXDOMAIN)
TYPOS = ("gmial.com", "yaho.com", "hotmial.com")
SHARE = (
    ("gmail.com", 0.45),
    ("yahoo.com", 0.20),
    ("outlook.com", 0.10),
    ("hotmail.com", 0.05),
    ("example.net", 0.12),
    ("example.org", 0.08),
)
FIRST = (
    "Alice",
    "Bruno",
    "Chloé",
    "Dmitri",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Inès",
    "Jonas",
    "Kenji",
    "Léa",
    "Mateo",
    "Nadia",
    "Olga",
    "Pablo",
    "Quentin",
    "Rosa",
    "Sami",
    "Tara",
)
LOCALES = ("en", "fr", "de", "es", "ja")

TEMPLATE = """<html><body>
<div style="display:none">Our November picks, chosen for you</div>
<h1>Hello {{ name }}!</h1>
<p>Here is what is new at the shop this month
{%- if contact.locale == "fr" %} (en français bientôt){% endif %}.</p>
<table><tr><td><img src="https://shop.example/img/coat.png" alt="Winter coat"></td>
<td><p>The <b>winter coat</b> is back, in {{ contact.colour|default("navy") }}.</p>
<p><a href="https://shop.example/coat?c={{ campaign.id }}">See the coat</a></p></td></tr></table>
<ul><li>Free returns for 60 days</li><li>Next-day delivery</li></ul>
<p>You get this because you signed up at shop.example.
<a href="{{ unsubscribe_url }}">Unsubscribe</a> in one click.</p>
</body></html>
"""

# The lab Gmail accepts 40 messages/s; sokures starts at 60/s for it, gets Gmail's
# 421 4.7.28 and slows down. The demo's rule holds for two minutes (not an hour).
DEMO_SHAPING = """
[providers.google]
max_message_rate = "60/s"
connection_limit = 4

[[providers.google.rules]]
id = "gmail-4.7.28-rate-limited"
match = ['4\\.7\\.28', 'unusual rate of unsolicited mail']
trigger = "immediate"
action = ["set_rate"]
rate = "35/s"
duration = "2m"
"""


@dataclass(frozen=True)
class DemoOptions:
    contacts: int = 5000
    workdir: Path = Path("demo-run")
    dashboard: bool = False
    seed: int = 2026


def generate_contacts(path: Path, n: int, seed: int = 2026) -> dict[str, int]:
    """A synthetic list: mostly Gmail, then Yahoo, Outlook and others; a few percent
    unknown users, mistyped domains and full mailboxes; a phone number for everyone."""
    rnd = random.Random(seed)
    kinds = {"ok": 0, "unknown": 0, "typo": 0, "full": 0}
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "phone", "locale", "colour"])
        for i in range(n):
            domain = rnd.choices([d for d, _ in SHARE], [w for _, w in SHARE])[0]
            roll = rnd.random()
            kind = (
                "unknown"
                if roll < 0.03
                else "typo"
                if roll < 0.04
                else "full"
                if roll < 0.05
                else "ok"
            )
            kinds[kind] += 1
            local = {"unknown": "nouser", "full": "full"}.get(kind, "reader")
            if kind == "typo":
                domain = rnd.choice(TYPOS)
            first = rnd.choice(FIRST)
            writer.writerow(
                [
                    f"{local}.{_ascii(first)}.{i}@{domain}",
                    f"{first} {chr(65 + i % 26)}.",
                    _phone(rnd),
                    rnd.choice(LOCALES),
                    rnd.choice(["navy", "red", "olive"]),
                ]
            )
    return kinds


def _ascii(name: str) -> str:
    """Chloé → chloe: names keep their accents, addresses stay ASCII."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def _phone(rnd: random.Random) -> str:
    while True:
        number = f"+336{rnd.randrange(10**8):08d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


@dataclass(frozen=True)
class Step:
    title: str
    args: Sequence[str]
    #: runs before the command (preparing files, feeding the lab)
    before: Callable[[], None] | None = None
    #: exit codes that are expected (an import with bad rows exits 2)
    ok_codes: tuple[int, ...] = (0,)


def steps(o: DemoOptions, world: LabWorld, console: Console) -> list[Step]:
    w = o.workdir
    return [
        Step("set up the sender domain", ["init", "--domain", SENDER_DOMAIN, "--json"]),
        Step(
            "import the list (bad rows are reported, the rest imported)",
            ["contacts", "import", str(w / "contacts.csv")],
            before=lambda: _contacts(w, o, console),
            ok_codes=(0, 2),
        ),
        Step(
            "create the campaign",
            [
                "campaign",
                "create",
                CAMPAIGN,
                "--template",
                str(w / "november.html"),
                "--from",
                f"Shop <news@{SENDER_DOMAIN}>",
                "--subject",
                "{{ name }}, our November picks",
            ],
            before=lambda: _write(w / "november.html", TEMPLATE),
        ),
        Step("send it: direct to the lab's MX hosts, paced per provider", ["send", CAMPAIGN]),
        Step("where every message stands", ["status", CAMPAIGN]),
    ]


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _contacts(w: Path, o: DemoOptions, console: Console) -> None:
    kinds = generate_contacts(w / "contacts.csv", o.contacts, o.seed)
    console.print(
        f"[dim]generated {o.contacts:,} contacts: {kinds['unknown']} unknown users, "
        f"{kinds['typo']} mistyped domains, {kinds['full']} full mailboxes[/dim]"
    )


def run_demo(o: DemoOptions, console: Console | None = None) -> int:
    console = console or Console()
    started = time.monotonic()
    if o.workdir.exists():
        shutil.rmtree(o.workdir)
    o.workdir.mkdir(parents=True)
    with LabWorld() as world:
        env = _environment(o, world)
        console.print(
            f"[b]sokures demo[/b]: the lab runs on loopback (DNS {world.nameserver}, "
            f"mail on port {world.smtp_port}); work directory {o.workdir}/\n"
        )
        for step in steps(o, world, console):
            if step.before:
                step.before()
            console.rule(f"[b]{step.title}")
            console.print(f"$ sokures {' '.join(_quote(a) for a in step.args)}", highlight=False)
            result = _run(step, env, o.workdir)
            if result.returncode not in step.ok_codes:
                console.print(f"[red]the step failed (exit {result.returncode})[/red]")
                return 1
            if step.args[0] == "init":
                _publish(world, result.stdout, console)
        _summary(console, o, env, world, time.monotonic() - started)
    return 0


def _environment(o: DemoOptions, world: LabWorld) -> dict[str, str]:
    shaping = o.workdir / "demo-shaping.toml"
    shaping.write_text(DEMO_SHAPING, encoding="utf-8")
    return {
        **os.environ,
        "SOKURES_CONFIG": str(o.workdir / "sokures.toml"),
        "SOKURES_DATABASE_URL": f"sqlite:///{(o.workdir / 'sokures.db').resolve()}",
        "SOKURES_DNS_NAMESERVERS": world.nameserver,
        "SOKURES_SMTP_PORT": str(world.smtp_port),
        "SOKURES_SHAPING_FILE": str(shaping.resolve()),
        # lab-sized retries: the throttled messages go out again within the demo;
        # full mailboxes stay deferred when the next retry is beyond the linger
        "SOKURES_RETRY_INITIAL": "4s",
        "SOKURES_RETRY_MAX_INTERVAL": "60s",
        "SOKURES_ENGINE_LINGER": "5s",
    }


def _run(step: Step, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deliver.cli", *step.args]
    capture = step.args[0] == "init"  # its records are fed to the lab DNS
    return subprocess.run(
        command, env=env, text=True, check=False, stdout=subprocess.PIPE if capture else None
    )


def _publish(world: LabWorld, init_json: str, console: Console) -> None:
    data = json.loads(init_json)
    world.publish((r["name"], Record("TXT", r["value"])) for r in data["records"])
    for r in data["records"]:
        console.print(
            f"[dim]published in the lab DNS:[/dim] {r['name']} TXT "
            f"{r['value'][:60]}{'…' if len(r['value']) > 60 else ''}",
            highlight=False,
        )


def _summary(
    console: Console, o: DemoOptions, env: dict[str, str], world: LabWorld, seconds: float
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "deliver.cli", "status", CAMPAIGN, "--json"],
        env=env,
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    status: dict[str, Any] = json.loads(out)
    console.rule("[b]summary")
    table = Table(title="reach per provider")
    for col in ("provider", "messages", "delivered", "reach", "bounced", "deferred", "suppressed"):
        table.add_column(col, justify="left" if col == "provider" else "right")
    for provider, c in status["providers"].items():
        total = sum(c.values())
        table.add_row(
            provider,
            f"{total:,}",
            f"{c['delivered']:,}",
            f"{c['delivered'] / total:.1%}" if total else "·",
            f"{c['bounced']:,}",
            f"{c['deferred'] + c['queued']:,}",
            f"{c['suppressed']:,}",
        )
    console.print(table)
    reasons = status.get("reasons", {})
    if reasons:
        console.print(
            "bounces and deferrals by reason: "
            + ", ".join(
                f"{state} {reason}: {n}"
                for (state, per) in reasons.items()
                for reason, n in per.items()
            )
        )
    lab = world.counters()
    console.print(
        "the lab providers saw: "
        + "; ".join(
            f"{name} accepted {c['accepted']}, refused {c['unknown']} unknown and "
            f"{c['full']} full, throttled {c['throttled']}"
            for name, c in lab.items()
        )
    )
    console.print(f"\ndemo finished in {seconds:.0f} s; its files are in {o.workdir}/")


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " {}\"'") else arg
