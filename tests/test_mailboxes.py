"""Seed copies found by token: the lab's Maildirs, served by a real Dovecot and read back
over IMAP (ImapReader) and straight from disk (MaildirReader), plus the pure parsing."""

from __future__ import annotations

import calendar
import imaplib
import itertools
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from lab.dovecot import Dovecot, render_config
from lab.maildir import LAYOUTS, MaildirStore, folder_dir_name
from probes.imap_reader import (
    ListedFolder,
    gmail_category,
    parse_fetch,
    parse_flags,
    parse_internaldate,
    parse_list,
    parse_search,
    spam_folders,
    xoauth2_response,
)
from probes.mailboxes import (
    SPAM_FOLDER_NAMES,
    Found,
    ImapReader,
    MailboxError,
    MailboxUnreachable,
    MaildirReader,
    auth_results_of,
    decode_mutf7,
    encode_mutf7,
    placement_of,
    quote,
)
from tests.servers.dovecot import DovecotMailboxes, dovecot_for, dovecot_mailboxes  # noqa: F401
from tests.servers.ports import free_port

_tokens = itertools.count(1)


def token() -> str:
    return f"Seed{os.getpid()}T{next(_tokens):04d}x{int(time.time() * 1000) % 10**6}"


def message(tok: str, *, header: bool = True, provider: str = "gmail") -> bytes:
    lines = [
        f"Authentication-Results: mx.{provider}.example;\r\n"
        "\tdkim=pass header.d=news.example; spf=pass smtp.mailfrom=news.example",
        "Authentication-Results: relay.example; arc=none",
        "From: News <news@news.example>",
        f"To: seed@{provider}.example",
        "Subject: This week's letter",
        "Message-ID: <x1@news.example>",
    ]
    if header:
        lines.append(f"X-Sokures-Seed: {tok}")
    return ("\r\n".join(lines) + f"\r\n\r\nHello reader.\r\nref {tok}\r\n").encode()


def reader_for(mailboxes: DovecotMailboxes, provider: str) -> ImapReader:
    seed = mailboxes.seeds[provider]
    port = mailboxes.server.port
    return ImapReader("127.0.0.1", port, seed.address, seed.password, tls="none", timeout=5)


# -- over IMAP and on disk, alike --------------------------------------------------------

CASES = [
    ("gmail", "inbox", None, "inbox", "INBOX", None),
    ("gmail", "promotions", None, "promotions", "INBOX", "promotions"),
    ("gmail", "inbox", "social", "inbox", "INBOX", "social"),
    ("gmail", "inbox", "updates", "inbox", "INBOX", "updates"),
    ("gmail", "spam", None, "spam", "[Gmail]/Spam", None),
    ("yahoo", "inbox", None, "inbox", "INBOX", None),
    ("yahoo", "promotions", None, "inbox", "INBOX", None),
    ("yahoo", "spam", None, "spam", "Bulk", None),
    ("outlook", "inbox", None, "inbox", "INBOX", None),
    ("outlook", "spam", None, "spam", "Junk", None),
]


@pytest.mark.parametrize(("provider", "placement", "category", "want", "folder", "tab"), CASES)
def test_imap_and_maildir_find_the_copy_where_it_was_delivered(
    dovecot_mailboxes: DovecotMailboxes,  # noqa: F811
    provider: str,
    placement: str,
    category: str | None,
    want: str,
    folder: str,
    tab: str | None,
) -> None:
    seed = dovecot_mailboxes.seeds[provider]
    tok = token()
    delivered_at = time.time()
    dovecot_mailboxes.store.deliver(
        seed.address, provider, placement, message(tok, provider=provider), category=category
    )
    with reader_for(dovecot_mailboxes, provider) as imap:
        over_imap = imap.find(tok)
    on_disk = MaildirReader(dovecot_mailboxes.store.maildir(seed.address), provider).find(tok)
    for found in (over_imap, on_disk):
        assert found is not None
        assert (found.placement, found.folder, found.category) == (want, folder, tab)
        assert found.arrived_at is not None and abs(found.arrived_at - delivered_at) < 2.0
        assert found.auth_results == (
            f"mx.{provider}.example; dkim=pass header.d=news.example; "
            "spf=pass smtp.mailfrom=news.example",
            "relay.example; arc=none",
        )
        assert f"X-Sokures-Seed: {tok}".encode() in found.headers
        assert b"Hello reader" not in found.headers


