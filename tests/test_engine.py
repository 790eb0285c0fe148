"""The sending engine end to end: a real DNS server process, aiosmtpd receivers on
loopback scripted per recipient, the store on disk. Nothing of the project is patched."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable
from pathlib import Path

import dkim as dkimpy
import pytest

from deliver.tokens import TokenSigner, load_token_key
from tests.engine_lab import HOSTS, EngineLab, lab_zone
from tests.servers.smtp_receiver import Behaviour, ReceiverFarm, by_local_part


@pytest.fixture
def dns(dns_server: Callable[..., object]) -> object:
    return dns_server(lab_zone())


@pytest.fixture
def farm(receivers: Callable[..., ReceiverFarm]) -> ReceiverFarm:
    return receivers(list(HOSTS.values()), tls=True)


@pytest.fixture
def lab(tmp_path: Path, dns: object, farm: ReceiverFarm) -> EngineLab:
    return EngineLab(
        tmp_path, f"sqlite:///{tmp_path / 'sokures.db'}", nameserver=dns.nameserver, port=farm.port
    )  # type: ignore[attr-defined]


def test_direct_delivery_signs_tls_and_records_every_attempt(
    lab: EngineLab, farm: ReceiverFarm
) -> None:
    rows = [{"email": f"ok-{i}@mx.lab.test", "name": f"Ok {i}", "plan": "gold"} for i in range(20)]
    rows += [{"email": f"ok-{i}@implicit.lab.test"} for i in range(5)]  # no MX: RFC 5321 §5.1
    lab.import_contacts(rows)
    cid = lab.campaign("direct")
    lab.send("direct")

    assert lab.status("direct")["states"]["delivered"] == 25
    assert len(farm.journal.accepted) == 25
    record = lab.dkim_record()
    tokens = TokenSigner(load_token_key(lab.settings().sender.token_key_file))
    by_rcpt = {a.rcpt: a for a in farm.journal.accepted}
    for rcpt, row in lab.messages(cid).items():
        got = by_rcpt[rcpt]
        assert dkimpy.verify(got.data, dnsfunc=lambda name, timeout=5: record)
        assert tokens.parse_verp(got.mail_from.split("@")[0]) == row["id"]
        msg = email.message_from_bytes(got.data, policy=email.policy.default)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "<https://example.com/unsubscribe/" in msg["List-Unsubscribe"]
        assert "mailto:unsubscribe+" in msg["List-Unsubscribe"]
        assert msg["Feedback-ID"] and msg["Message-ID"].endswith("@example.com>")
        host = "mx1.lab.test" if "@mx." in rcpt else "implicit.lab.test"
        assert got.server == HOSTS[host]
        (event,) = lab.events(rcpt)
        assert (event["mx_host"], event["mx_address"], event["code"]) == (host, HOSTS[host], 250)
        assert event["tls"] is True and event["outcome"] == "delivered"
    assert "gold plan" in by_rcpt["ok-1@mx.lab.test"].data.decode()


def test_null_mx_and_missing_hosts_bounce_without_a_connection(
    lab: EngineLab, farm: ReceiverFarm
) -> None:
    lab.import_contacts(["a@nullmx.lab.test", "b@nxdomain.lab.test", "c@noaddr.lab.test"])
    cid = lab.campaign("nowhere")
    lab.send("nowhere")
    msgs = lab.messages(cid)
    assert msgs["a@nullmx.lab.test"]["state"] == "bounced"
    assert msgs["a@nullmx.lab.test"]["last_code"] == 556  # RFC 7505
    assert msgs["a@nullmx.lab.test"]["reason"] == "notaccept"
    assert msgs["b@nxdomain.lab.test"]["reason"] == "hostunknown"
    assert msgs["c@noaddr.lab.test"]["reason"] == "hostunknown"
    assert farm.journal.attempts == []
    assert {"a@nullmx.lab.test", "b@nxdomain.lab.test"} <= lab.suppressed()


def test_dns_failure_defers_instead_of_bouncing(lab: EngineLab) -> None:
    lab.import_contacts(["a@servfail.lab.test"])
    cid = lab.campaign("dnsfail")
    lab.send("dnsfail", **{"engine.linger": 0.0})
    msg = lab.messages(cid)["a@servfail.lab.test"]
    assert msg["state"] == "deferred" and msg["attempts"] == 1
    assert msg["last_enhanced"] == "4.4.3"


def test_unknown_user_bounces_once_and_is_suppressed_for_later_campaigns(
    lab: EngineLab, farm: ReceiverFarm
) -> None:
    lab.import_contacts(["unknown-1@mx.lab.test", "ok-1@mx.lab.test", "reject-1@mx.lab.test"])
    cid = lab.campaign("first")
    lab.send("first")
    msgs = lab.messages(cid)
    assert msgs["unknown-1@mx.lab.test"]["state"] == "bounced"
    assert msgs["unknown-1@mx.lab.test"]["reason"] == "userunknown"
    assert msgs["reject-1@mx.lab.test"]["state"] == "bounced"  # 5xx, not a hard bounce
    assert lab.suppressed() == {"unknown-1@mx.lab.test"}
    # a 5xx is never retried: another run attempts nothing more
    lab.send("first")
    assert len(farm.journal.attempts_for("unknown-1@mx.lab.test")) == 1
    assert len(farm.journal.attempts_for("reject-1@mx.lab.test")) == 2  # rcpt ok, data 550
    second = lab.campaign("second")
    assert lab.messages(second)["unknown-1@mx.lab.test"]["state"] == "suppressed"
    assert lab.status("second")["states"]["suppressed"] == 1


def test_temporary_failures_are_retried_and_hints_honoured(
    lab: EngineLab, farm: ReceiverFarm
) -> None:
    lab.import_contacts(["drop-1@mx.lab.test", "later-1@mx.lab.test", "full-1@mx.lab.test"])
    cid = lab.campaign("retry")
    # a long schedule: only the reply's own hint ("try again in 2 seconds") allows a quick retry
    lab.send(
        "retry", **{"retry.initial": 3600.0, "retry.max_interval": 7200.0, "engine.linger": 5.0}
    )
    msgs = lab.messages(cid)
    assert msgs["later-1@mx.lab.test"]["state"] == "delivered"
    assert msgs["later-1@mx.lab.test"]["attempts"] == 2
    first, *_, last = farm.journal.attempts_for("later-1@mx.lab.test")
    assert last.at - first.at >= 1.9
    # no hint: deferred to the (long) schedule, with the reply kept
    assert msgs["drop-1@mx.lab.test"]["state"] == "deferred"
    assert "connection lost during data" in msgs["drop-1@mx.lab.test"]["last_text"]
    assert msgs["full-1@mx.lab.test"]["state"] == "deferred"
    assert msgs["full-1@mx.lab.test"]["reason"] == "mailboxfull"
    # the schedule (3600 s, jitter +-20 %), no hint: not before 2880 s from the attempt
    assert msgs["full-1@mx.lab.test"]["next_attempt_at"] - time.time() > 2800


def test_connection_lost_mid_data_is_retried_and_delivered(
    lab: EngineLab, farm: ReceiverFarm
) -> None:
    lab.import_contacts(["drop-2@mx.lab.test"])
    cid = lab.campaign("dropped")
    lab.send("dropped", **{"engine.linger": 5.0})
    msg = lab.messages(cid)["drop-2@mx.lab.test"]
    assert (msg["state"], msg["attempts"]) == ("delivered", 2)
    first, second = lab.events("drop-2@mx.lab.test")
    assert (first["outcome"], first["code"], first["reason"]) == ("deferred", None, "networkerror")
    assert second["outcome"] == "delivered"


def test_deferred_messages_expire_at_their_maximum_age(lab: EngineLab, farm: ReceiverFarm) -> None:
    lab.import_contacts(["always421-1@mx.lab.test"])
    cid = lab.campaign("expire")
    lab.send("expire", **{"retry.max_age": 3.0, "engine.linger": 5.0})
    msg = lab.messages(cid)["always421-1@mx.lab.test"]
    assert msg["state"] == "expired" and msg["reason"] == "expired"
    assert msg["last_code"] == 421 and "not accepting" in msg["last_text"]
    assert msg["attempts"] >= 2
    assert lab.events("always421-1@mx.lab.test")[-1]["outcome"] == "expired"


def test_slow_server_times_out_and_is_deferred(lab: EngineLab) -> None:
    lab.import_contacts(["slow-1@mx.lab.test"])
    cid = lab.campaign("slow")
    lab.send("slow", **{"smtp.command_timeout": 1.0, "engine.linger": 0.0})
    msg = lab.messages(cid)["slow-1@mx.lab.test"]
    assert msg["state"] == "deferred" and "timeout" in msg["last_text"]


def test_relay_down_defers_everything(lab: EngineLab) -> None:
    lab.import_contacts([f"ok-{i}@mx.lab.test" for i in range(5)])
    cid = lab.campaign("down")
    lab.send("down", relay="127.0.0.1:9", **{"engine.linger": 0.0})  # discard port: closed
    assert {m["state"] for m in lab.messages(cid).values()} == {"deferred"}
    assert lab.status("down")["states"]["bounced"] == 0


def _shaped_lab(tmp_path: Path, dns: object, farm: ReceiverFarm, shaping: str) -> EngineLab:
    """A lab of its own (store in ``tmp_path``) with the operator's shaping file ``shaping``."""
    return EngineLab(
        tmp_path,
        f"sqlite:///{tmp_path / 's.db'}",
        nameserver=dns.nameserver,  # type: ignore[attr-defined]
        port=farm.port,
        shaping=shaping,
    )


