"""The lab providers' decisions, tested against each rulebook over real SMTP.

A lab world (a DNS server process, the four receivers on 127.0.0.21-24) serves the sender
domain set up by ``init_domain`` (its records published from ``sokures.toml`` as the lab
does) and a few other domains; messages go in with smtplib, and what each provider
answered and where it filed each copy is read back from its SMTP replies, its journal and
its Maildirs.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import smtplib
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from deliver.dkim import DkimSigner, parse_message
from deliver.domain_setup import init_domain
from deliver.settings import load_settings
from deliver.units import parse_rate
from lab.content import score
from lab.providers import PROVIDERS, LabProvider, provider_for, with_rulebooks
from lab.receiver import LabReceiver, read_journal
from lab.world import LabOptions, LabWorld
from lab.zones import Record
from probes.rulebook import load_rulebook
from tests.servers.ports import free_port

DOMAIN = "shop.example"
OTHERS = [
    ("reject.example", Record("TXT", "v=spf1 -all")),
    ("_dmarc.reject.example", Record("TXT", "v=DMARC1; p=reject")),
    ("quarantine.example", Record("TXT", "v=spf1 -all")),
    ("_dmarc.quarantine.example", Record("TXT", "v=DMARC1; p=quarantine")),
    ("nodmarc.example", Record("TXT", "v=spf1 -all")),
    ("monitor.example", Record("TXT", "v=spf1 -all")),
    ("_dmarc.monitor.example", Record("TXT", "v=DMARC1; p=none")),
]


class Sender:
    def __init__(self, root: Path) -> None:
        config = root / "sokures.toml"
        init_domain(DOMAIN, config_path=config, rsa_selector="s1", ed25519_selector="s2",
                    ips=("127.0.0.1",))  # fmt: skip
        self.config = config
        self.settings = load_settings(config, env={})
        key = self.settings.dkim_keys[0]
        self.signer = DkimSigner.from_file(DOMAIN, key.selector, key.key_file, key.algorithm)
        self.count = 0

    def message(self, *, sender: str = f"news@{DOMAIN}", subject: str = "Our November news",
                body: str = "Hello, here is what is new at the shop this month.",
                bulk: bool = True, sign: bool = True,
                seed: str | None = None) -> bytes:  # fmt: skip
        self.count += 1
        lines = [f"From: Shop <{sender}>", "To: someone@example.net", f"Subject: {subject}",
                 f"Date: {email.utils.formatdate()}",
                 f"Message-ID: <m{self.count}.{time.time_ns()}@{DOMAIN}>", "MIME-Version: 1.0",
                 "Content-Type: text/plain; charset=utf-8"]  # fmt: skip
        if bulk:
            lines += [f"List-Unsubscribe: <https://{DOMAIN}/u/t{self.count}>, "
                      f"<mailto:unsubscribe@{DOMAIN}>",
                      "List-Unsubscribe-Post: List-Unsubscribe=One-Click"]  # fmt: skip
        if seed:
            lines.append(f"X-Sokures-Seed: {seed}")
        raw = ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()
        if not sign:
            return raw
        headers, content = parse_message(raw)
        return self.signer.sign(headers, content, int(time.time())) + raw


_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


def send(address: str, port: int, rcpt: str, raw: bytes,
         mail_from: str = f"bounce@{DOMAIN}", tls: bool = True) -> tuple[int, str]:  # fmt: skip
    """The receiver's answer to the message: (code, text) of RCPT or DATA."""
    with smtplib.SMTP(address, port, local_hostname=f"mail.{DOMAIN}", timeout=20) as smtp:
        if tls:
            smtp.starttls(context=_UNVERIFIED)  # opportunistic, as MTAs do (RFC 7435)
        try:
            smtp.sendmail(mail_from, [rcpt], raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients[rcpt]
            return code, text.decode()
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode()
        except smtplib.SMTPServerDisconnected:
            return 421, "disconnected"
    return 250, "accepted"


def _world(root: Path, providers: tuple[LabProvider, ...]) -> Iterator[tuple[LabWorld, Sender]]:
    sender = Sender(root)
    options = LabOptions(directory=root / "lab", providers=providers, imap=False, sms=False,
                         config=sender.config, bounce_delay=0.2)  # fmt: skip
    world = LabWorld(options)
    world.extra_records.extend(OTHERS)
    with world:
        yield world, sender


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabWorld, Sender]]:
    yield from _world(tmp_path_factory.mktemp("lab"), PROVIDERS)


