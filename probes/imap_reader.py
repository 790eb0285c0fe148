"""Seed copies over IMAP: :class:`ImapReader`, and the parsing of the server's answers
(LIST, SEARCH, FETCH with FLAGS and INTERNALDATE) as pure functions.

Folders are discovered once per connection: ``LIST "" "*" RETURN (SPECIAL-USE)`` when the
server has SPECIAL-USE (RFC 6154), else plain LIST attributes, else known spam names. A
copy is looked up with ``UID SEARCH HEADER X-Sokures-Seed <token>``, then ``UID SEARCH BODY
<token>`` (some providers do not index custom headers). Gmail (X-GM-EXT-1) tells a copy's
inbox tab through ``X-GM-RAW "category:promotions"``; elsewhere the tab is a
``CATEGORY_*`` keyword (the lab's convention).
"""

from __future__ import annotations

import calendar
import contextlib
import imaplib
import ipaddress
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from probes.mailboxes import (
    CATEGORIES,
    CATEGORY_KEYWORDS,
    SEED_HEADER,
    SPAM_FOLDER_NAMES,
    Found,
    MailboxError,
    MailboxReader,
    MailboxUnreachable,
    auth_results_of,
    check_token,
    decode_mutf7,
    encode_mutf7,
    placement_of,
    quote,
)

__all__ = [
    "Fetched",
    "ImapReader",
    "ListedFolder",
    "gmail_category",
    "parse_fetch",
    "parse_flags",
    "parse_internaldate",
    "parse_list",
    "parse_search",
    "spam_folders",
    "xoauth2_response",
]

_Data = Sequence[bytes | tuple[bytes, bytes] | None]


def _unquote(text: bytes) -> bytes:
    return re.sub(rb"\\(.)", rb"\1", text[1:-1])


@dataclass(frozen=True, slots=True)
class ListedFolder:
    name: str  # decoded
    attributes: frozenset[str]  # as sent, e.g. "\\Junk", "\\HasNoChildren"
    delimiter: str | None


_LIST_LINE = re.compile(
    rb'^\((?P<attrs>[^)]*)\)\s+(?P<delim>NIL|"(?:[^"\\]|\\.)*")\s+(?P<name>.*)$'
)


def parse_list(data: _Data) -> list[ListedFolder]:
    """The folders of a LIST answer as imaplib returns it (literal names as tuples)."""
    folders: list[ListedFolder] = []
    for item in data:
        line, literal = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
        if not line:
            continue
        match = _LIST_LINE.match(line.strip())
        if match is None:
            continue
        name = match["name"].strip()
        if literal is not None:
            name = literal
        elif name.startswith(b'"'):
            name = _unquote(name)
        delim = None if match["delim"] == b"NIL" else _unquote(match["delim"]).decode()
        attrs = frozenset(a.decode() for a in match["attrs"].split())
        folders.append(ListedFolder(decode_mutf7(name.decode("utf-8", "replace")), attrs, delim))
    return folders


def spam_folders(folders: Sequence[ListedFolder]) -> list[ListedFolder]:
    """The spam folders: those marked \\Junk (RFC 6154), else the known names in order."""
    junk = [f for f in folders if "\\junk" in {a.casefold() for a in f.attributes}]
    if junk:
        return junk
    by_name = {f.name.casefold(): f for f in folders}
    return [by_name[n.casefold()] for n in SPAM_FOLDER_NAMES if n.casefold() in by_name]


def parse_search(data: _Data) -> list[int]:
    """The UIDs of a SEARCH answer (``[b"3 7 12"]``, or ``[b""]``/``[None]`` for none)."""
    uids: list[int] = []
    for item in data:
        if isinstance(item, bytes):
            uids.extend(int(n) for n in item.split() if n.isdigit())
    return uids


def parse_flags(meta: bytes) -> tuple[str, ...]:
    """The flags and keywords of ``FLAGS (...)`` in a FETCH answer."""
    match = re.search(rb"FLAGS \(([^)]*)\)", meta)
    return () if match is None else tuple(f.decode() for f in match.group(1).split())


_MONTHS = {m.encode(): i for i, m in enumerate(calendar.month_abbr) if m}