def test_gmail_rate_limit_reply_slows_the_engine_to_the_rules_rate(
    tmp_path: Path, dns: object, receivers: Callable[..., ReceiverFarm]
) -> None:
    farm = receivers([HOSTS["gmail-smtp-in.l.google.com"]])
    shaping = """
[providers.google]
max_message_rate = "1000/s"
connection_limit = 1

[[providers.google.rules]]
id = "gmail-4.7.28-rate-limited"
match = ['4\\.7\\.28']
trigger = "immediate"
action = ["set_rate"]
rate = "10/s"
duration = "10m"
"""
    lab = _shaped_lab(tmp_path, dns, farm, shaping)
    lab.import_contacts(["gmailrate-1@gmail.com"] + [f"ok-{i}@gmail.com" for i in range(40)])
    cid = lab.campaign("rate")
    lab.send("rate", **{"engine.linger": 5.0})
    assert lab.status("rate")["states"]["delivered"] == 41
    refused = next(a for a in farm.journal.attempts if a.code == 421)
    after = sorted(a.at for a in farm.journal.accepted if a.at > refused.at)
    assert len(after) >= 35
    # at most 10 per second (GCRA, no burst once the rule holds) in every one-second window
    worst = max(sum(1 for t in after if start <= t < start + 1.0) for start in after)
    assert worst <= 11, f"{worst} messages within one second after the 421"
    assert after[-1] - after[0] >= (len(after) - 1) / 10 * 0.9
    state = lab.rule_state()[("google", "gmail-4.7.28-rate-limited")]
    assert state is not None and state > time.time()
    assert lab.messages(cid)["gmailrate-1@gmail.com"]["attempts"] == 2