@pytest.fixture(scope="module")
def lab_2024(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabWorld, Sender]]:
    """The same world with Gmail's February 2024 rulebook (temporary failures)."""
    providers = with_rulebooks({"gmail": "gmail@2024-02"})
    yield from _world(tmp_path_factory.mktemp("lab2024"), providers)


def _send(lab: tuple[LabWorld, Sender], provider: str, rcpt_local: str, raw: bytes,
          mail_from: str = f"bounce@{DOMAIN}", tls: bool = True) -> tuple[int, str]:  # fmt: skip
    world, _ = lab
    p = provider_for(provider, world.providers)
    return send(p.address, world.smtp_port, f"{rcpt_local}@{p.domains[0]}", raw, mail_from, tls)


def _entry(world: LabWorld, rcpt: str) -> dict[str, object]:
    entries = [e for e in read_journal(world.directory / "deliveries.jsonl") if e["rcpt"] == rcpt]
    assert entries, f"nothing journaled for {rcpt}"
    return entries[-1]


def _where(lab: tuple[LabWorld, Sender], provider: str, local: str) -> object:
    world, _ = lab
    rcpt = f"{local}@{provider_for(provider, world.providers).domains[0]}"
    return _entry(world, rcpt)["placement"]


# --- authenticated mail lands --------------------------------------------------------------


@pytest.mark.parametrize(("provider", "placement"), [
    ("gmail", "promotions"), ("yahoo", "inbox"), ("outlook", "inbox"),
    ("others", "inbox")])  # fmt: skip
def test_authenticated_bulk_mail_is_accepted(lab, provider, placement):
    _, sender = lab
    local = f"reader.auth.{provider}"
    assert _send(lab, provider, local, sender.message())[0] == 250
    assert _where(lab, provider, local) == placement


@pytest.mark.parametrize(("world", "code", "enhanced"), [
    ("lab", 550, "5.7.29"), ("lab_2024", 421, "4.7.29")])  # fmt: skip
def test_gmail_refuses_mail_sent_without_tls(world, code, enhanced, request):
    lab = request.getfixturevalue(world)
    _, sender = lab
    got = _send(lab, "gmail", "reader.cleartext", sender.message(), tls=False)
    assert got[0] == code and got[1].startswith(enhanced + " ")
    # Yahoo's and Outlook's rulebooks do not require TLS
    assert _send(lab, "yahoo", "reader.cleartext", sender.message(), tls=False)[0] == 250


def test_gmail_personal_mail_goes_to_the_primary_inbox(lab):
    _, sender = lab
    assert _send(lab, "gmail", "reader.personal", sender.message(bulk=False))[0] == 250
    assert _where(lab, "gmail", "reader.personal") == "inbox"


def test_the_copy_carries_the_receivers_authentication_results(lab):
    world, sender = lab
    _send(lab, "yahoo", "reader.stamped", sender.message())
    files = list(world.mail.maildir("reader.stamped@yahoo.com").glob("new/*"))
    assert len(files) == 1
    copy = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    results = copy["Authentication-Results"]
    assert results.startswith("mta5.am0.yahoodns.net;")
    assert "dkim=pass header.i=@shop.example" in results
    assert "spf=pass" in results and "dmarc=pass" in results


# --- unauthenticated and misaligned mail: each rulebook's answer ---------------------------


@pytest.mark.parametrize(("provider", "code", "enhanced"), [
    ("gmail", 550, "5.7.26"),   # gmail@2025-11 auth.spf_or_dkim
    ("yahoo", 550, "5.7.9"),    # yahoo@2024-02 auth.spf_or_dkim
    ("outlook", 550, "5.7.515"),  # outlook@2025-05 auth.spf (bulk)
])  # fmt: skip
def test_unauthenticated_bulk_mail_gets_the_providers_reply(lab, provider, code, enhanced):
    _, sender = lab
    raw = sender.message(sender="news@nodmarc.example", sign=False)
    got = _send(lab, provider, "reader.unauth", raw, mail_from="bounce@nodmarc.example")
    assert got[0] == code
    assert got[1].startswith(enhanced + " ")
    rulebook = load_rulebook(provider_for(provider).rulebook or "")
    replies = {r.reply.enhanced for r in rulebook.requirements if r.reply}
    assert enhanced in replies  # the answer comes from the rulebook's data