def parse_internaldate(text: bytes) -> float | None:
    """Epoch seconds of an INTERNALDATE (``"17-Jul-1996 02:44:25 -0700"``, RFC 3501 §9)."""
    match = re.search(
        rb'INTERNALDATE "\s?(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([-+])(\d\d)(\d\d)"',
        text,
    )
    if match is None or match.group(2).title() not in _MONTHS:
        return None
    day, month, year = int(match[1]), _MONTHS[match[2].title()], int(match[3])
    hour, minute, second = int(match[4]), int(match[5]), int(match[6])
    offset = (int(match[8]) * 60 + int(match[9])) * 60 * (-1 if match[7] == b"-" else 1)
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset)


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int | None
    flags: tuple[str, ...]
    internaldate: float | None
    header: bytes


def parse_fetch(data: _Data) -> Fetched | None:
    """The message of a ``UID FETCH n (UID FLAGS INTERNALDATE BODY.PEEK[HEADER])`` answer.

    imaplib gives ``[(b'1 (UID 5 FLAGS (...) ... BODY[HEADER] {n}', header), b')']``; items
    may come after the literal, so the text around it is read as one.
    """
    meta, header = b"", b""
    for item in data:
        if isinstance(item, tuple):
            meta += item[0] + b" "
            header = item[1]
        elif isinstance(item, bytes):
            meta += item + b" "
    if not meta:
        return None
    uid = re.search(rb"UID (\d+)", meta)
    return Fetched(
        int(uid.group(1)) if uid else None, parse_flags(meta), parse_internaldate(meta), header
    )


def gmail_category(uid: int, answers: Mapping[str, _Data]) -> str | None:
    """The tab of ``uid`` from ``UID SEARCH UID n X-GM-RAW "category:<c>"`` answers."""
    return next((c for c in CATEGORIES if uid in parse_search(answers.get(c, ()))), None)