def test_yahoo_tss04_suspends_the_provider_for_every_worker(
    tmp_path: Path, dns: object, receivers: Callable[..., ReceiverFarm]
) -> None:
    farm = receivers([HOSTS["mta5.am0.yahoodns.net"]])
    lab = _shaped_lab(tmp_path, dns, farm, "[providers.yahoo]\nconnection_limit = 1\n")
    lab.import_contacts(["tss04-1@yahoo.com"] + [f"ok-{i}@yahoo.com" for i in range(20)])
    cid = lab.campaign("yahoo")
    lab.send("yahoo", **{"engine.linger": 2.0})
    attempted = {a.rcpt for a in farm.journal.attempts}
    assert "tss04-1@yahoo.com" in attempted
    assert lab.status("yahoo")["states"]["queued"] >= 19 - len(attempted)
    until = lab.rule_state()[("yahoo", "yahoo-tss04")]
    assert until is not None and until > time.time() + 3600
    held = [m for m in lab.messages(cid).values() if m["state"] == "queued"]
    assert held and all(m["attempts"] == 0 and m["next_attempt_at"] >= until - 1 for m in held)
    # the suspension lives in the store: another run (any worker) sends nothing to Yahoo
    before = len(farm.journal.attempts)
    lab.send("yahoo", **{"engine.linger": 0.0})
    assert len(farm.journal.attempts) == before


