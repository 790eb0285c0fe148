"""The lab's SMS gateway: Twilio's Programmable Messaging REST API (2010-04-01) on loopback.

It serves the Messages resource the way Twilio does, so the SMS fallback's client, written
against Twilio, runs end to end on one machine::

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json        create (form-encoded)
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json        list: To, From, DateSent,
                                                                DateSent<, DateSent>, PageSize,
                                                                Page, PageToken; newest first
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json  fetch

HTTP basic auth with AccountSid:AuthToken (401, error 20003, otherwise). Errors are Twilio's
JSON body ``{"code", "message", "more_info", "status"}`` with Twilio's codes.

The lab convention (what a real carrier decides) for the destination number:

* Twilio's test-credential magic numbers fail at creation as they do at Twilio:
  To +15005550001 (21211), +15005550002 (21612), +15005550003 (21408), +15005550004 (21610),
  +15005550009 (21614); From +15005550001 (21212), +15005550007 (21606), +15005550008 (21611).
* Otherwise the message is created ``queued`` and moves one step every ``step_delay``
  seconds, decided by the To number's last four digits (:data:`DESTINATION_OUTCOMES`):
  ``0003``/``0004``/``0005``/``0007``/``0008`` end ``undelivered`` (30003, 30004, 30005,
  30007, 30008) after ``sending`` and ``sent``; ``0006`` ends ``failed`` 30006 after
  ``sending``; anything else goes ``sending``, ``sent``, ``delivered``. With a
  MessagingServiceSid and no From, the message starts ``accepted`` (from null) and gets
  :data:`SERVICE_SENDER` when it becomes ``queued``.

Each status change of a message that has a StatusCallback is POSTed there form-encoded and
signed with X-Twilio-Signature, as Twilio does. Callbacks go to loopback URLs only: any
other StatusCallback is refused at creation (400, 21609). With ``outbox``, every status
change appends the resource as one JSON line, for other processes (``lab status``, the demo
summary); see :func:`message_counts`.

Run as a process::

    python -m lab.sms_gateway --listen 127.0.0.1 --port 0 --account SID:TOKEN [--outbox F]
                              [--step-delay S] [--allow-non-loopback]

prints ``ready http://HOST:PORT`` once listening; SIGTERM or SIGINT stops it (exit 0); bad
arguments exit 2 with one line on stderr; 1 means it could not listen.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import functools
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import json
import logging
import operator
import queue
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from deliver.errors import ConfigError

__all__ = [
    "API_VERSION", "DESTINATION_OUTCOMES", "FINAL_STATUSES", "SERVICE_SENDER", "SmsGateway",
    "count_segments", "main", "message_counts", "twilio_signature",
]  # fmt: skip

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
#: the From a message sent through a Messaging Service (without From) is given
SERVICE_SENDER = "+15005550006"
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed"})
#: last four digits of To -> (final status, Twilio error code, Twilio error message)
DESTINATION_OUTCOMES: Mapping[str, tuple[str, int, str]] = {
    "0003": ("undelivered", 30003, "Unreachable destination handset"),
    "0004": ("undelivered", 30004, "Message blocked"),
    "0005": ("undelivered", 30005, "Unknown destination handset"),
    "0006": ("failed", 30006, "Landline or unreachable carrier"),
    "0007": ("undelivered", 30007, "Message filtered"),
    "0008": ("undelivered", 30008, "Unknown error"),
}
MAX_BODY_CHARS = 1600
CALLBACK_WORKERS = 4
MAX_REQUEST_BYTES = 1 << 20
CALLBACK_TIMEOUT = 5.0
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_SHORT_CODE = re.compile(r"[0-9]{5,6}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_ACCOUNT_SID = re.compile(r"AC[0-9A-Za-z]+")
_PATH = re.compile(
    rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages(?:/(?P<sid>[^/]+))?\.json"
)
_TO_MAGIC = {
    "+15005550001": (21211, "The 'To' number {to} is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number: {to}, is not currently reachable using "
                            "the 'From' phone number: {sender} via SMS."),
    "+15005550003": (21408, "Permission to send an SMS has not been enabled for the region "
                            "indicated by the 'To' number: {to}."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number {to} is not a valid mobile number"),
}  # fmt: skip
_FROM_MAGIC = {
    "+15005550001": (21212, "The 'From' number {sender} is not a valid phone number, "
                            "shortcode, or alphanumeric sender ID."),
    "+15005550007": (21606, "The 'From' phone number provided is not a valid message-capable "
                            "Twilio phone number for this destination/account."),
    "+15005550008": (21611, "This 'From' number has exceeded the maximum number of queued "
                            "messages"),
}  # fmt: skip

# GSM 03.38: the default alphabet (one septet) and its extension table (escape + septet).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


# --- pure parts --------------------------------------------------------------------------


def count_segments(body: str) -> int:
    """SMS segments for ``body``: GSM-7 160 septets (153 per part when concatenated), else
    UCS-2 70 code units (67 per part); a character is never split across parts."""
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in body):
        units = [2 if c in _GSM7_EXTENDED else 1 for c in body]
        single, part = 160, 153
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in body]  # a surrogate pair in UTF-16
        single, part = 70, 67
    if sum(units) <= single:
        return 1
    segments, used = 1, 0
    for size in units:
        if used + size > part:
            segments, used = segments + 1, 0
        used += size
    return segments


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + each name+value, sorted by name))."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def message_counts(outbox: Path) -> dict[str, int]:
    """Status -> number of messages, from the last line per sid of an outbox file."""
    latest: dict[str, str] = {}
    try:
        text = outbox.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    for line in text.splitlines():
        try:
            resource = json.loads(line)
            latest[str(resource["sid"])] = str(resource["status"])
        except (ValueError, KeyError, TypeError):
            continue  # a line being written right now, or not ours
    counts: dict[str, int] = {}
    for status in latest.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0))  # "Thu, 24 Aug 2023 05:01:45 +0000"


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback(host: str) -> None:
    """Refuse a listen address that is not loopback: the lab is never served to a network."""
    if not _is_loopback_host(host):
        raise ConfigError(
            f"{host} is not a loopback address; the lab SMS gateway listens on loopback only "
            "(allow_non_loopback / --allow-non-loopback to override)"
        )


class _TwilioError(Exception):
    """An API error answered as Twilio's JSON error body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        more_info = f"https://www.twilio.com/docs/errors/{self.code}"
        return {"code": self.code, "message": self.message, "more_info": more_info,
                "status": self.status}  # fmt: skip


