"""The lab's mailboxes: Maildir++ trees with each provider's folder names.

Mail for ``local@domain`` lives under ``<root>/<domain>/<local>/Maildir`` (lower-cased), in
Dovecot's default Maildir++ layout: INBOX is ``Maildir/{cur,new,tmp}``, folder "A/B" (IMAP
hierarchy separator "/") is ``Maildir/.A.B/`` with a ``maildirfolder`` file. The spam
folder is the provider's (:data:`LAYOUTS`): Gmail ``[Gmail]/Spam``, Yahoo ``Bulk``, Outlook
and the others ``Junk``. Gmail's tabs are IMAP keywords (``CATEGORY_PROMOTIONS``...) whose
letters ``a``-``d`` are fixed by the ``dovecot-keywords`` file each INBOX gets.

Delivery is atomic (written in ``tmp/``, renamed into ``new/`` or ``cur/``) and safe from
several threads. Directories are group-writable and files group-readable, because Dovecot
reads them as another user when the lab runs as root (see :mod:`lab.dovecot`).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from probes.mailboxes import CATEGORIES, CATEGORY_KEYWORDS, encode_mutf7

__all__ = [
    "LAYOUTS",
    "PLACEMENTS",
    "SEPARATOR",
    "MailLayout",
    "MaildirStore",
    "folder_dir_name",
    "home_of",
]

SEPARATOR = "/"
PLACEMENTS = ("inbox", "promotions", "spam")
DIR_MODE = 0o770
FILE_MODE = 0o640


@dataclass(frozen=True, slots=True)
class MailLayout:
    provider: str
    spam_folder: str
    #: Gmail-like inbox tabs, kept as CATEGORY_* keywords
    categories: bool


LAYOUTS: dict[str, MailLayout] = {
    "gmail": MailLayout("gmail", "[Gmail]/Spam", True),
    "yahoo": MailLayout("yahoo", "Bulk", False),
    "outlook": MailLayout("outlook", "Junk", False),
    "others": MailLayout("others", "Junk", False),
}

#: dovecot-keywords: keyword number n is the letter chr(ord("a") + n) in a file's info
_KEYWORDS_FILE = "".join(f"{n} {CATEGORY_KEYWORDS[c]}\n" for n, c in enumerate(CATEGORIES))
_LETTERS = {c: chr(ord("a") + n) for n, c in enumerate(CATEGORIES)}
_NAME_PART = re.compile(r"[a-z0-9!#$%&'*+=?^_`{|}~-][a-z0-9.!#$%&'*+=?^_`{|}~-]*")


def folder_dir_name(folder: str) -> str:
    """The Maildir++ directory of an IMAP folder: "[Gmail]/Spam" -> ".[Gmail].Spam"."""
    return "." + encode_mutf7(folder).replace(SEPARATOR, ".")


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.strip().lower().rpartition("@")
    if not at or not _NAME_PART.fullmatch(local) or not _NAME_PART.fullmatch(domain):
        raise ValueError(f"not a lab mailbox address: {address!r}")
    if ".." in local or ".." in domain:
        raise ValueError(f"not a lab mailbox address: {address!r}")
    return local, domain


def home_of(root: Path, address: str) -> Path:
    """The home of ``address`` under a mail root: ``<root>/<domain>/<local>``, lower-cased."""
    local, domain = _split(address)
    return Path(root) / domain / local


def _hostname() -> str:
    # Maildir names escape "/" and ":" in the host part (they separate name and info)
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"


class MaildirStore:
    """The Maildir++ trees of the lab's mailboxes under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if self.root.stat().st_uid == os.geteuid():
            # Dovecot's mail processes (group members when the lab runs as root) go through
            self.root.chmod(self.root.stat().st_mode & 0o7777 | 0o050)
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._ensured: set[tuple[str, str]] = set()
        self._host = _hostname()

    def __repr__(self) -> str:
        return f"MaildirStore({str(self.root)!r})"

    def home(self, address: str) -> Path:
        return home_of(self.root, address)

    def maildir(self, address: str) -> Path:
        return self.home(address) / "Maildir"

    def users(self) -> list[str]:
        """The addresses that have a Maildir."""
        return sorted(
            f"{maildir.parent.name}@{maildir.parent.parent.name}"
            for maildir in self.root.glob("*/*/Maildir")
            if (maildir / "cur").is_dir()
        )

    def ensure(self, address: str, provider: str) -> Path:
        """Create the mailbox (INBOX, the layout's spam folder, keywords); its home."""
        layout = _layout(provider)
        home = self.home(address)
        key = (str(home), layout.provider)
        if key in self._ensured:
            return home
        with self._lock:
            if key not in self._ensured:
                maildir = home / "Maildir"
                for path in (home.parent, home, maildir):
                    _mkdir(path)
                _make_maildir(maildir)
                spam = maildir / folder_dir_name(layout.spam_folder)
                _make_maildir(spam)
                _write_new(spam / "maildirfolder", b"")
                _write_new(maildir / "dovecot-keywords", _KEYWORDS_FILE.encode())
                self._ensured.add(key)
        return home

    def deliver(
        self,
        address: str,
        provider: str,
        placement: str,
        raw: bytes,
        *,
        category: str | None = None,
    ) -> Path:
        """File ``raw`` in the mailbox as ``placement`` says; the message file's path.

        "promotions" is the INBOX with the CATEGORY_PROMOTIONS keyword where the layout has
        tabs (Gmail), the plain INBOX elsewhere; ``category`` ("social", "updates",
        "forums") puts an inbox copy in that tab likewise.
        """
        if placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {placement!r} (one of {', '.join(PLACEMENTS)})")
        if category is not None and category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r} (one of {', '.join(CATEGORIES)})")
        layout = _layout(provider)
        maildir = self.ensure(address, provider) / "Maildir"
        if placement == "spam":
            folder, category = maildir / folder_dir_name(layout.spam_folder), None
        else:
            folder = maildir
            if placement == "promotions":
                category = "promotions"
            if not layout.categories:
                category = None
        name = self._unique_name(len(raw))
        tmp = folder / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        # no fsync: lab mail need not survive a crash, and the demo delivers thousands
        if category is None:
            final = folder / "new" / name
        else:
            final = folder / "cur" / f"{name}:2,{_LETTERS[category]}"
        os.rename(tmp, final)
        return final

    def _unique_name(self, size: int) -> str:
        # Maildir's unique name: time, microseconds, pid, a counter, host (plus randomness
        # for two stores on one root in one process), and the size hint Dovecot reads
        with self._lock:
            n = next(self._counter)
        now = time.time()
        seconds, micros = int(now), int(now % 1 * 1_000_000)
        salt = secrets.token_hex(3)
        return f"{seconds}.M{micros}P{os.getpid()}Q{n}R{salt}.{self._host},S={size}"


def _layout(provider: str) -> MailLayout:
    if provider not in LAYOUTS:
        raise ValueError(f"unknown mail layout {provider!r} (one of {', '.join(LAYOUTS)})")
    return LAYOUTS[provider]


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(DIR_MODE)
    except FileExistsError:
        return
    path.chmod(DIR_MODE)  # whatever the umask


def _make_maildir(path: Path) -> None:
    _mkdir(path)
    for sub in ("cur", "new", "tmp"):
        _mkdir(path / sub)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` unless it exists (Dovecot may have extended it)."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_bytes(data)
    tmp.chmod(0o660)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
