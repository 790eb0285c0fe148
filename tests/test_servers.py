"""The real-server fixtures themselves: a throwaway PostgreSQL and Postfix's smtp-sink."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

# The fixture modules are plugins (tests/conftest.py); importing them here before pytest
# registers them would keep pytest from rewriting their asserts.
if TYPE_CHECKING:
    from tests.servers.postgres import PostgresServer
    from tests.servers.smtp_sink import SmtpSink

# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = sa.create_engine(postgres_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_server_listens_on_loopback(postgres_server: PostgresServer) -> None:
    assert postgres_server.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert postgres_server.startup_seconds < 30


@pytest.mark.postgres
def test_select_one_through_sqlalchemy_and_psycopg(engine: Engine) -> None:
    assert engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_empty_database(engine: Engine, run: int) -> None:
    # Both runs create the same table: the second would fail if it saw the first's database.
    with engine.begin() as conn:
        name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        tables = conn.execute(
            sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        ).scalar_one()
        conn.execute(sa.text("CREATE TABLE marker (run int)"))
        conn.execute(sa.text("INSERT INTO marker VALUES (:run)"), {"run": run})
    assert name.startswith("test_")
    assert tables == 0


@pytest.mark.postgres
def test_skip_locked_skips_a_row_another_connection_holds(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE jobs (id int PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO jobs VALUES (1), (2)"))
    claim = sa.text("SELECT id FROM jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED")
    with engine.connect() as first, engine.connect() as second:
        assert first.execute(claim).scalar_one() == 1
        assert second.execute(claim).scalar_one() == 2
        assert second.execute(
            sa.text("SELECT id FROM jobs ORDER BY id FOR UPDATE SKIP LOCKED")
        ).scalars().all() == [2]


# -- smtp-sink ---------------------------------------------------------------------------------


def _message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.test"
    msg["To"] = "rcpt@example.test"
    msg["Subject"] = f"message {n}"
    # A leading dot exercises dot-stuffing (RFC 5321 4.5.2) on both ends.
    msg.set_content(f"line one of {n}\n.a line starting with a dot\n")
    return msg


def test_smtp_sink_receives_and_dumps_what_was_sent(smtp_sink: SmtpSink) -> None:
    sent = [_message(n).as_bytes(policy=SMTP) for n in range(3)]
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        for raw in sent:
            client.sendmail("sender@example.test", ["rcpt@example.test"], raw)
    assert smtp_sink.wait_for(3, timeout=10)
    assert smtp_sink.count() == 3
    # Dump order is not arrival order (see SmtpSink.messages), so compare as sorted lists.
    assert sorted(smtp_sink.messages()) == sorted(sent)


def test_smtp_sink_counts_from_zero(smtp_sink: SmtpSink) -> None:
    assert smtp_sink.count() == 0
    assert smtp_sink.messages() == []
    assert not smtp_sink.wait_for(1, timeout=0.1)


def test_sink_dump_payload_strips_envelope_and_received_header() -> None:
    from tests.servers.smtp_sink import sink_dump_payload  # a plugin by now: see the top

    dump = (
        b"X-Client-Addr: 127.0.0.1\n"
        b"X-Client-Proto: ESMTP\n"
        b"X-Helo-Args: [127.0.0.1]\n"
        b"X-Mail-Args: <a@x.test>\n"
        b"X-Rcpt-Args: <b@y.test>\n"
        b"X-Rcpt-Args: <c@y.test>\n"
        b"Received: from [127.0.0.1] ([127.0.0.1])\n"
        b"\tby smtp-sink (smtp-sink) with ESMTP id 4fa571d4;\n"
        b"\tSun, 22 Nov 2026 17:41:17 +0000 (UTC)\n"
        b"Received: from relay.example.test\n"
        b"\tby mx.example.test; Sun, 22 Nov 2026 17:41:16 +0000\n"
        b"Subject: t\n"
        b"\n"
        b"body\n"
        b"\n"
        b"\n"
    )
    assert sink_dump_payload(dump) == (
        b"Received: from relay.example.test\r\n"
        b"\tby mx.example.test; Sun, 22 Nov 2026 17:41:16 +0000\r\n"
        b"Subject: t\r\n\r\nbody\r\n\r\n"
    )