def test_a_token_never_delivered_is_not_found(dovecot_mailboxes: DovecotMailboxes) -> None:  # noqa: F811
    seed = dovecot_mailboxes.seeds["gmail"]
    dovecot_mailboxes.store.deliver(seed.address, "gmail", "spam", message(token()))
    absent = token()
    with reader_for(dovecot_mailboxes, "gmail") as imap:
        assert imap.find(absent) is None
        assert imap.find(absent) is None  # the same connection, asked again
    assert MaildirReader(dovecot_mailboxes.store.maildir(seed.address)).find(absent) is None


@pytest.mark.parametrize(("provider", "placement"), [("yahoo", "spam"), ("gmail", "inbox")])
def test_a_body_only_token_is_found_by_the_body_search(
    dovecot_mailboxes: DovecotMailboxes,  # noqa: F811
    provider: str,
    placement: str,
) -> None:
    seed = dovecot_mailboxes.seeds[provider]
    tok = token()
    dovecot_mailboxes.store.deliver(
        seed.address, provider, placement, message(tok, header=False, provider=provider)
    )
    with reader_for(dovecot_mailboxes, provider) as imap:
        over_imap = imap.find(tok)
    on_disk = MaildirReader(dovecot_mailboxes.store.maildir(seed.address)).find(tok)
    assert over_imap is not None and on_disk is not None
    assert over_imap.placement == on_disk.placement == placement
    assert b"X-Sokures-Seed" not in over_imap.headers


def test_the_first_copy_in_inbox_order_wins(dovecot_mailboxes: DovecotMailboxes) -> None:  # noqa: F811
    seed = dovecot_mailboxes.seeds["outlook"]
    tok = token()
    dovecot_mailboxes.store.deliver(seed.address, "outlook", "spam", message(tok))
    dovecot_mailboxes.store.deliver(seed.address, "outlook", "inbox", message(tok))
    with reader_for(dovecot_mailboxes, "outlook") as imap:
        found = imap.find(tok)
    assert found is not None and found.placement == "inbox"


