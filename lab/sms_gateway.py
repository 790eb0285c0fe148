"""The lab's SMS gateway: Twilio's Messages API (2010-04-01) served on loopback, running.

It serves create, list and fetch of ``/2010-04-01/Accounts/{AccountSid}/Messages`` the way
Twilio does, so the SMS fallback's client, written against Twilio, runs end to end on one
machine. This module holds the running parts: the HTTP server, the status progression (one
step every ``step_delay`` seconds), the status callbacks (POSTed form-encoded and signed with
X-Twilio-Signature at each status change, to loopback URLs only), the outbox (with
``outbox``, each status change appends the resource as one JSON line for other processes;
see :func:`message_counts`) and the process. What the API accepts, answers and renders, and
where each destination number ends, is decided in :mod:`lab.sms_twilio`; its names in this
module's ``__all__`` (constants, signature, segments) are re-exported for existing callers.

Run as a process::

    python -m lab.sms_gateway --listen 127.0.0.1 --port 0 --account SID:TOKEN [--outbox F]
                              [--step-delay S] [--allow-non-loopback]

prints ``ready http://HOST:PORT`` once listening; SIGTERM or SIGINT stops it (exit 0); bad
arguments exit 2 with one line on stderr; 1 means it could not listen.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import heapq
import itertools
import json
import logging
import queue
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import httpx

from deliver.errors import ConfigError
from lab import sms_twilio as twilio
from lab.service import Service
from lab.sms_twilio import (
    API_VERSION,
    DESTINATION_OUTCOMES,
    FINAL_STATUSES,
    SERVICE_SENDER,
    TwilioError,
    count_segments,
    twilio_signature,
)

__all__ = [
    "API_VERSION", "DESTINATION_OUTCOMES", "FINAL_STATUSES", "SERVICE_SENDER", "SmsGateway",
    "count_segments", "main", "message_counts", "twilio_signature",
]  # fmt: skip

log = logging.getLogger(__name__)

CALLBACK_WORKERS = 4
MAX_REQUEST_BYTES = 1 << 20
CALLBACK_TIMEOUT = 5.0
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


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


def require_loopback(host: str) -> None:
    """Refuse a listen address that is not loopback: the lab is never served to a network."""
    if not twilio.is_loopback_host(host):
        raise ConfigError(
            f"{host} is not a loopback address; the lab SMS gateway listens on loopback only "
            "(allow_non_loopback / --allow-non-loopback to override)"
        )


# --- the gateway --------------------------------------------------------------------------


@dataclasses.dataclass
class _Message:
    resource: dict[str, Any]
    callback: str | None
    plan: list[twilio.Step]
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


class SmsGateway(Service):
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
            if not twilio.ACCOUNT_SID.fullmatch(sid) or not token:
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
        """The account SID the Authorization header proves; TwilioError 20003 otherwise."""
        return twilio.authenticated_account(header, self._tokens)

    def create(self, account: str, form: Mapping[str, list[str]]) -> dict[str, Any]:
        request = twilio.validate_create(form)
        sid = "SM" + secrets.token_hex(16)
        resource = twilio.message_resource(account, sid, request, datetime.now(UTC))
        plan = twilio.status_plan(request)
        with self._lock:
            self._messages[sid] = _Message(resource, request.callback, plan)
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
        step, now, resource = message.plan.pop(0), datetime.now(UTC), message.resource
        twilio.apply_step(resource, step, now)
        if step[0] == "sent":
            message.sent_at = now
        self._record(resource)
        if message.callback:
            self._queue_callback(message.callback, resource)
        if message.plan:
            self._schedule(resource["sid"])

    def _queue_callback(self, url: str, resource: Mapping[str, Any]) -> None:
        params = twilio.callback_params(resource)
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
        except TwilioError as error:
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
        action, sid = twilio.resolve(method, parts.path, account)
        if action == "create":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return 201, gateway.create(account, form)
        if action == "list":
            query = parse_qs(parts.query, keep_blank_values=True)
            to, sender = ((query.get(k) or [""])[0] for k in ("To", "From"))
            items = gateway.select(account, to, sender, twilio.date_filter(query))
            return 200, twilio.list_page(items, query, parts.path)
        found = gateway.fetch(account, sid)
        if found is None:
            raise twilio.not_found(parts.path)
        return 200, found

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
    if not colon or not twilio.ACCOUNT_SID.fullmatch(sid) or not token:
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