def test_gmail_2024_answers_the_same_message_with_a_temporary_failure(lab_2024):
    _, sender = lab_2024
    raw = sender.message(sender="news@nodmarc.example", sign=False)
    code, text = _send(lab_2024, "gmail", "reader.unauth", raw, mail_from="bounce@nodmarc.example")
    assert code == 421 and text.startswith("4.7.26 ")
    # the other providers did not change
    code, text = _send(lab_2024, "yahoo", "reader.unauth", raw, mail_from="bounce@nodmarc.example")
    assert code == 550 and text.startswith("5.7.9 ")


@pytest.mark.parametrize(("provider", "code", "enhanced"), [
    ("gmail", 550, "5.7.26"), ("yahoo", 554, "5.7.9"), ("outlook", 550, "5.7.509")])  # fmt: skip
def test_dmarc_reject_is_answered_with_the_policy_reply(lab, provider, code, enhanced):
    """A message from reject.example (p=reject), signed by shop.example: DKIM passes but
    is not aligned, SPF fails: DMARC fails and the domain asks to reject."""
    _, sender = lab
    raw = sender.message(sender="news@reject.example", bulk=False)
    got = _send(lab, provider, "reader.spoofed", raw, mail_from="bounce@reject.example")
    assert got[0] == code
    assert got[1].startswith(enhanced + " ")
    assert "reject.example" in got[1] or provider == "yahoo"


@pytest.mark.parametrize("provider", ["gmail", "yahoo", "outlook"])
def test_dmarc_quarantine_files_the_copy_as_spam(lab, provider):
    world, sender = lab
    raw = sender.message(sender="news@quarantine.example", bulk=False)
    got = _send(lab, provider, "reader.quarantined", raw, mail_from="bounce@quarantine.example")
    assert got[0] == 250
    rcpt = f"reader.quarantined@{provider_for(provider).domains[0]}"
    entry = _entry(world, rcpt)
    assert entry["placement"] == "spam"
    assert "dmarc_policy.quarantine" in entry["rules"]  # type: ignore[operator]


@pytest.mark.parametrize("provider", ["gmail", "yahoo", "outlook", "others"])
def test_personal_mail_failing_dmarc_under_p_none_is_filed_as_spam(lab, provider):
    """From monitor.example (p=none) but signed by shop.example: no rule refuses it, the
    DMARC failure still sends it to spam."""
    world, sender = lab
    raw = sender.message(sender="news@monitor.example", bulk=False)
    got = _send(lab, provider, "reader.monitored", raw, mail_from="bounce@monitor.example")
    assert got[0] == 250
    entry = _entry(world, f"reader.monitored@{provider_for(provider).domains[0]}")
    assert entry["placement"] == "spam" and entry["rules"] == ["authentication"]


def test_personal_mail_signed_by_its_own_domain_lands_in_the_inbox_at_others(lab):
    """nodmarc.example has no DMARC record; the others provider has no rulebook: an
    unaligned but verified DKIM signature is enough to reach the inbox there."""
    _, sender = lab
    raw = sender.message(sender="news@nodmarc.example", bulk=False)
    assert _send(lab, "others", "reader.nodmarc", raw, mail_from="b@nodmarc.example")[0] == 250
    assert _where(lab, "others", "reader.nodmarc") == "inbox"


def test_unsigned_mail_failing_spf_is_spam_where_no_rule_refuses_it(lab):
    _, sender = lab
    raw = sender.message(sender="news@nodmarc.example", bulk=False, sign=False)
    assert _send(lab, "others", "reader.nothing", raw, mail_from="b@nodmarc.example")[0] == 250
    assert _where(lab, "others", "reader.nothing") == "spam"


def test_message_without_message_id_is_refused_as_rfc5322(lab):
    _, sender = lab
    raw = sender.message(bulk=False, sign=False).replace(b"Message-ID:", b"X-Old-ID:")
    code, text = _send(lab, "gmail", "reader.format", raw)
    assert (code, text.split()[0]) == (550, "5.7.1")


# --- content, mailbox conventions ----------------------------------------------------------

SPAMMY = dict(subject="FREE MONEY!!! ACT NOW, YOU ARE A WINNER",
              body="You have won the lottery jackpot. Claim your prize: http://192.0.2.7/x "
                   "100% guaranteed, risk-free. Act now!!!")  # fmt: skip