@pytest.mark.parametrize("provider", ["gmail", "yahoo", "outlook"])
def test_list_declares_the_spam_folder_junk(
    dovecot_mailboxes: DovecotMailboxes,  # noqa: F811
    provider: str,
) -> None:
    seed = dovecot_mailboxes.seeds[provider]
    conn = imaplib.IMAP4("127.0.0.1", dovecot_mailboxes.server.port, timeout=5)
    try:
        conn.login(seed.address, seed.password)
        typ, _ = conn.xatom("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
        assert typ == "OK"
        folders = parse_list(conn.response("LIST")[1])
    finally:
        conn.logout()
    junk = [f.name for f in folders if "\\Junk" in f.attributes]
    assert junk == [LAYOUTS[provider].spam_folder]
    assert [f.name for f in spam_folders(folders)] == junk


def test_a_user_added_while_running_can_log_in_at_once(
    dovecot_mailboxes: DovecotMailboxes,  # noqa: F811
) -> None:
    address = f"late{next(_tokens)}@others.example"
    dovecot_mailboxes.store.ensure(address, "others")
    dovecot_mailboxes.server.add_user(address, "Late-Pass-55")
    tok = token()
    dovecot_mailboxes.store.deliver(address, "others", "spam", message(tok))
    port = dovecot_mailboxes.server.port
    with ImapReader("127.0.0.1", port, address, "Late-Pass-55", tls="none") as imap:
        found = imap.find(tok)
    assert found is not None and (found.placement, found.folder) == ("spam", "Junk")


# -- errors ------------------------------------------------------------------------------


def test_a_wrong_password_is_a_mailbox_error_without_the_password(
    dovecot_mailboxes: DovecotMailboxes,  # noqa: F811
) -> None:
    seed = dovecot_mailboxes.seeds["yahoo"]
    wrong = "Wrong-Secret-Zq81"
    port = dovecot_mailboxes.server.port
    reader = ImapReader("127.0.0.1", port, seed.address, wrong, tls="none", timeout=5)
    with pytest.raises(MailboxError) as caught:
        reader.find(token())
    assert not isinstance(caught.value, MailboxUnreachable)
    text = str(caught.value)
    assert wrong not in text and "\n" not in text
    assert "login failed" in text and "AUTHENTICATIONFAILED" in text
    assert wrong not in repr(reader)


def test_a_closed_port_is_unreachable() -> None:
    port = free_port()
    with pytest.raises(MailboxUnreachable) as caught:
        ImapReader("127.0.0.1", port, "u@example.com", "Pw-Closed-1", tls="none").find("abc")
    assert "Pw-Closed-1" not in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


@pytest.mark.parametrize("host", ["192.0.2.7", "imap.example.com", "::ffff:192.0.2.7"])
def test_plain_imap_off_the_machine_is_refused(host: str) -> None:
    with pytest.raises(MailboxError, match="loopback"):
        ImapReader(host, 143, "u@example.com", "Pw-Plain-2", tls="none")


def test_loopback_hosts_may_use_plain_imap() -> None:
    for host in ("127.0.0.1", "127.3.4.5", "::1", "localhost"):
        ImapReader(host, 143, "u@example.com", "pw", tls="none").close()


def test_unknown_auth_and_tls_are_refused() -> None:
    with pytest.raises(MailboxError):
        ImapReader("127.0.0.1", 143, "u", "p", auth="cram")
    with pytest.raises(MailboxError):
        ImapReader("127.0.0.1", 143, "u", "p", tls="maybe")


@pytest.mark.parametrize("bad", ["", "a b", 'x"y', "tok\r\nA1 LOGOUT", "ünï"])
def test_a_token_that_could_inject_imap_is_refused(bad: str, tmp_path: Path) -> None:
    store = MaildirStore(tmp_path)
    store.ensure("a@b.example", "gmail")
    with pytest.raises(MailboxError):
        MaildirReader(store.maildir("a@b.example")).find(bad)


def test_a_missing_maildir_is_a_mailbox_error(tmp_path: Path) -> None:
    with pytest.raises(MailboxError, match="not a Maildir"):
        MaildirReader(tmp_path / "nothing").find("abc")


# -- the private Dovecot -----------------------------------------------------------------


def test_dovecot_keeps_passwords_out_of_its_files_and_repr(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail")
    store.ensure("a@gmail.example", "gmail")
    with dovecot_for(store.root, {"a@gmail.example": "Never-Shown-31"}) as server:
        files = [p for p in server.base_dir.rglob("*") if p.is_file()]
        assert all(b"Never-Shown-31" not in p.read_bytes() for p in files)
        entry = server.passwd_dir / "a@gmail.example"
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
        assert "Never-Shown-31" not in repr(server)


def test_render_config_listens_only_on_the_port_asked() -> None:
    config = render_config(
        Path("/b"), Path("/m"), Path("/b/p"), ["127.0.0.9", "::1"], 14999, as_root=True
    )
    assert "port = 14999" in config and "address = 127.0.0.9 [::1]" in config
    assert "inet_listener imaps {\n    port = 0" in config
    assert "protocols = imap\n" in config and "ssl = no\n" in config
    for name in ("[Gmail]/Spam", "Bulk", "Junk"):
        assert f'mailbox "{name}" {{\n    special_use = \\Junk\n    auto = no' in config


def test_a_long_base_dir_is_refused_before_starting(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="too long"):
        Dovecot(tmp_path / ("x" * 100), tmp_path, {})


# -- the lab's Maildir store -------------------------------------------------------------


def test_ensure_lays_out_the_provider_folders(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path)
    home = store.ensure("Alice@Gmail.Example", "gmail")
    assert home == tmp_path / "gmail.example" / "alice"
    maildir = store.maildir("alice@gmail.example")
    for sub in ("cur", "new", "tmp"):
        assert (maildir / sub).is_dir() and (maildir / ".[Gmail].Spam" / sub).is_dir()
    assert (maildir / ".[Gmail].Spam" / "maildirfolder").exists()
    assert (maildir / "dovecot-keywords").read_text() == (
        "0 CATEGORY_PROMOTIONS\n1 CATEGORY_SOCIAL\n2 CATEGORY_UPDATES\n3 CATEGORY_FORUMS\n"
    )
    assert store.ensure("alice@gmail.example", "gmail") == home  # idempotent
    store.ensure("bob@yahoo.example", "yahoo")
    assert (store.maildir("bob@yahoo.example") / ".Bulk" / "cur").is_dir()
    assert store.users() == ["alice@gmail.example", "bob@yahoo.example"]
    assert stat.S_IMODE(maildir.stat().st_mode) == 0o770


def test_every_layout_spam_folder_is_a_known_spam_name() -> None:
    assert {layout.spam_folder for layout in LAYOUTS.values()} <= set(SPAM_FOLDER_NAMES)
    assert folder_dir_name("[Gmail]/Spam") == ".[Gmail].Spam"
    assert folder_dir_name("Entwürfe") == ".Entw&APw-rfe"


def test_deliver_files_promotions_with_its_keyword_letter(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path)
    promo = store.deliver("a@g.example", "gmail", "promotions", b"Subject: x\n\nx\n")
    assert promo.parent.name == "cur" and promo.name.endswith(":2,a")
    forum = store.deliver("a@g.example", "gmail", "inbox", b"S: x\n\nx\n", category="forums")
    assert forum.name.endswith(":2,d")
    plain = store.deliver("a@y.example", "yahoo", "promotions", b"Subject: x\n\nx\n")
    assert plain.parent.name == "new" and ":2," not in plain.name
    assert stat.S_IMODE(plain.stat().st_mode) == 0o640
    assert plain.name.endswith(",S=14")  # the size hint: len(b"Subject: x\n\nx\n")
    with pytest.raises(ValueError):
        store.deliver("a@g.example", "gmail", "trash", b"x")
    with pytest.raises(ValueError):
        store.deliver("../etc@g.example", "gmail", "inbox", b"x")


def test_deliveries_from_many_threads_get_distinct_files(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path)
    paths: list[Path] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(40):
            path = store.deliver(
                f"u{i % 3}@g.example", "gmail", "inbox", f"N: {n}-{i}\n\n".encode()
            )
            with lock:
                paths.append(path)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 240 and all(p.exists() for p in paths)
    assert not [p for i in range(3) for p in (store.maildir(f"u{i}@g.example") / "tmp").iterdir()]


# -- pure parsing ------------------------------------------------------------------------


def test_placement_of() -> None:
    assert placement_of("INBOX") == ("inbox", None)
    assert placement_of("INBOX", (), ["CATEGORY_PROMOTIONS"]) == ("promotions", "promotions")
    assert placement_of("INBOX", (), ["$Seen", "category_social"]) == ("inbox", "social")
    assert placement_of("Courrier indésirable", ["\\HasNoChildren", "\\Junk"]) == ("spam", None)
    assert placement_of("bulk mail") == ("spam", None)
    assert placement_of("[Gmail]/Spam", (), ["CATEGORY_PROMOTIONS"]) == ("spam", None)


def test_modified_utf7_round_trips() -> None:
    for plain, wire in [
        ("Entwürfe", "Entw&APw-rfe"),
        ("R&D", "R&-D"),
        ("日本語", "&ZeVnLIqe-"),
        ("[Gmail]/Spam", "[Gmail]/Spam"),
    ]:
        assert encode_mutf7(plain) == wire
        assert decode_mutf7(wire) == plain
    assert quote('a"b\\c') == '"a\\"b\\\\c"'


def test_parse_list_reads_attributes_names_and_literals() -> None:
    folders = parse_list(
        [
            b'(\\HasNoChildren) "/" INBOX',
            b'(\\HasNoChildren \\Junk) "/" "[Gmail]/Spam"',
            b'(\\Noselect \\HasChildren) "/" "[Gmail]"',
            (b'(\\HasNoChildren) "/" {11}', b"Junk E-mail"),
            b'(\\HasNoChildren) "." "Courrier &AOk-l\\"x"',
            b"(\\HasNoChildren) NIL Flat",
            None,
        ]
    )
    assert folders[0] == ListedFolder("INBOX", frozenset({"\\HasNoChildren"}), "/")
    assert folders[1].name == "[Gmail]/Spam" and "\\Junk" in folders[1].attributes
    assert folders[3].name == "Junk E-mail"
    assert folders[4].name == 'Courrier él"x' and folders[4].delimiter == "."
    assert folders[5].delimiter is None
    assert [f.name for f in spam_folders(folders)] == ["[Gmail]/Spam"]
    # no \Junk anywhere: the known names, most specific first
    plain = parse_list([b'() "/" "Junk E-mail"', b'() "/" Bulk', b'() "/" INBOX'])
    assert [f.name for f in spam_folders(plain)] == ["Junk E-mail", "Bulk"]


def test_parse_search() -> None:
    assert parse_search([b"3 17 205"]) == [3, 17, 205]
    assert parse_search([b""]) == parse_search([None]) == []


def test_parse_fetch_reads_items_on_both_sides_of_the_literal() -> None:
    header = b"Subject: x\r\nX-Sokures-Seed: abc\r\n\r\n"
    before = parse_fetch(
        [
            (
                b"7 (UID 42 FLAGS (\\Seen CATEGORY_PROMOTIONS) "
                b'INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[HEADER] {34}',
                header,
            ),
            b")",
        ]
    )
    assert before is not None
    assert (before.uid, before.flags, before.header) == (
        42,
        ("\\Seen", "CATEGORY_PROMOTIONS"),
        header,
    )
    assert before.internaldate == calendar.timegm((1996, 7, 17, 9, 44, 25, 0, 0, 0))
    after = parse_fetch(
        [
            (b"7 (BODY[HEADER] {34}", header),
            b' UID 42 FLAGS () INTERNALDATE " 1-Feb-2024 00:00:00 +0100")',
        ]
    )
    assert after is not None and after.uid == 42 and after.flags == ()
    assert after.internaldate == calendar.timegm((2024, 1, 31, 23, 0, 0, 0, 0, 0))
    assert parse_fetch([None]) is None


def test_parse_flags_and_internaldate_edge_cases() -> None:
    assert parse_flags(b"1 (FLAGS (\\Recent $Forwarded))") == ("\\Recent", "$Forwarded")
    assert parse_flags(b"1 (UID 3)") == ()
    assert parse_internaldate(b'INTERNALDATE "31-Foo-2024 00:00:00 +0000"') is None


def test_gmail_category_from_x_gm_raw_answers() -> None:
    # UID SEARCH UID 42 X-GM-RAW "category:<c>" answers, as imaplib returns them
    answers = {"promotions": [b""], "social": [b"42"], "updates": [b"42"]}
    assert gmail_category(42, answers) == "social"  # checked in CATEGORIES order
    assert gmail_category(42, {"promotions": [None]}) is None
    assert gmail_category(7, {"promotions": [b"42"]}) is None


def test_xoauth2_response_follows_googles_format() -> None:
    assert xoauth2_response("me@gmail.com", "ya29.T") == (
        b"user=me@gmail.com\x01auth=Bearer ya29.T\x01\x01"
    )


def test_auth_results_of_unfolds_and_keeps_order() -> None:
    header = (
        b"Authentication-Results: mx.google.com;\r\n       dkim=pass header.i=@a.example\r\n"
        b"Received: by x\r\nAuthentication-Results: second.example; spf=fail\r\n\r\n"
    )
    assert auth_results_of(header) == (
        "mx.google.com; dkim=pass header.i=@a.example",
        "second.example; spf=fail",
    )
    assert auth_results_of(b"Subject: none\r\n\r\n") == ()


def test_found_is_frozen() -> None:
    found = Found("inbox", "INBOX", None, None, (), b"")
    with pytest.raises(AttributeError):
        found.placement = "spam"  # type: ignore[misc]
