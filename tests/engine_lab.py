"""A small world for the engine tests: a real DNS server process serving MX and A
records, scripted receivers on several loopback addresses, and a sokures project
(keys, settings, store) set up the way ``sokures init`` does it."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from deliver.campaigns import campaign_status, create_campaign
from deliver.contacts import ContactImporter
from deliver.dkim import dns_record, load_private_key
from deliver.domain_setup import init_domain
from deliver.send import SendRequest, SendSummary, run_send
from deliver.settings import Settings, load_settings
from deliver.store import Store
from deliver.store.models import DeliveryEvent, Message, ShapingState, Suppression, table
from lab.zones import Record, ZoneData

# The lab's MX hosts and their loopback addresses.
HOSTS = {
    "mx1.lab.test": "127.0.0.2",
    "implicit.lab.test": "127.0.0.3",
    "gmail-smtp-in.l.google.com": "127.0.0.4",
    "mta5.am0.yahoodns.net": "127.0.0.5",
}
TEMPLATE = """<html><body><h1>Hello {{ name }}</h1>
<p>News for {{ contact.email }}: {{ contact.plan|default("free") }} plan.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>
"""


def lab_zone() -> ZoneData:
    records: dict[str, list[Record]] = {
        "mx.lab.test": [Record("MX", [10, "mx1.lab.test"])],
        "nullmx.lab.test": [Record("MX", [0, "."])],
        "noaddr.lab.test": [Record("MX", [10, "ghost.lab.test"])],
        "gmail.com": [Record("MX", [5, "gmail-smtp-in.l.google.com"])],
        "yahoo.com": [Record("MX", [1, "mta5.am0.yahoodns.net"])],
    }
    for host, address in HOSTS.items():
        records.setdefault(host, []).append(Record("A", address))
    return ZoneData(
        origins=("lab.test", "gmail.com", "google.com", "yahoo.com", "yahoodns.net"),
        records=records,
        servfail=("servfail.lab.test",),
    )


@dataclass
class EngineLab:
    root: Path
    database_url: str
    nameserver: str | None = None
    port: int = 25
    overrides: dict[str, Any] = field(default_factory=dict)
    shaping: str | None = None

    def __post_init__(self) -> None:
        self.config = self.root / "sokures.toml"
        init_domain(
            "example.com",
            config_path=self.config,
            rsa_selector="s1",
            ed25519_selector="s2",
            database_url=self.database_url,
        )
        if self.shaping is not None:
            (self.root / "shaping.toml").write_text(self.shaping)
        self.store = Store.open(self.database_url)

    def settings(self, **extra: Any) -> Settings:
        overrides = {
            "database.url": self.database_url,
            "smtp.port": self.port,
            "dns.nameservers": (self.nameserver,) if self.nameserver else None,
            "dns.timeout": 2.0,
            "retry.initial": 1.0,
            "retry.max_interval": 5.0,
            "engine.linger": 8.0,
            "engine.lease_seconds": 20.0,
            "contacts.allow_test_domains": True,
            "shaping.file": str(self.root / "shaping.toml") if self.shaping else None,
            **self.overrides,
            **extra,
        }
        return load_settings(self.config, env={}, overrides=overrides)

    def import_contacts(
        self, rows: Iterable[Mapping[str, str] | str], list_name: str = "default"
    ) -> None:
        path = self.root / f"contacts-{time.monotonic_ns()}.csv"
        dicts = [{"email": r} if isinstance(r, str) else dict(r) for r in rows]
        columns = sorted({k for d in dicts for k in d}, key=lambda k: (k != "email", k))
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(dicts)
        report = ContactImporter(self.store.contacts, test_domains=True).run(path, list_name)
        assert report.bad_count == 0, report.bad

    def campaign(
        self, name: str, *, subject: str = "Hello {{ name }}", list_name: str = "default"
    ) -> int:
        template = self.root / "news.html"
        template.write_text(TEMPLATE)
        created = create_campaign(
            self.settings(),
            self.store,
            name=name,
            template=template,
            sender="News <news@example.com>",
            subject=subject,
            list_name=list_name,
        )
        return created.campaign.id

    def send(
        self, name: str, *, relay: str | None = None, workers: int = 1, **extra: Any
    ) -> SendSummary:
        return run_send(self.settings(**extra), SendRequest(name, relay=relay, workers=workers))

    def status(self, name: str) -> dict[str, Any]:
        return campaign_status(self.store, name)

    def messages(self, campaign_id: int) -> dict[str, dict[str, Any]]:
        m = table(Message)
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(m).where(m.c.campaign_id == campaign_id)).all()
        return {r.rcpt: dict(r._mapping) for r in rows}

    def events(self, rcpt: str) -> list[dict[str, Any]]:
        e = table(DeliveryEvent)
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(e).where(e.c.rcpt == rcpt).order_by(e.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def suppressed(self) -> set[str]:
        s = table(Suppression)
        with self.store.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(s.c.email_key))}

    def rule_state(self) -> dict[tuple[str, str], float | None]:
        st = table(ShapingState)
        with self.store.engine.connect() as conn:
            return {(r.provider, r.rule): r.active_until for r in conn.execute(select(st))}

    def dkim_record(self) -> bytes:
        key = load_private_key(self.root / "keys" / "s1.rsa.pem", "rsa-sha256")
        return dns_record(key).encode()
