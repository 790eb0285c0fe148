"""A real Dovecot (Debian ``dovecot-imapd``) serving Maildirs written by :class:`MaildirStore`.

:func:`dovecot_for` starts one over any MaildirStore root (the lab tests use it); the
module-scoped :func:`dovecot_mailboxes` fixture gives a store with a Gmail-, a Yahoo- and an
Outlook-like seed mailbox, served on a free loopback port.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.dovecot import Dovecot
from lab.maildir import MaildirStore
from tests.servers.ports import free_port, require_program

__all__ = ["DovecotMailboxes", "Seed", "dovecot_for", "dovecot_mailboxes"]


@contextmanager
def dovecot_for(
    mail_root: Path, users: Mapping[str, str], listen: Sequence[str] = ("127.0.0.1",)
) -> Iterator[Dovecot]:
    """A running Dovecot serving ``mail_root`` to ``users`` (address -> password)."""
    require_program("/usr/sbin/dovecot", "dovecot-imapd")
    # not under tmp_path: Dovecot's unix sockets live in base_dir, whose path must be short
    base = Path(tempfile.mkdtemp(prefix="dovecot-"))
    try:
        with Dovecot(base, mail_root, users, listen, port=free_port(listen[0])) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Seed:
    provider: str
    address: str
    password: str


@dataclass(frozen=True)
class DovecotMailboxes:
    store: MaildirStore
    server: Dovecot
    seeds: dict[str, Seed]  # by provider: "gmail", "yahoo", "outlook"


@pytest.fixture(scope="module")
def dovecot_mailboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotMailboxes]:
    store = MaildirStore(tmp_path_factory.mktemp("mail"))
    seeds = {
        p: Seed(p, f"seed.{p}@{p}.example", f"{p}-Seed-Pass-7391")
        for p in ("gmail", "yahoo", "outlook")
    }
    for seed in seeds.values():
        store.ensure(seed.address, seed.provider)
    users = {seed.address: seed.password for seed in seeds.values()}
    with dovecot_for(store.root, users) as server:
        yield DovecotMailboxes(store, server, seeds)
