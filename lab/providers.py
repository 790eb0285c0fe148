"""The lab's mailbox providers: who they stand in for, where they listen, which rulebook
drives them.

Each provider has its own loopback address, MX host name, the replies for unknown users
and full mailboxes (which the rulebooks do not cover), the folder layout of its mailboxes
and the rulebook (``probes/rulebooks``) whose requirements, rate limit and DMARC policy
replies its receiver enforces (:mod:`lab.receiver`). Rehearsing a stricter rule is
choosing another rulebook version (:func:`with_rulebooks`), not editing code.

Mailboxes follow the lab's conventions on the local part: ``nouser*`` does not exist (550
5.1.1), ``full*`` is over quota (452 4.2.2), ``gone*`` is accepted and bounced later with
a DSN, ``junk*`` files this sender as spam, ``blackhole*`` drops it silently; anything
else is an ordinary mailbox.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from deliver.errors import ConfigError
from deliver.units import Rate
from lab.content import DEFAULT_THRESHOLD

__all__ = ["PROVIDERS", "LabProvider", "parse_rulebook_choice", "provider_for", "with_rulebooks"]


@dataclass(frozen=True)
class LabProvider:
    name: str
    domains: tuple[str, ...]
    mx_host: str
    address: str
    unknown_user: str
    mailbox_full: str
    #: the throttling reply when the rulebook has no ``[limits.reply]``
    throttle: str
    #: faster than this, the provider answers its throttling reply; None: the rulebook's
    #: ``[limits] messages_per_second`` (and without a rulebook: never)
    lab_rate: Rate | None = None
    #: the rulebook id (``gmail@2025-11``) the receiver enforces; None: authentication is
    #: recorded but nothing is refused for it
    rulebook: str | None = None
    #: content scores at or over this are filed as spam
    spam_threshold: float = DEFAULT_THRESHOLD
    #: bulk mail goes to a Promotions tab (Gmail's inbox categories)
    tabs: bool = False


PROVIDERS: tuple[LabProvider, ...] = (
    LabProvider(
        "gmail",
        ("gmail.com", "googlemail.com"),
        "gmail-smtp-in.l.google.com",
        "127.0.0.21",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        "550 5.1.1 double-checking the recipient's email address for typos. - gsmtp",
        "452-4.2.2 The recipient's inbox is out of storage space.\r\n"
        "452 4.2.2 Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp",
        "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating\r\n"
        "421-4.7.28 from your IP address. To protect our users from spam, mail sent from\r\n"
        "421 4.7.28 your IP address has been temporarily rate limited. - gsmtp",
        rulebook="gmail@2025-11",
        tabs=True,
    ),
    LabProvider(
        "yahoo",
        ("yahoo.com", "aol.com"),
        "mta5.am0.yahoodns.net",
        "127.0.0.22",
        "554 delivery error: dd This user doesn't have a yahoo.com account - mta5.am0.yahoodns.net",
        "452 4.2.2 Mailbox full - mta5.am0.yahoodns.net",
        "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume"
        " or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        rulebook="yahoo@2024-02",
    ),
    LabProvider(
        "outlook",
        ("outlook.com", "hotmail.com", "live.com"),
        "outlook-com.olc.protection.outlook.com",
        "127.0.0.23",
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).",
        "452 4.2.2 The recipient's mailbox is full and can't accept messages now.",
        "421 4.7.0 127.0.0.1 RP-001 (SNT004-MC1F43) Unfortunately, some messages from 127.0.0.1"
        " weren't sent. Please try again. The mail server IP connecting to Outlook.com server"
        " has exceeded the connection limit allowed.",
        rulebook="outlook@2025-05",
    ),
    LabProvider(
        "others",
        ("example.net", "example.org", "mailbox.example"),
        "mx.example.net",
        "127.0.0.24",
        "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
        "452 4.2.2 <{rcpt}>: Recipient address rejected: Mailbox full",
        "421 4.7.0 Too many connections, try again later",
    ),
)


def provider_for(name: str, providers: tuple[LabProvider, ...] = PROVIDERS) -> LabProvider:
    for p in providers:
        if p.name == name:
            return p
    raise ConfigError(
        f"no lab provider {name!r} (the lab has {', '.join(p.name for p in providers)})"
    )


def with_rulebooks(
    choices: Mapping[str, str | None], providers: tuple[LabProvider, ...] = PROVIDERS
) -> tuple[LabProvider, ...]:
    """The providers with other rulebook versions: ``{"gmail": "gmail@2024-02"}``. A bare
    rulebook id is accepted as a choice for the provider it names."""
    names = {p.name for p in providers}
    for name in choices:
        if name not in names:
            provider_for(name, providers)
    return tuple(
        dataclasses.replace(p, rulebook=choices[p.name]) if p.name in choices else p
        for p in providers
    )


def parse_rulebook_choice(text: str) -> tuple[str, str]:
    """``gmail@2024-02`` (the provider named by the rulebook) or ``gmail=gmail@2024-02``."""
    provider, sep, rulebook = text.partition("=")
    if not sep:
        rulebook, provider = text, text.partition("@")[0]
    if "@" not in rulebook:
        raise ConfigError(f"{text!r}: expected a rulebook id like gmail@2024-02")
    return provider.strip(), rulebook.strip()
