"""The lab SMS gateway over real HTTP on loopback, with a real status-callback receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from deliver.errors import ConfigError
from lab.sms_gateway import SmsGateway, count_segments, message_counts
from tests.servers.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "AC" + "1" * 32
TOKEN = "lab-token-6f1c"
OTHER_ACCOUNT = "AC" + "2" * 32
OTHER_TOKEN = "other-token-93ab"
SENDER = "+15005550006"
STEP = 0.02
#: plain HTTP on loopback: no proxies, and no TLS context (building one costs 0.1 s a client)
PLAIN: dict[str, Any] = {"trust_env": False, "verify": False}


class CallbackReceiver:
    """A real HTTP server on loopback recording each status callback it receives."""

    def __init__(self, answer: int = 204) -> None:
        self.received: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                with receiver._lock:
                    receiver.received.append(
                        (self.path, dict(self.headers), {k: v[0] for k, v in form.items()})
                    )
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def forms(self, sid: str) -> list[dict[str, str]]:
        with self._lock:
            return [form for _, _, form in self.received if form.get("MessageSid") == sid]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "sms-outbox.jsonl"


@pytest.fixture
def gateway(outbox: Path) -> Iterator[SmsGateway]:
    accounts = {ACCOUNT: TOKEN, OTHER_ACCOUNT: OTHER_TOKEN}
    with SmsGateway(accounts=accounts, outbox=outbox, step_delay=STEP) as running:
        yield running


@pytest.fixture
def client(gateway: SmsGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, auth=(ACCOUNT, TOKEN), **PLAIN) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    running = CallbackReceiver()
    yield running
    running.close()


MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


def send(client: httpx.Client, **form: str) -> httpx.Response:
    data = {"To": "+33612345678", "From": SENDER, "Body": "Your parcel is on its way"}
    data.update(form)
    return client.post(MESSAGES, data={k: v for k, v in data.items() if v != "-"})


def expected_signature(url: str, form: dict[str, str], token: str) -> str:
    """Twilio's documented scheme, written out again: URL, then each name and value sorted
    by name, HMAC-SHA1 keyed by the auth token, base64."""
    data = url
    for name in sorted(form):
        data += name + form[name]
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_create_answers_a_message_resource(client: httpx.Client) -> None:
    response = send(client, Body="Hello from the lab")
    assert response.status_code == 201
    message = response.json()
    assert message["sid"].startswith("SM") and len(message["sid"]) == 34
    int(message["sid"][2:], 16)
    assert message["account_sid"] == ACCOUNT
    assert (message["to"], message["from"], message["body"]) == (
        "+33612345678", SENDER, "Hello from the lab"
    )  # fmt: skip
    assert message["status"] == "queued"
    assert (message["num_segments"], message["num_media"]) == ("1", "0")
    assert (message["direction"], message["api_version"]) == ("outbound-api", "2010-04-01")
    assert message["price"] is None and message["price_unit"] == "USD"
    assert message["error_code"] is None and message["error_message"] is None
    assert message["messaging_service_sid"] is None and message["date_sent"] is None
    created = datetime.strptime(message["date_created"], "%a, %d %b %Y %H:%M:%S %z")
    assert abs(created - datetime.now(UTC)) < timedelta(seconds=5)
    assert message["date_created"].endswith(" +0000")
    assert message["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{message['sid']}.json"
    assert message["subresource_uris"]["media"] == message["uri"].replace(".json", "/Media.json")


def test_fetch_known_and_unknown(client: httpx.Client) -> None:
    sid = send(client).json()["sid"]
    fetched = client.get(f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json")
    assert fetched.status_code == 200 and fetched.json()["sid"] == sid
    missing = client.get(f"/2010-04-01/Accounts/{ACCOUNT}/Messages/SM{'0' * 32}.json")
    assert missing.status_code == 404
    assert missing.json()["code"] == 20404 and missing.json()["status"] == 404
    # another account's message is not found either
    other = httpx.get(
        f"{client.base_url}/2010-04-01/Accounts/{OTHER_ACCOUNT}/Messages/{sid}.json",
        auth=(OTHER_ACCOUNT, OTHER_TOKEN), **PLAIN,
    )  # fmt: skip
    assert other.status_code == 404


@pytest.mark.parametrize(
    "auth",
    [None, (ACCOUNT, "wrong-token"), ("AC" + "9" * 32, TOKEN), (OTHER_ACCOUNT, OTHER_TOKEN)],
    ids=["none", "wrong-token", "unknown-account", "path-of-another-account"],
)
def test_authentication_failures(gateway: SmsGateway, auth: tuple[str, str] | None) -> None:
    response = httpx.post(
        gateway.base_url + MESSAGES, data={"To": "+33612345678", "From": SENDER, "Body": "x"},
        auth=auth, **PLAIN,
    )  # fmt: skip
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003, "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401,
    }  # fmt: skip
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert gateway.messages() == []


@pytest.mark.parametrize(
    ("form", "code", "message"),
    [
        ({"To": "-"}, 21604, "A 'To' phone number is required."),
        ({"To": "+33"}, 21211, "The 'To' number +33 is not a valid phone number."),
        ({"To": "0612345678"}, 21211, "The 'To' number 0612345678 is not a valid phone number."),
        ({"From": "-"}, 21603, "A 'From' or 'MessagingServiceSid' parameter is required"),
        ({"From": "+1-555"}, 21212, "The 'From' number +1-555 is not a valid phone number"),
        ({"From": "ABCDEFGHIJKL"}, 21212, "The 'From' number ABCDEFGHIJKL is not a valid"),
        ({"From": "+15005550007"}, 21606, "The 'From' phone number provided is not a valid"),
        ({"From": "-", "MessagingServiceSid": "MG12"}, 21701, "The Messaging Service Sid MG12"),
        ({"Body": "-"}, 21602, "Message body is required."),
        ({"Body": "x" * 1601}, 21617, "exceeds the 1600 character limit"),
        ({"To": "+15005550004"}, 21610, "Attempt to send to unsubscribed recipient"),
        ({"StatusCallback": "ftp://127.0.0.1/cb"}, 21609, "is not a valid URL"),
        ({"StatusCallback": "http://example.com/cb"}, 21609,
         "The StatusCallback URL http://example.com/cb is not a loopback URL"),
        ({"StatusCallback": "https://10.0.0.1:8443/cb"}, 21609, "is not a loopback URL"),
    ],
)  # fmt: skip
def test_validation_errors(
    client: httpx.Client, gateway: SmsGateway, form: dict[str, str], code: int, message: str
) -> None:
    response = send(client, **form)
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["status"]) == (code, 400)
    assert message in body["message"]
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert gateway.messages() == []


def test_other_senders_are_accepted(client: httpx.Client) -> None:
    assert send(client, From="Sokures").json()["from"] == "Sokures"  # alphanumeric sender ID
    assert send(client, From="72345").status_code == 201  # short code
    only_media = send(client, Body="-", MediaUrl="http://127.0.0.1/a.png").json()
    assert only_media["num_media"] == "1" and only_media["body"] == ""
    allowed = ["http://localhost:9/cb", "http://127.0.0.2/cb", "http://[::1]:9/cb"]
    for url in allowed:
        assert send(client, StatusCallback=url).status_code == 201, url


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
        ("€" * 80, 1), ("€" * 81, 2),  # extension characters take two septets
        ("a" * 152 + "€", 1), ("a" * 153 + "€" * 4, 2), ("a" * 152 + "€" * 5, 2),
        ("é" * 160, 1),  # é is in the GSM-7 default alphabet
        ("ç" * 70, 1), ("ç" * 71, 2), ("ç" * 134, 2), ("ç" * 135, 3),  # ç is not: UCS-2
        ("Привет " * 10, 1), ("😀" * 35, 1), ("😀" * 36, 2),  # emoji: a surrogate pair each
    ],
)  # fmt: skip
def test_segments(client: httpx.Client, body: str, segments: int) -> None:
    assert count_segments(body) == segments
    assert send(client, Body=body).json()["num_segments"] == str(segments)


def test_list_pages_newest_first_with_filters(client: httpx.Client) -> None:
    sids = [send(client, To=f"+3361234567{n}").json()["sid"] for n in range(5)]
    send(client, From="Sokures", To="+33612345670")
    first = client.get(MESSAGES, params={"PageSize": 2, "From": SENDER})
    assert first.status_code == 200
    page = first.json()
    assert [m["sid"] for m in page["messages"]] == sids[::-1][:2]
    assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 2, 0, 1)
    assert page["previous_page_uri"] is None
    assert page["first_page_uri"] == page["uri"]
    assert "From=%2B15005550006" in page["uri"] and "PageSize=2" in page["uri"]
    seen = [m["sid"] for m in page["messages"]]
    while page["next_page_uri"]:
        page = client.get(page["next_page_uri"]).json()
        seen += [m["sid"] for m in page["messages"]]
    assert seen == sids[::-1]
    assert (page["page"], page["start"], page["end"]) == (2, 4, 4)
    back = client.get(page["previous_page_uri"]).json()
    assert [m["sid"] for m in back["messages"]] == sids[::-1][2:4]
    by_page = client.get(MESSAGES, params={"PageSize": 2, "Page": 1, "From": SENDER}).json()
    assert [m["sid"] for m in by_page["messages"]] == sids[::-1][2:4]
    to = client.get(MESSAGES, params={"To": "+33612345670"}).json()["messages"]
    assert {m["from"] for m in to} == {SENDER, "Sokures"}
    assert client.get(MESSAGES, params={"PageSize": 0}).json()["code"] == 20001
    other = httpx.get(
        f"{client.base_url}/2010-04-01/Accounts/{OTHER_ACCOUNT}/Messages.json",
        auth=(OTHER_ACCOUNT, OTHER_TOKEN), **PLAIN,
    )  # fmt: skip
    assert other.json()["messages"] == []


def test_date_sent_filters(client: httpx.Client, gateway: SmsGateway) -> None:
    sid = send(client).json()["sid"]
    unsent = client.get(MESSAGES, params={"DateSent>": "2000-01-01"}).json()["messages"]
    assert unsent == []  # a date filter only finds messages already sent
    assert gateway.wait_settled(5)
    sent = client.get(f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json").json()["date_sent"]
    today = datetime.strptime(sent, "%a, %d %b %Y %H:%M:%S %z").date()
    tomorrow, yesterday = today + timedelta(days=1), today - timedelta(days=1)
    for params, found in [
        ({"DateSent": today.isoformat()}, True),
        ({"DateSent": yesterday.isoformat()}, False),
        ({"DateSent<": today.isoformat()}, True),
        ({"DateSent<": yesterday.isoformat()}, False),
        ({"DateSent>": tomorrow.isoformat()}, False),
        ({"DateSent>": yesterday.isoformat(), "DateSent<": tomorrow.isoformat()}, True),
    ]:
        messages = client.get(MESSAGES, params=params).json()["messages"]
        assert [m["sid"] for m in messages] == ([sid] if found else []), params
    assert client.get(MESSAGES, params={"DateSent": "yesterday"}).status_code == 400


@pytest.mark.parametrize(
    ("to", "statuses", "error"),
    [
        ("+33612341234", ["sending", "sent", "delivered"], None),
        ("+33612340003", ["sending", "sent", "undelivered"],
         (30003, "Unreachable destination handset")),
        ("+33612340005", ["sending", "sent", "undelivered"],
         (30005, "Unknown destination handset")),
        ("+33612340006", ["sending", "failed"], (30006, "Landline or unreachable carrier")),
    ],
    ids=["delivered", "undelivered-30003", "undelivered-30005", "failed-30006"],
)  # fmt: skip
def test_progression_and_signed_callbacks(
    client: httpx.Client, gateway: SmsGateway, receiver: CallbackReceiver,
    to: str, statuses: list[str], error: tuple[int, str] | None,
) -> None:  # fmt: skip
    callback = receiver.url + "/sms/status?campaign=7"
    sid = send(client, To=to, StatusCallback=callback).json()["sid"]
    assert gateway.wait_settled(5)
    final = client.get(f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json").json()
    assert final["status"] == statuses[-1]
    assert (final["error_code"], final["error_message"]) == (error or (None, None))
    assert (final["date_sent"] is None) == ("sent" not in statuses)
    forms = receiver.forms(sid)
    assert [form["MessageStatus"] for form in forms] == statuses
    for path, headers, form in receiver.received:
        assert path == "/sms/status?campaign=7"
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert headers["X-Twilio-Signature"] == expected_signature(callback, form, TOKEN)
        assert form["SmsStatus"] == form["MessageStatus"]
        assert (form["MessageSid"], form["SmsSid"], form["AccountSid"]) == (sid, sid, ACCOUNT)
        assert (form["From"], form["To"], form["ApiVersion"]) == (SENDER, to, "2010-04-01")
        final_failure = error is not None and form["MessageStatus"] == statuses[-1]
        assert form.get("ErrorCode") == (str(error[0]) if final_failure and error else None)
    assert gateway.callbacks_failed == 0


def test_messaging_service_without_from(
    client: httpx.Client, gateway: SmsGateway, receiver: CallbackReceiver
) -> None:
    service = "MG" + "ab" * 16
    created = send(client, From="-", MessagingServiceSid=service, StatusCallback=receiver.url)
    assert created.status_code == 201
    message = created.json()
    assert (message["status"], message["from"]) == ("accepted", None)
    assert message["messaging_service_sid"] == service
    assert gateway.wait_settled(5)
    forms = receiver.forms(message["sid"])
    assert [f["MessageStatus"] for f in forms] == ["queued", "sending", "sent", "delivered"]
    assert {f["MessagingServiceSid"] for f in forms} == {service}
    assert {f["From"] for f in forms} == {SENDER}


def test_failing_callbacks_are_counted(client: httpx.Client, gateway: SmsGateway) -> None:
    refusing = CallbackReceiver(answer=500)
    try:
        send(client, StatusCallback=refusing.url + "/status")
        send(client, StatusCallback=f"http://127.0.0.1:{free_port()}/nobody-listens")
        assert gateway.wait_settled(10)
    finally:
        refusing.close()
    assert gateway.callbacks_failed == 6
    assert len(refusing.received) == 3
    assert send(client).status_code == 201  # the gateway still serves


def test_outbox_lines_and_counts(client: httpx.Client, gateway: SmsGateway, outbox: Path) -> None:
    for to in ("+33612341111", "+33612342222", "+33612340003", "+33612340006"):
        send(client, To=to, StatusCallback="http://127.0.0.1:9/unused")
    assert gateway.wait_settled(10)
    lines = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 4 + 3 + 3 + 3 + 2  # created, then one line per status change
    first = {line["sid"]: line["status"] for line in reversed(lines)}
    assert set(first.values()) == {"queued"}
    assert message_counts(outbox) == {"delivered": 2, "undelivered": 1, "failed": 1}
    assert {m["status"] for m in gateway.messages()} == {"delivered", "undelivered", "failed"}
    text = outbox.read_text(encoding="utf-8")
    assert TOKEN not in text and OTHER_TOKEN not in text
    with outbox.open("a", encoding="utf-8") as stream:
        stream.write('{"sid": "SMhalf-writ')  # a line another process is writing right now
    assert sum(message_counts(outbox).values()) == 4
    assert message_counts(outbox.with_name("absent.jsonl")) == {}


def test_secrets_and_loopback_only(gateway: SmsGateway) -> None:
    assert TOKEN not in repr(gateway) and ACCOUNT in repr(gateway)
    with pytest.raises(ConfigError, match="not a loopback address"):
        SmsGateway("192.0.2.1", accounts={ACCOUNT: TOKEN})
    with pytest.raises(ConfigError, match="SID must start with AC"):
        SmsGateway(accounts={"XX1": TOKEN})


def _spawn(*arguments: str) -> subprocess.Popen[str]:
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "lab.sms_gateway", *arguments], cwd=REPO_ROOT, env=environment,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_process_ready_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    process = _spawn("--listen", "127.0.0.1", "--port", "0", "--account", f"{ACCOUNT}:{TOKEN}",
                     "--outbox", str(outbox), "--step-delay", "0.01")  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready, "no ready line within 10 s"
        line = process.stdout.readline().strip()
        assert line.startswith("ready http://127.0.0.1:")
        base_url = line.split()[1]
        response = httpx.post(
            base_url + MESSAGES, data={"To": "+33612345678", "From": SENDER, "Body": "hi"},
            auth=(ACCOUNT, TOKEN), **PLAIN,
        )  # fmt: skip
        assert response.status_code == 201
        deadline = time.monotonic() + 5
        while message_counts(outbox) != {"delivered": 1} and time.monotonic() < deadline:
            time.sleep(0.02)
        assert message_counts(outbox) == {"delivered": 1}
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
        assert process.returncode == 0
        assert TOKEN not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    "arguments",
    [
        ["--account", "ACbad"],
        ["--account", "nope:secret-value"],
        ["--account", f"{ACCOUNT}:{TOKEN}", "--listen", "192.0.2.1"],
        ["--account", f"{ACCOUNT}:{TOKEN}", "--port", "http"],
    ],
)
def test_process_bad_arguments(arguments: list[str]) -> None:
    process = _spawn(*arguments)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "secret-value" not in stderr and TOKEN not in stderr