def _bad(code: int, message: str) -> _TwilioError:
    return _TwilioError(400, code, message)


@dataclasses.dataclass
class _Request:
    """A validated create request."""

    to: str
    sender: str | None
    service: str | None
    body: str
    media: list[str]
    callback: str | None


def _validate_create(form: Mapping[str, list[str]]) -> _Request:
    """The create parameters checked in the order Twilio reports them; _TwilioError if bad."""

    def one(name: str) -> str:
        return (form.get(name) or [""])[0].strip()

    to, sender, service = one("To"), one("From"), one("MessagingServiceSid")
    body = (form.get("Body") or [""])[0]  # sent as given, spaces and newlines included
    media = [url for url in form.get("MediaUrl", []) if url.strip()]
    callback = one("StatusCallback")
    if not to:
        raise _bad(21604, "A 'To' phone number is required.")
    if not _E164.fullmatch(to):
        raise _bad(21211, f"The 'To' number {to} is not a valid phone number.")
    if not sender and not service:
        raise _bad(21603, "A 'From' or 'MessagingServiceSid' parameter is required to send "
                          "a message.")  # fmt: skip
    if sender and not any(p.fullmatch(sender) for p in (_E164, _ALPHANUMERIC_SENDER, _SHORT_CODE)):
        raise _bad(21212, f"The 'From' number {sender} is not a valid phone number, shortcode, "
                          "or alphanumeric sender ID.")  # fmt: skip
    if service and not _SERVICE_SID.fullmatch(service):
        raise _bad(21701, f"The Messaging Service Sid {service} is invalid.")
    if not body.strip() and not media:
        raise _bad(21602, "Message body is required.")
    if len(body) > MAX_BODY_CHARS:
        raise _bad(21617, "The concatenated message body exceeds the 1600 character limit.")
    if callback:
        _check_callback(callback)
    for table, key in ((_FROM_MAGIC, sender), (_TO_MAGIC, to)):
        if key in table:
            code, text = table[key]
            raise _bad(code, text.format(to=to, sender=sender or SERVICE_SENDER))
    return _Request(to, sender or None, service or None, body, media, callback or None)