def test_content_score_files_spammy_mail_as_spam(lab):
    _, sender = lab
    assert score(sender.message(**SPAMMY)).total >= 5.0
    assert _send(lab, "outlook", "reader.spammy", sender.message(**SPAMMY))[0] == 250
    assert _where(lab, "outlook", "reader.spammy") == "spam"


def test_unknown_user_and_full_mailbox_are_refused_at_rcpt(lab):
    _, sender = lab
    code, text = _send(lab, "gmail", "nouser.x", sender.message())
    assert code == 550 and "5.1.1" in text
    code, text = _send(lab, "yahoo", "full.x", sender.message())
    assert code == 452 and "4.2.2" in text


@pytest.mark.parametrize(("local", "placement", "folder"), [
    ("junk.reader", "spam", ".Junk"), ("blackhole.reader", "dropped", None),
    ("reader.plain", "inbox", "new")])  # fmt: skip
def test_mailbox_conventions(lab, local, placement, folder):
    world, sender = lab
    assert _send(lab, "outlook", local, sender.message())[0] == 250
    assert _where(lab, "outlook", local) == placement
    maildir = world.mail.maildir(f"{local}@outlook.com")
    stored = [p.relative_to(maildir) for p in maildir.rglob("*") if p.is_file()
              and p.parent.name in ("new", "cur")]  # fmt: skip
    if folder is None:
        assert stored == []
    else:
        assert len(stored) == 1 and str(stored[0]).startswith(folder)


def test_gone_recipient_is_accepted_then_bounced_with_a_dsn(lab):
    world, sender = lab
    verp = f"bounce-abc123-x9@{DOMAIN}"
    assert _send(lab, "yahoo", "gone.reader", sender.message(), mail_from=verp)[0] == 250
    assert _where(lab, "yahoo", "gone.reader") == "bounced_later"
    box = world.mail.maildir(f"bounces@{DOMAIN}")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not list(box.glob("new/*")):
        time.sleep(0.05)
    [dsn_file] = list(box.glob("new/*"))
    dsn = email.message_from_bytes(dsn_file.read_bytes(), policy=email.policy.default)
    assert dsn["Delivered-To"] == verp and dsn["To"] == verp
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert "Final-Recipient: rfc822; gone.reader@yahoo.com" in text
    assert "Status: 5.1.1" in text and "Action: failed" in text


# --- rates: each rulebook's lab limit and throttling reply --------------------------------


@pytest.mark.parametrize("rulebook_id", ["gmail@2024-02", "gmail@2025-11", "yahoo@2024-02",
                                         "outlook@2025-05"])  # fmt: skip
def test_sending_faster_than_the_lab_limit_gets_the_throttling_reply(rulebook_id):
    rulebook = load_rulebook(rulebook_id)
    assert rulebook.limits is not None and rulebook.limits.reply is not None
    name = {"gmail": "gmail", "yahoo": "yahoo", "outlook": "outlook"}[rulebook.provider]
    provider = replace(provider_for(name), rulebook=rulebook_id, address="127.0.0.1")
    receiver = LabReceiver(provider, free_port())
    receiver.start()
    raw = b"From: a@shop.example\r\nTo: b@x\r\nSubject: s\r\nMessage-ID: <1@x>\r\n\r\nhi\r\n"
    try:
        replies = []
        with smtplib.SMTP("127.0.0.1", receiver._controller.port, timeout=10) as smtp:
            for _ in range(int(rulebook.limits.messages_per_second or 1) * 3):
                try:
                    smtp.sendmail("a@shop.example", [f"reader@{provider.domains[0]}"], raw)
                except (smtplib.SMTPDataError, smtplib.SMTPServerDisconnected) as exc:
                    replies.append(exc)
                    break
        [refused] = replies
        assert isinstance(refused, smtplib.SMTPDataError)
        expected = rulebook.limits.reply
        assert refused.smtp_code == expected.code
        text = refused.smtp_error.decode().replace("\n", " ")
        first_words = (expected.text or "").format(ip="127.0.0.1", domain="").split()[:6]
        assert " ".join(first_words) in " ".join(text.split())
        assert receiver.counters.as_dict()["throttled"] == 1
    finally:
        receiver.stop()


def test_a_lab_rate_given_overrides_the_rulebook():
    provider = replace(provider_for("gmail"), address="127.0.0.1", lab_rate=parse_rate("2/s"))
    receiver = LabReceiver(provider, free_port())
    assert receiver.rate == 2.0
    assert receiver.throttle_reply("127.0.0.9").startswith("421-4.7.28 ")
