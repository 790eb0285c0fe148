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

from lab.control import DEFAULT_SEEDS, lab_down
from lab.world import lab_environment, read_state

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

# The lab Gmail accepts 40 messages/s (its rulebook's lab limit); sokures starts at 60/s
# for it, gets Gmail's 421 4.7.28 and slows down. The demo's rule holds for two minutes
# (not an hour). Yahoo and Outlook accept 20/s in the lab: the demo stays under that.
DEMO_SHAPING = """
[providers.yahoo]
max_message_rate = "15/s"

[providers.microsoft]
max_message_rate = "15/s"

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


SENDING_IP = "127.0.0.1"


@dataclass(frozen=True)
class DemoOptions:
    contacts: int = 5000
    workdir: Path = Path("demo-run")
    dashboard: bool = False
    seed: int = 2026
    seeds: Path = DEFAULT_SEEDS
    #: seconds the placement test waits for the copies (the lab delivers at once; a
    #: missing copy is waited for this long)
    placement_timeout: float = 5.0


def generate_contacts(path: Path, n: int, seed: int = 2026) -> dict[str, int]:
    """A synthetic list: mostly Gmail, then Yahoo, Outlook and others; a few percent
    unknown users, mistyped domains, full mailboxes and accounts that bounce after
    accepting (``gone``); a phone number for everyone."""
    rnd = random.Random(seed)
    kinds = {"ok": 0, "unknown": 0, "typo": 0, "full": 0, "gone": 0}
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
                else "gone"
                if roll < 0.06
                else "ok"
            )
            kinds[kind] += 1
            local = {"unknown": "nouser", "full": "full", "gone": "gone"}.get(kind, "reader")
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
    #: runs before the command (preparing files)
    before: Callable[[], None] | None = None
    #: exit codes that are expected (an import with bad rows exits 2, findings exit 1)
    ok_codes: tuple[int, ...] = (0,)
    #: runs after the command (reading what it left: the lab's state)
    after: Callable[[], None] | None = None


def steps(o: DemoOptions, demo: Demo) -> list[Step]:
    """The demo: the commands an operator would run, in order (one line per step)."""
    w = o.workdir
    return [
        Step("start the lab: DNS, Gmail/Yahoo/Outlook stand-ins, IMAP, SMS, on loopback",
             ["lab", "up", "--dir", str(w / "lab"), "--seeds", str(o.seeds)],
             after=demo.lab_started),
        Step("set up the sender domain (the lab publishes its records)",
             ["init", "--domain", SENDER_DOMAIN, "--ip", SENDING_IP],
             after=demo.wait_published),
        Step("audit the domain against the providers' rulebooks",
             ["probe", SENDER_DOMAIN, "--ip", SENDING_IP, "--skip", "dnsbl", "--skip", "mta_sts"],
             ok_codes=(0, 1)),
        Step("import the list (bad rows are reported, the rest imported)",
             ["contacts", "import", str(w / "contacts.csv")],
             before=lambda: _contacts(w, o, demo.console), ok_codes=(0, 2)),
        Step("create the campaign",
             ["campaign", "create", CAMPAIGN, "--template", str(w / "november.html"),
              "--from", f"Shop <news@{SENDER_DOMAIN}>",
              "--subject", "{{ name }}, our November picks"],
             before=lambda: _write(w / "november.html", TEMPLATE)),
        Step("send it: direct to the lab's MX hosts, paced per provider", ["send", CAMPAIGN]),
        Step("where every message stands", ["status", CAMPAIGN]),
        Step("seed placement: where the copies land at each provider",
             ["placement", "run", CAMPAIGN, "--seeds", str(o.seeds), "--timeout",
              str(o.placement_timeout), "--interval", "0.5"], ok_codes=(0, 1)),
        Step("what the lab's providers did", ["lab", "status", "--dir", str(w / "lab")]),
    ]  # fmt: skip


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _contacts(w: Path, o: DemoOptions, console: Console) -> None:
    kinds = generate_contacts(w / "contacts.csv", o.contacts, o.seed)
    console.print(
        f"[dim]generated {o.contacts:,} contacts: {kinds['unknown']} unknown users, "
        f"{kinds['typo']} mistyped domains, {kinds['full']} full mailboxes, "
        f"{kinds['gone']} accounts that bounce later[/dim]"
    )


class Demo:
    """The demo's run: the environment its commands share, and the lab it started."""

    def __init__(self, o: DemoOptions, console: Console) -> None:
        self.o = o
        self.console = console
        #: wall time per command (send, probe, placement ...)
        self.seconds: dict[str, float] = {}
        self.lab = (o.workdir / "lab").resolve()
        shaping = o.workdir / "demo-shaping.toml"
        shaping.write_text(DEMO_SHAPING, encoding="utf-8")
        self.env: dict[str, str] = {
            **os.environ,
            "SOKURES_CONFIG": str((o.workdir / "sokures.toml").resolve()),
            "SOKURES_DATABASE_URL": f"sqlite:///{(o.workdir / 'sokures.db').resolve()}",
            "SOKURES_SHAPING_FILE": str(shaping.resolve()),
            "SOKURES_LAB_DIR": str(self.lab),
            # lab-sized retries: a deferred message is tried again after 4 s (the
            # throttled ones then go out), and next after two minutes, beyond the linger:
            # full mailboxes stay deferred instead of keeping the send busy
            "SOKURES_RETRY_INITIAL": "4s",
            "SOKURES_RETRY_FACTOR": "30",
            "SOKURES_RETRY_MAX_INTERVAL": "10m",
            "SOKURES_ENGINE_LINGER": "5s",
        }

    def lab_started(self) -> None:
        state = read_state(self.lab)
        if state is None:
            raise RuntimeError("the lab wrote no state")
        self.env.update(lab_environment(state))

    def wait_published(self, timeout: float = 10.0) -> None:
        """The lab publishes the records init wrote within a second; wait for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = read_state(self.lab) or {}
            if state.get("sender_domain") == SENDER_DOMAIN:
                self.console.print(f"[dim]the lab DNS now serves the SPF, DKIM, DMARC, MX "
                                   f"and PTR records of {SENDER_DOMAIN}[/dim]")  # fmt: skip
                return
            time.sleep(0.1)
        raise RuntimeError(f"the lab did not publish the records of {SENDER_DOMAIN}")

    def run(self, step: Step) -> int:
        if step.before:
            step.before()
        self.console.rule(f"[b]{step.title}")
        self.console.print(f"$ sokures {' '.join(_quote(a) for a in step.args)}",
                           highlight=False)  # fmt: skip
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-P", "-m", "deliver.cli", *step.args], env=self.env, text=True,
            check=False, cwd=self.o.workdir,
        )  # fmt: skip
        self.seconds[step.args[0]] = self.seconds.get(step.args[0], 0.0) + (
            time.monotonic() - started)  # fmt: skip
        self.console.print(f"[dim]({time.monotonic() - started:.1f} s)[/dim]")
        if result.returncode not in step.ok_codes:
            self.console.print(f"[red]the step failed (exit {result.returncode})[/red]")
            return 1
        if step.after:
            step.after()
        return 0

    def json_of(self, *args: str) -> Any:
        command = [sys.executable, "-P", "-m", "deliver.cli", *args]
        out = subprocess.run(command, env=self.env, text=True, capture_output=True, check=False,
                             cwd=self.o.workdir)  # fmt: skip
        return json.loads(out.stdout) if out.stdout.strip() else None


def run_demo(o: DemoOptions, console: Console | None = None) -> int:
    console = console or Console()
    started = time.monotonic()
    lab = (o.workdir / "lab").resolve()
    if lab.exists():
        lab_down(lab)  # a lab left running by an interrupted demo
    if o.workdir.exists():
        shutil.rmtree(o.workdir)
    o.workdir.mkdir(parents=True)
    o = DemoOptions(**{**o.__dict__, "workdir": o.workdir.resolve(), "seeds": o.seeds.resolve()})
    demo = Demo(o, console)
    console.print(f"[b]sokures demo[/b]: the whole pipeline on loopback; work directory "
                  f"{o.workdir}/\n")  # fmt: skip
    try:
        for step in steps(o, demo):
            if demo.run(step):
                return 1
        _summary(demo, time.monotonic() - started)
        if o.dashboard:
            console.print("[dim]the dashboard step is not in this version yet (`sokures demo "
                          "--no-dashboard` leaves it out once it is)[/dim]")  # fmt: skip
    finally:
        if lab_down(lab):
            console.print("[dim]the lab is stopped (its mailboxes stay in "
                          f"{lab}/mail)[/dim]")  # fmt: skip
    return 0


def _summary(demo: Demo, seconds: float) -> None:
    console = demo.console
    status: dict[str, Any] = demo.json_of("status", CAMPAIGN, "--json")
    console.rule("[b]summary")
    table = Table(title="reach per provider", title_justify="left")
    for col in ("provider", "messages", "delivered", "reach", "bounced", "deferred", "suppressed"):
        table.add_column(col, justify="left" if col == "provider" else "right")
    for provider, c in status["providers"].items():
        total = sum(c.values())
        table.add_row(provider, f"{total:,}", f"{c['delivered']:,}",
                      f"{c['delivered'] / total:.1%}" if total else "·", f"{c['bounced']:,}",
                      f"{c['deferred'] + c['queued']:,}", f"{c['suppressed']:,}")  # fmt: skip
    console.print(table)
    runs = demo.json_of("placement", "history", CAMPAIGN, "--limit", "1", "--json") or []
    if runs:
        placement = Table(title="seed placement per provider", title_justify="left")
        for col in ("provider", "seeds", "inbox", "promotions", "spam", "missing"):
            placement.add_column(col, justify="left" if col == "provider" else "right")
        for provider, row in (runs[0].get("summary") or {}).items():
            counts = (str(row.get(p, 0)) for p in ("inbox", "promotions", "spam", "missing"))
            placement.add_row(provider, str(row.get("seeds", 0)), *counts)
        console.print(placement)
    reasons = status.get("reasons", {})
    if reasons:
        listed = (f"{state} {reason}: {n}"
                  for state, per in reasons.items() for reason, n in per.items())  # fmt: skip
        console.print("bounces and deferrals by reason: " + ", ".join(listed))
    lab = demo.json_of("lab", "status", "--dir", str(demo.lab), "--json") or {}
    later = sum(c.get("bounced_later", 0) for c in lab.get("providers_seen", {}).values())
    if later:
        console.print(f"{later} messages were accepted and bounced later: their DSNs are in the "
                      f"bounce mailbox ({demo.lab}/mail/{SENDER_DOMAIN}/bounces)")  # fmt: skip
    timing = ", ".join(f"{name} {demo.seconds[name]:.0f} s" for name in
                       ("probe", "send", "placement") if name in demo.seconds)  # fmt: skip
    console.print(f"\ndemo finished in {seconds:.0f} s ({timing}); its files are in "
                  f"{demo.o.workdir}/")  # fmt: skip


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " {}\"'") else arg