def _check_callback(url: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise _bad(21609, f"The StatusCallback URL {url} is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _bad(21609, f"The StatusCallback URL {url} is not a valid URL.")
    if not _is_loopback_host(host):
        raise _bad(21609, f"The StatusCallback URL {url} is not a loopback URL: the lab SMS "
                          "gateway calls back only to 127.0.0.0/8, ::1 or localhost.")  # fmt: skip


def _plan(request: _Request) -> list[tuple[str, int | None, str | None]]:
    """The statuses the message goes through after its first one."""
    steps: list[tuple[str, int | None, str | None]] = []
    if request.sender is None:
        steps.append(("queued", None, None))  # the service picked a sender
    outcome = DESTINATION_OUTCOMES.get(request.to[-4:])
    if outcome is None:
        return [*steps, ("sending", None, None), ("sent", None, None), ("delivered", None, None)]
    status, code, text = outcome
    if status == "failed":
        return [*steps, ("sending", None, None), (status, code, text)]
    return [*steps, ("sending", None, None), ("sent", None, None), (status, code, text)]


# --- the gateway --------------------------------------------------------------------------


@dataclasses.dataclass
class _Message:
    resource: dict[str, Any]
    callback: str | None
    plan: list[tuple[str, int | None, str | None]]
    sent_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class _Callback:
    url: str
    params: dict[str, str]
    signature: str


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    gateway: SmsGateway

    def __init__(self, address: tuple[str, int], gateway: SmsGateway) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.gateway = gateway
        super().__init__(address, _Handler)


class SmsGateway:
    """The gateway in threads of this process; ``with SmsGateway(...) as gateway:``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        accounts: Mapping[str, str],
        outbox: Path | None = None,
        step_delay: float = 0.2,
        allow_non_loopback: bool = False,
    ) -> None:
        if not allow_non_loopback:
            require_loopback(host)
        if not accounts:
            raise ConfigError("the SMS gateway needs at least one account (SID and token)")
        for sid, token in accounts.items():
            if not _ACCOUNT_SID.fullmatch(sid) or not token:
                raise ConfigError(f"account {sid!r}: the SID must start with AC and the "
                                  "token must not be empty")  # fmt: skip
        if step_delay < 0:
            raise ConfigError(f"step_delay must be 0 or more, got {step_delay}")
        self.host, self._requested_port = host, port
        self._tokens = dict(accounts)
        self.outbox = outbox
        self.step_delay = step_delay
        self._lock = threading.Condition()
        self._messages: dict[str, _Message] = {}
        self._due: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._pending_callbacks = 0
        self.callbacks_sent = 0
        self.callbacks_failed = 0
        self._stopping = False
        self._server: _HttpServer | None = None
        self._threads: list[threading.Thread] = []
        self._queues: list[queue.Queue[_Callback | None]] = []
        self._http: httpx.Client | None = None  # made at the first callback (TLS setup is slow)

    def __repr__(self) -> str:
        where = self.base_url if self._server else f"{self.host}:{self._requested_port}"
        return f"<SmsGateway {where} accounts={sorted(self._tokens)}>"

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> SmsGateway:
        """Listen and start the progression and callback threads."""
        self._server = _HttpServer((self.host, self._requested_port), self)
        self._stopping = False
        self._queues = [queue.Queue() for _ in range(CALLBACK_WORKERS)]
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        targets: list[tuple[str, Callable[[], None]]] = [
            ("sms-http", serve), ("sms-progress", self._progress_loop),
        ]  # fmt: skip
        for number, work in enumerate(self._queues):
            targets.append((f"sms-callback-{number}", functools.partial(self._callback_loop, work)))
        self._threads = [threading.Thread(target=t, name=n, daemon=True) for n, t in targets]
        for thread in self._threads:
            thread.start()
        log.info("listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving; transitions not yet due and callbacks not yet sent are dropped."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for work in self._queues:
            work.put(None)
        for thread in self._threads:
            thread.join(timeout=CALLBACK_TIMEOUT + 1)
        if self._http is not None:
            self._http.close()
        self._server, self._http = None, None

    def __enter__(self) -> SmsGateway:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def messages(self) -> list[dict[str, Any]]:
        """The Message resources as they are now, oldest first."""
        with self._lock:
            return [json.loads(json.dumps(m.resource)) for m in self._messages.values()]

    def wait_settled(self, timeout: float) -> bool:
        """Wait until every message is final and every callback is sent; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._due or self._pending_callbacks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    # --- used by the HTTP handler ---

    def authenticate(self, header: str | None) -> str:
        """The account SID the Authorization header proves; _TwilioError 20003 otherwise."""
        unauthorized = _TwilioError(401, 20003, "Authenticate")
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            raise unauthorized
        try:
            user, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized from None
        expected = self._tokens.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), token.encode()):
            raise unauthorized
        return user

    def create(self, account: str, form: Mapping[str, list[str]]) -> dict[str, Any]:
        request = _validate_create(form)
        now = datetime.now(UTC)
        sid = "SM" + secrets.token_hex(16)
        uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}.json"
        resource: dict[str, Any] = {
            "account_sid": account, "api_version": API_VERSION, "body": request.body,
            "date_created": _rfc2822(now), "date_sent": None, "date_updated": _rfc2822(now),
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": request.sender, "messaging_service_sid": request.service,
            "num_media": str(len(request.media)), "num_segments": str(count_segments(request.body)),
            "price": None, "price_unit": "USD", "sid": sid,
            "status": "queued" if request.sender else "accepted",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json"),
                                 "feedback": uri.replace(".json", "/Feedback.json")},
            "to": request.to, "uri": uri,
        }  # fmt: skip
        with self._lock:
            self._messages[sid] = _Message(resource, request.callback, _plan(request))
            self._record(resource)
            self._schedule(sid)
            return dict(resource)

    def fetch(self, account: str, sid: str) -> dict[str, Any] | None:
        with self._lock:
            message = self._messages.get(sid)
            if message is None or message.resource["account_sid"] != account:
                return None
            return dict(message.resource)

    def select(
        self, account: str, to: str, sender: str, sent: Callable[[datetime], bool] | None
    ) -> list[dict[str, Any]]:
        """The account's messages matching the list filters, newest first; with a date
        filter (``sent``), only messages already sent."""
        with self._lock:
            return [
                dict(m.resource) for m in reversed(self._messages.values())
                if m.resource["account_sid"] == account
                and (not to or m.resource["to"] == to)
                and (not sender or m.resource["from"] == sender)
                and (sent is None or (m.sent_at is not None and sent(m.sent_at)))
            ]  # fmt: skip

    # --- progression and callbacks ---

    def _schedule(self, sid: str) -> None:
        heapq.heappush(self._due, (time.monotonic() + self.step_delay, next(self._sequence), sid))
        self._lock.notify_all()

    def _record(self, resource: Mapping[str, Any]) -> None:
        """Append the resource to the outbox (called with the lock held, so lines keep order)."""
        if self.outbox is None:
            return
        try:
            with self.outbox.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(resource, ensure_ascii=False) + "\n")
        except OSError as error:
            log.warning("cannot append to the outbox %s: %s", self.outbox, error)

    def _progress_loop(self) -> None:
        with self._lock:
            while not self._stopping:
                if not self._due:
                    self._lock.wait()
                    continue
                left = self._due[0][0] - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                    continue
                _, _, sid = heapq.heappop(self._due)
                self._advance(self._messages[sid])
                self._lock.notify_all()

    def _advance(self, message: _Message) -> None:
        """Move a message one step (lock held): resource, outbox line, callback, next step."""
        status, code, text = message.plan.pop(0)
        now = datetime.now(UTC)
        resource = message.resource
        resource.update(status=status, date_updated=_rfc2822(now), error_code=code,
                        error_message=text)  # fmt: skip
        if resource["from"] is None:
            resource["from"] = SERVICE_SENDER
        if status == "sent":
            message.sent_at = now
            resource["date_sent"] = _rfc2822(now)
        self._record(resource)
        if message.callback:
            self._queue_callback(message.callback, resource)
        if message.plan:
            self._schedule(resource["sid"])

    def _queue_callback(self, url: str, resource: Mapping[str, Any]) -> None:
        params = {
            "MessageSid": resource["sid"], "SmsSid": resource["sid"],
            "AccountSid": resource["account_sid"], "From": resource["from"],
            "To": resource["to"], "MessageStatus": resource["status"],
            "SmsStatus": resource["status"], "ApiVersion": API_VERSION,
        }  # fmt: skip
        if resource["messaging_service_sid"]:
            params["MessagingServiceSid"] = resource["messaging_service_sid"]
        if resource["error_code"] is not None:
            params["ErrorCode"] = str(resource["error_code"])
        signature = twilio_signature(url, params, self._tokens[resource["account_sid"]])
        self._pending_callbacks += 1
        # One worker per sid, so a message's callbacks arrive in the order of its statuses.
        worker = self._queues[int(resource["sid"][-4:], 16) % len(self._queues)]
        worker.put(_Callback(url, params, signature))

    def _callback_loop(self, work: queue.Queue[_Callback | None]) -> None:
        while (callback := work.get()) is not None:
            with self._lock:
                if self._http is None:
                    # trust_env=False: no proxy from the environment may take a callback off
                    # the machine; redirects are not followed, for the same reason.
                    self._http = httpx.Client(timeout=CALLBACK_TIMEOUT, trust_env=False)
                client = self._http
            ok = self._post_callback(client, callback)
            with self._lock:
                self._pending_callbacks -= 1
                if ok:
                    self.callbacks_sent += 1
                else:
                    self.callbacks_failed += 1
                self._lock.notify_all()

    def _post_callback(self, client: httpx.Client, callback: _Callback) -> bool:
        headers = {"X-Twilio-Signature": callback.signature, "User-Agent": "TwilioProxy/1.1"}
        where = _redacted(callback.url)
        try:
            response = client.post(callback.url, data=callback.params, headers=headers)
        except httpx.HTTPError as error:
            log.warning("status callback to %s failed: %s", where, type(error).__name__)
            return False
        if response.status_code >= 400:
            log.warning("status callback to %s answered %d", where, response.status_code)
            return False
        return True