def test_two_worker_processes_share_the_queue_without_duplicates(
    tmp_path: Path, receivers: Callable[..., ReceiverFarm]
) -> None:
    farm = receivers(["127.0.0.1"])
    lab = EngineLab(tmp_path, f"sqlite:///{tmp_path / 's.db'}")
    lab.import_contacts([f"ok-{i}@dest{i % 3}.test" for i in range(300)])
    lab.campaign("pair")
    summary = lab.send("pair", relay=farm.relay, workers=2)
    assert not summary.worker_errors
    delivered = farm.journal.delivered_to()
    assert len(delivered) == len(set(delivered)) == 300
    assert lab.status("pair")["states"]["delivered"] == 300


@pytest.mark.postgres
def test_workers_on_postgresql(
    tmp_path: Path, postgres_url: str, receivers: Callable[..., ReceiverFarm]
) -> None:
    farm = receivers(["127.0.0.1"])
    lab = EngineLab(tmp_path, postgres_url)
    lab.import_contacts([f"ok-{i}@dest{i % 3}.test" for i in range(300)] + ["unknown-1@dest0.test"])
    lab.campaign("pg")
    summary = lab.send("pg", relay=farm.relay, workers=2)
    assert not summary.worker_errors
    delivered = farm.journal.delivered_to()
    assert len(delivered) == len(set(delivered)) == 300
    states = lab.status("pg")["states"]
    assert (states["delivered"], states["bounced"]) == (300, 1)
    assert lab.suppressed() == {"unknown-1@dest0.test"}


def test_header_injection_through_a_custom_field_is_refused_per_message(
    lab: EngineLab, farm: ReceiverFarm
) -> None:
    lab.import_contacts(
        [
            {"email": "ok-1@mx.lab.test", "plan": "gold"},
            {"email": "ok-2@mx.lab.test", "plan": "x\r\nBcc: victim@example.org"},
        ]
    )
    cid = lab.campaign("inject", subject="Your {{ contact.plan }} plan")
    lab.send("inject")
    msgs = lab.messages(cid)
    assert msgs["ok-1@mx.lab.test"]["state"] == "delivered"
    assert msgs["ok-2@mx.lab.test"]["state"] == "bounced"
    assert "line break" in msgs["ok-2@mx.lab.test"]["last_text"]
    assert farm.journal.delivered_to() == ["ok-1@mx.lab.test"]


def test_receiver_script_defaults() -> None:
    assert by_local_part("ok@x", 1) == Behaviour()
    assert by_local_part("drop@x", 2) == Behaviour()


def test_a_slow_providers_backlog_does_not_hold_back_the_others(
    tmp_path: Path, dns: object, receivers: Callable[..., ReceiverFarm]
) -> None:
    """Gmail paced at 20/s with 300 messages queued first, Yahoo unpaced: no lane may fill
    the whole in-flight window, so Yahoo's mail goes out at once instead of after Gmail's
    backlog (15 s)."""
    farm = receivers([HOSTS["gmail-smtp-in.l.google.com"], HOSTS["mta5.am0.yahoodns.net"]])
    shaping = '[providers.google]\nmax_message_rate = "20/s"\n'
    lab = _shaped_lab(tmp_path, dns, farm, shaping)
    # Gmail's first: the claim order (ids) puts its whole backlog ahead of Yahoo's
    lab.import_contacts([f"g-{i}@gmail.com" for i in range(300)]
                        + [f"y-{i}@yahoo.com" for i in range(30)])  # fmt: skip
    lab.campaign("mixed")
    started = time.time()
    lab.send("mixed", **{"engine.claim_batch": 40, "engine.linger": 1.0})
    assert lab.status("mixed")["states"]["delivered"] == 330
    yahoo = sorted(a.at for a in farm.journal.accepted if a.rcpt.endswith("@yahoo.com"))
    gmail = sorted(a.at for a in farm.journal.accepted if a.rcpt.endswith("@gmail.com"))
    assert gmail[-1] - started > 10  # the pace held
    assert yahoo[-1] - started < 5, f"Yahoo waited {yahoo[-1] - started:.1f} s behind Gmail"
