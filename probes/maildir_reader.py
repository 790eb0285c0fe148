"""Seed copies read straight from a Maildir++ tree, for the lab when no IMAP server runs.

INBOX is the Maildir itself (``cur/``, ``new/``); folder "A/B" is ``.A.B`` (names in
modified UTF-7, as Dovecot writes them). Keywords are Dovecot's: the letters ``a``-``z``
in a file's info (``:2,<flags>``) index the folder's ``dovecot-keywords`` file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from probes.mailboxes import (
    PROVIDER_SPAM_FOLDERS,
    Found,
    MailboxError,
    MailboxReader,
    auth_results_of,
    body_has_token,
    check_token,
    decode_mutf7,
    encode_mutf7,
    header_has_token,
    header_section,
    placement_of,
)

__all__ = ["MaildirReader"]


def _maildir_keywords(folder_dir: Path) -> dict[str, str]:
    """Dovecot's keyword letters of a Maildir folder (``dovecot-keywords``: ``0 NAME``)."""
    letters: dict[str, str] = {}
    try:
        text = (folder_dir / "dovecot-keywords").read_text("utf-8")
    except OSError:
        return letters
    for line in text.splitlines():
        number, _, name = line.partition(" ")
        if number.isdigit() and int(number) < 26 and name:
            letters[chr(ord("a") + int(number))] = name.strip()
    return letters


def _maildir_files(folder_dir: Path) -> Iterator[Path]:
    # new/ before cur/: a file moved from new/ to cur/ while listing is still seen in cur/
    for sub in ("new", "cur"):
        try:
            names = sorted(os.listdir(folder_dir / sub))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise MailboxError(f"{folder_dir / sub}: {exc.strerror}") from None
        for name in names:
            if not name.startswith("."):
                yield folder_dir / sub / name


class MaildirReader(MailboxReader):
    """Searches a Maildir++ tree (INBOX at ``path``, folder "A/B" at ``path/.A.B``)."""

    def __init__(self, path: Path, provider: str | None = None) -> None:
        self.path = Path(path)
        self.provider = provider

    def __repr__(self) -> str:
        return f"MaildirReader({str(self.path)!r})"

    def connect(self) -> None:
        """MailboxError unless ``path`` is a Maildir."""
        self.folders()

    def close(self) -> None:
        """Nothing to release; here so both readers are used alike."""

    def folders(self) -> list[str]:
        """The folder names of the tree (INBOX first), decoded."""
        if not (self.path / "cur").is_dir():
            raise MailboxError(f"{self.path}: not a Maildir (no cur/)")
        try:
            entries = sorted(os.listdir(self.path))
        except OSError as exc:
            raise MailboxError(f"{self.path}: {exc.strerror}") from None
        names = [
            decode_mutf7(entry[1:].replace(".", "/"))
            for entry in entries
            if entry.startswith(".") and (self.path / entry / "cur").is_dir()
        ]
        return ["INBOX", *names]

    def _spam_names(self, names: Sequence[str]) -> list[str]:
        preferred = PROVIDER_SPAM_FOLDERS.get(self.provider or "")
        spam = [n for n in names if placement_of(n)[0] == "spam"]
        return sorted(spam, key=lambda n: (n != preferred, n))

    def _dir(self, name: str) -> Path:
        if name == "INBOX":
            return self.path
        return self.path / ("." + encode_mutf7(name).replace("/", "."))

    def find(self, token: str) -> Found | None:
        """The first copy carrying ``token``, in INBOX then the spam folder(s); None if none."""
        check_token(token)
        names = self.folders()
        for name in ["INBOX", *self._spam_names(names)]:
            found = self._find_in(name, token)
            if found is not None:
                return found
        return None

    def _find_in(self, name: str, token: str) -> Found | None:
        # a file renamed meanwhile (new/ to cur/, a flag change) is missed once: look again
        for _attempt in range(3):
            found, renamed = self._scan(name, token)
            if found is not None or not renamed:
                return found
        return None

    def _scan(self, name: str, token: str) -> tuple[Found | None, bool]:
        folder_dir = self._dir(name)
        body_match: Found | None = None
        renamed = False
        for path in _maildir_files(folder_dir):
            try:
                raw = path.read_bytes()
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                renamed = True
                continue
            except OSError as exc:
                raise MailboxError(f"{path}: {exc.strerror}") from None
            if header_has_token(header_section(raw), token):
                return self._found(name, folder_dir, path, raw, mtime), False
            if body_match is None and body_has_token(raw, token):
                body_match = self._found(name, folder_dir, path, raw, mtime)
        return body_match, renamed and body_match is None

    def _found(self, name: str, folder_dir: Path, path: Path, raw: bytes, mtime: float) -> Found:
        letters = _maildir_keywords(folder_dir)
        _, _, info = path.name.partition(":2,")
        keywords = [letters[c] for c in info if c in letters]
        placement, category = placement_of(name, (), keywords)
        header = header_section(raw)
        return Found(placement, name, category, mtime, auth_results_of(header), header)