def _redacted(url: str) -> str:
    """The URL without user:password@ (a callback URL may carry basic-auth credentials)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc, query="").geturl()


# --- HTTP --------------------------------------------------------------------------------


def _date_filter(query: Mapping[str, list[str]]) -> Callable[[datetime], bool] | None:
    """DateSent=, DateSent< (on or before), DateSent> (on or after): YYYY-MM-DD (whole UTC
    days) or an ISO 8601 time; None without any of them."""
    tests: list[Callable[[datetime], bool]] = []
    for name, compare in (("DateSent", operator.eq), ("DateSent<", operator.le),
                          ("DateSent>", operator.ge)):  # fmt: skip
        raw = (query.get(name) or [""])[0]
        if raw:
            tests.append(_date_test(name, raw, compare))
    if not tests:
        return None
    return lambda moment: all(test(moment) for test in tests)


def _date_test(
    name: str, raw: str, compare: Callable[[Any, Any], Any]
) -> Callable[[datetime], bool]:
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return lambda moment: bool(compare(moment.date(), day))
        bound = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(20001, f"Invalid {name}: {raw} (expected YYYY-MM-DD)") from None
    bound = bound if bound.tzinfo else bound.replace(tzinfo=UTC)
    return lambda moment: bool(compare(moment, bound))


def _page(items: list[dict[str, Any]], query: Mapping[str, list[str]], path: str) -> dict[str, Any]:
    """Twilio's list envelope for one page of ``items`` (already filtered, newest first)."""

    def number(name: str, default: int, low: int, high: int) -> int:
        raw = (query.get(name) or [str(default)])[0]
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise _bad(20001, f"Invalid {name}: {raw} (expected {low} to {high})")
        return int(raw)

    size, page = number("PageSize", 50, 1, 1000), number("Page", 0, 0, 10**6)
    token = (query.get("PageToken") or [""])[0]
    sids = [item["sid"] for item in items]
    start = page * size
    if token[2:] in sids:  # PA<sid>: the page after that message; PB<sid>: the page before
        at = sids.index(token[2:])
        start = at + 1 if token.startswith("PA") else max(0, at - size)
    chosen = items[start : start + size]
    filters = [(k, query[k][0]) for k in ("To", "From", "DateSent", "DateSent<", "DateSent>")
               if query.get(k)]  # fmt: skip

    def uri(page_number: int, page_token: str | None = None) -> str:
        pairs = [*filters, ("PageSize", str(size)), ("Page", str(page_number))]
        if page_token:
            pairs.append(("PageToken", page_token))
        return f"{path}?{urlencode(pairs)}"

    more = start + size < len(items)
    return {
        "messages": chosen, "page": page, "page_size": size,
        "first_page_uri": uri(0), "uri": uri(page, token or None),
        "next_page_uri": uri(page + 1, "PA" + chosen[-1]["sid"]) if more and chosen else None,
        "previous_page_uri": uri(page - 1, "PB" + chosen[0]["sid"]) if page and chosen else None,
        "start": start, "end": start + max(len(chosen) - 1, 0),
    }  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall
    server_version = "lab-sms-gateway"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        body = self._read_body()
        try:
            status, payload = self._route(method, body)
        except _TwilioError as error:
            status, payload = error.status, error.body()
        self._answer(status, payload)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True  # the rest stays unread: this connection is done
        return self.rfile.read(min(length, MAX_REQUEST_BYTES)) if length > 0 else b""

    def _route(self, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        gateway = self.server.gateway
        account = gateway.authenticate(self.headers.get("Authorization"))
        parts = urlsplit(self.path)
        match = _PATH.fullmatch(parts.path)
        if match is None or match["account"] != account:
            if match is not None:
                raise _TwilioError(401, 20003, "Authenticate")
            raise _TwilioError(404, 20404, f"The requested resource {parts.path} was not found")
        sid = match["sid"]
        if sid is None and method == "POST":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return 201, gateway.create(account, form)
        if sid is None and method == "GET":
            query = parse_qs(parts.query, keep_blank_values=True)
            to, sender = ((query.get(k) or [""])[0] for k in ("To", "From"))
            items = gateway.select(account, to, sender, _date_filter(query))
            return 200, _page(items, query, parts.path)
        if sid is not None and method == "GET":
            found = gateway.fetch(account, sid)
            if found is None:
                raise _TwilioError(404, 20404, f"The requested resource {parts.path} was not found")
            return 200, found
        raise _TwilioError(405, 20004, "Method not allowed")

    def _answer(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


# --- the process ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"sms_gateway: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _account(value: str) -> tuple[str, str]:
    sid, colon, token = value.partition(":")
    if not colon or not _ACCOUNT_SID.fullmatch(sid) or not token:
        # the value may hold a token: never echo it
        raise argparse.ArgumentTypeError("--account takes SID:TOKEN (SID starting with AC)")
    return sid, token


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m lab.sms_gateway",
                     description="The lab's Twilio-compatible SMS gateway.")  # fmt: skip
    parser.add_argument("--listen", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free one)")
    parser.add_argument("--account", type=_account, action="append", required=True,
                        metavar="SID:TOKEN", help="an account (repeatable)")  # fmt: skip
    parser.add_argument("--outbox", type=Path, help="append each status change here (JSONL)")
    parser.add_argument("--step-delay", type=float, default=0.2, help="seconds per status step")
    parser.add_argument("--allow-non-loopback", action="store_true",
                        help="allow a non-loopback listen address")  # fmt: skip
    return parser.parse_args(argv)


def _say(line: str) -> None:
    """A state line on stdout; a reader that went away must not stop the server."""
    with contextlib.suppress(OSError, ValueError):
        print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    args = _parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="sms_gateway: %(message)s")
    accounts: Iterable[tuple[str, str]] = args.account
    try:
        gateway = SmsGateway(args.listen, args.port, accounts=dict(accounts), outbox=args.outbox,
                             step_delay=args.step_delay,
                             allow_non_loopback=args.allow_non_loopback)  # fmt: skip
    except ConfigError as error:
        print(f"sms_gateway: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # Blocked before the threads start, so they inherit the mask and sigwait() gets them.
    watched = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        gateway.start()
    except OSError as error:
        log.error("cannot listen on %s port %d: %s", args.listen, args.port, error)
        return EXIT_FAILURE
    try:
        _say(f"ready {gateway.base_url}")
        signal.sigwait(watched)
    finally:
        gateway.stop()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