def xoauth2_response(user: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial client response (Google's and Microsoft's format)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _one_line(text: object, secret: str) -> str:
    if isinstance(text, BaseException) and len(text.args) == 1:
        text = text.args[0]  # imaplib puts the server's bytes there
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    line = " ".join(str(text).split())
    return line.replace(secret, "***") if secret else line


class ImapReader(MailboxReader):
    """Searches one IMAP mailbox for seed copies; connects on first use.

    ``auth``: "password" (LOGIN, or AUTHENTICATE PLAIN for a non-ASCII secret) or "xoauth2"
    (``secret`` is the OAuth access token). ``tls``: "implicit" (port 993), "starttls", or
    "none", which is refused unless ``host`` is a loopback address.
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        secret: str,
        *,
        auth: str = "password",
        tls: str = "implicit",
        timeout: float = 10.0,
    ) -> None:
        if auth not in ("password", "xoauth2"):
            raise MailboxError(f"unknown IMAP auth {auth!r} (password or xoauth2)")
        if tls not in ("implicit", "starttls", "none"):
            raise MailboxError(f"unknown IMAP tls {tls!r} (implicit, starttls or none)")
        if tls == "none" and not _is_loopback(host):
            raise MailboxError(f"imap {host}:{port}: tls=none is allowed on loopback only")
        self.host, self.port, self.user = host, port, user
        self.auth, self.tls, self.timeout = auth, tls, timeout
        self._secret = secret
        self._conn: imaplib.IMAP4 | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._spam: list[ListedFolder] | None = None

    def __repr__(self) -> str:
        return f"ImapReader({self.user!r} at {self.host}:{self.port}, tls={self.tls})"

    def _error(self, what: str, reason: object) -> MailboxError:
        reason_line = _one_line(reason, self._secret)
        return MailboxError(f"imap {self.host}:{self.port}: {what}: {reason_line}")

    def close(self) -> None:
        conn, self._conn, self._spam = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()  # the connection is gone either way

    def _open(self) -> imaplib.IMAP4:
        context = ssl.create_default_context()
        try:
            if self.tls == "implicit":
                return imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=context, timeout=self.timeout
                )
            conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            if isinstance(exc, ssl.SSLError | imaplib.IMAP4.error):
                raise self._error("TLS or greeting failed", exc) from None
            reason = exc.strerror or type(exc).__name__
            raise MailboxUnreachable(f"imap {self.host}:{self.port}: {reason}") from None
        if self.tls == "starttls":
            try:
                conn.starttls(ssl_context=context)
            except (OSError, imaplib.IMAP4.error) as exc:
                conn.shutdown()
                raise self._error("STARTTLS failed", exc) from None
        return conn

    def _login(self, conn: imaplib.IMAP4) -> None:
        if self.auth == "xoauth2":
            sent: list[bool] = []

            def answer(_challenge: bytes) -> bytes:
                # after a failure the server sends a JSON challenge: answer it empty
                if sent:
                    return b""
                sent.append(True)
                return xoauth2_response(self.user, self._secret)

            conn.authenticate("XOAUTH2", answer)
        elif self._secret.isascii() and self.user.isascii():
            conn.login(self.user, self._secret)
        else:
            plain = f"\0{self.user}\0{self._secret}".encode()
            conn.authenticate("PLAIN", lambda _challenge: plain)

    def connect(self) -> None:
        """Connect and log in now (MailboxUnreachable, MailboxError), not at the first find."""
        self._connection()

    def _connection(self) -> imaplib.IMAP4:
        if self._conn is not None:
            return self._conn
        conn = self._open()
        try:
            self._login(conn)
            _, caps = conn.capability()
        except imaplib.IMAP4.error as exc:
            conn.shutdown()
            raise self._error(f"login failed for {self.user}", exc) from None
        except OSError as exc:
            conn.shutdown()
            raise self._error("connection lost at login", exc) from None
        words = b" ".join(item for item in caps if isinstance(item, bytes)).decode().split()
        self._capabilities = frozenset(word.upper() for word in words)
        self._conn = conn
        return conn

    def _folders(self, conn: imaplib.IMAP4) -> list[ListedFolder]:
        if "SPECIAL-USE" in self._capabilities:
            # RFC 6154 §2: the special-use attributes asked for explicitly
            typ, _ = conn.xatom("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
            _, data = conn.response("LIST")
            if typ == "OK":
                return parse_list(data)
        typ, data = conn.list()
        return parse_list(data) if typ == "OK" else []

    def find(self, token: str) -> Found | None:
        """The first copy carrying ``token``, in INBOX then the spam folder(s); None if none."""
        check_token(token)
        conn = self._connection()
        try:
            if self._spam is None:
                self._spam = spam_folders(self._folders(conn))
            inbox = ListedFolder("INBOX", frozenset(), "/")
            for folder in [inbox, *self._spam]:
                found = self._find_in(conn, folder, token)
                if found is not None:
                    return found
            return None
        except imaplib.IMAP4.abort as exc:
            self.close()
            raise self._error("connection lost", exc) from None
        except imaplib.IMAP4.error as exc:
            raise self._error("command failed", exc) from None
        except OSError as exc:
            self.close()
            raise self._error("connection lost", exc) from None

    def _find_in(self, conn: imaplib.IMAP4, folder: ListedFolder, token: str) -> Found | None:
        typ, _ = conn.select(quote(encode_mutf7(folder.name)), readonly=True)
        if typ != "OK":
            return None  # a folder that vanished since LIST
        uids = parse_search(self._uid(conn, "SEARCH", "HEADER", SEED_HEADER, quote(token)))
        if not uids:
            # some providers do not index custom headers
            uids = parse_search(self._uid(conn, "SEARCH", "BODY", quote(token)))
        if not uids:
            return None
        uid = uids[0]
        fetched = parse_fetch(
            self._uid(conn, "FETCH", str(uid), "(UID FLAGS INTERNALDATE BODY.PEEK[HEADER])")
        )
        if fetched is None:
            return None
        keywords: Iterable[str] = fetched.flags
        if "X-GM-EXT-1" in self._capabilities and folder.name == "INBOX":
            category = self._gmail_category(conn, uid)
            keywords = [CATEGORY_KEYWORDS[category]] if category else []
        placement, category = placement_of(folder.name, folder.attributes, keywords)
        return Found(
            placement,
            folder.name,
            category,
            fetched.internaldate,
            auth_results_of(fetched.header),
            fetched.header,
        )

    def _uid(self, conn: imaplib.IMAP4, command: str, *args: str) -> _Data:
        typ, data = conn.uid(command, *args)
        if typ != "OK":
            raise self._error(f"UID {command} refused", data[-1] if data else typ)
        return data

    def _gmail_category(self, conn: imaplib.IMAP4, uid: int) -> str | None:
        answers: dict[str, _Data] = {}
        for category in CATEGORIES:
            query = quote(f"category:{category}")
            answers[category] = self._uid(conn, "SEARCH", "UID", str(uid), "X-GM-RAW", query)
            if gmail_category(uid, answers):
                break
        return gmail_category(uid, answers)
