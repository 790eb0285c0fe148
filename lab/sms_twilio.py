"""Twilio's Programmable Messaging API (2010-04-01), the pure parts: no sockets, no threads.

What :mod:`lab.sms_gateway` serves is decided here: HTTP basic auth with AccountSid:AuthToken
(:func:`authenticated_account`) and the routes (:func:`resolve`); the checks on the Messages
create form, in the order Twilio reports them, with Twilio's error codes and JSON error body
(:class:`TwilioError`); the Message resource as Twilio renders it (:func:`message_resource`,
:func:`apply_step`) and its status callback form (:func:`callback_params`), signed with
X-Twilio-Signature (:func:`twilio_signature`); the list envelope with its paging and page
tokens (:func:`list_page`, :func:`date_filter`); SMS segment counting (:func:`count_segments`).

The lab convention (what a real carrier decides) for the destination number:

* Twilio's test-credential magic numbers fail at creation as they do at Twilio:
  To +15005550001 (21211), +15005550002 (21612), +15005550003 (21408), +15005550004 (21610),
  +15005550009 (21614); From +15005550001 (21212), +15005550007 (21606), +15005550008 (21611).
* Otherwise the message is created ``queued`` and then goes through :func:`status_plan`,
  decided by the To number's last four digits (:data:`DESTINATION_OUTCOMES`):
  ``0003``/``0004``/``0005``/``0007``/``0008`` end ``undelivered`` (30003, 30004, 30005,
  30007, 30008) after ``sending`` and ``sent``; ``0006`` ends ``failed`` 30006 after
  ``sending``; anything else goes ``sending``, ``sent``, ``delivered``. With a
  MessagingServiceSid and no From, the message starts ``accepted`` (from null) and gets
  :data:`SERVICE_SENDER` when it becomes ``queued``.

StatusCallback URLs must be loopback URLs (400, 21609 otherwise): the lab calls nothing
outside the machine.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import ipaddress
import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = [
    "ACCOUNT_SID", "API_VERSION", "DESTINATION_OUTCOMES", "FINAL_STATUSES", "MAX_BODY_CHARS",
    "MESSAGES_PATH", "SERVICE_SENDER", "CreateRequest", "Step", "TwilioError", "apply_step",
    "authenticated_account", "callback_params", "count_segments", "date_filter",
    "is_loopback_host", "list_page", "message_resource", "not_found", "resolve", "rfc2822",
    "status_plan", "twilio_signature", "validate_create",
]  # fmt: skip

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
ACCOUNT_SID = re.compile(r"AC[0-9A-Za-z]+")
MESSAGES_PATH = re.compile(
    rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages(?:/(?P<sid>[^/]+))?\.json"
)

#: one status step: (status, Twilio error code, Twilio error message)
Step = tuple[str, int | None, str | None]

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_SHORT_CODE = re.compile(r"[0-9]{5,6}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
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


def rfc2822(moment: datetime) -> str:
    """A Twilio resource date: ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    return format_datetime(moment.replace(microsecond=0))


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TwilioError(Exception):
    """An API error answered as Twilio's JSON error body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        more_info = f"https://www.twilio.com/docs/errors/{self.code}"
        return {"code": self.code, "message": self.message, "more_info": more_info,
                "status": self.status}  # fmt: skip


def _bad(code: int, message: str) -> TwilioError:
    return TwilioError(400, code, message)


def authenticated_account(header: str | None, tokens: Mapping[str, str]) -> str:
    """The account SID an Authorization header proves (HTTP basic, AccountSid:AuthToken)
    against ``tokens`` (SID -> token); TwilioError 401, 20003, otherwise."""
    unauthorized = TwilioError(401, 20003, "Authenticate")
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        raise unauthorized
    try:
        user, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized from None
    expected = tokens.get(user)
    if expected is None or not hmac.compare_digest(expected.encode(), token.encode()):
        raise unauthorized
    return user


def resolve(method: str, path: str, account: str) -> tuple[str, str]:
    """What a request by ``account`` asks for: ``("create" | "list", "")`` or ``("fetch",
    sid)``; TwilioError 404 (no such resource), 401 (another account's) or 405 otherwise."""
    match = MESSAGES_PATH.fullmatch(path)
    if match is None:
        raise not_found(path)
    if match["account"] != account:
        raise TwilioError(401, 20003, "Authenticate")
    sid = match["sid"]
    if sid is None and method in ("POST", "GET"):
        return ("create" if method == "POST" else "list"), ""
    if sid is not None and method == "GET":
        return "fetch", sid
    raise TwilioError(405, 20004, "Method not allowed")


def not_found(path: str) -> TwilioError:
    """Twilio's 404 (20404) for a path."""
    return TwilioError(404, 20404, f"The requested resource {path} was not found")


# --- creating a message -------------------------------------------------------------------


@dataclasses.dataclass
class CreateRequest:
    """A validated create request."""

    to: str
    sender: str | None
    service: str | None
    body: str
    media: list[str]
    callback: str | None


def validate_create(form: Mapping[str, list[str]]) -> CreateRequest:
    """The create parameters checked in the order Twilio reports them; TwilioError if bad."""

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
    return CreateRequest(to, sender or None, service or None, body, media, callback or None)


def _check_callback(url: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise _bad(21609, f"The StatusCallback URL {url} is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _bad(21609, f"The StatusCallback URL {url} is not a valid URL.")
    if not is_loopback_host(host):
        raise _bad(21609, f"The StatusCallback URL {url} is not a loopback URL: the lab SMS "
                          "gateway calls back only to 127.0.0.0/8, ::1 or localhost.")  # fmt: skip


def status_plan(request: CreateRequest) -> list[Step]:
    """The statuses the message goes through after its first one."""
    steps: list[Step] = []
    if request.sender is None:
        steps.append(("queued", None, None))  # the service picked a sender
    outcome = DESTINATION_OUTCOMES.get(request.to[-4:])
    if outcome is None:
        return [*steps, ("sending", None, None), ("sent", None, None), ("delivered", None, None)]
    status, code, text = outcome
    if status == "failed":
        return [*steps, ("sending", None, None), (status, code, text)]
    return [*steps, ("sending", None, None), ("sent", None, None), (status, code, text)]


# --- rendering ----------------------------------------------------------------------------


def message_resource(
    account: str, sid: str, request: CreateRequest, now: datetime
) -> dict[str, Any]:
    """The Message resource of a message just created (``queued``, or ``accepted`` without
    a From)."""
    uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}.json"
    return {
        "account_sid": account, "api_version": API_VERSION, "body": request.body,
        "date_created": rfc2822(now), "date_sent": None, "date_updated": rfc2822(now),
        "direction": "outbound-api", "error_code": None, "error_message": None,
        "from": request.sender, "messaging_service_sid": request.service,
        "num_media": str(len(request.media)), "num_segments": str(count_segments(request.body)),
        "price": None, "price_unit": "USD", "sid": sid,
        "status": "queued" if request.sender else "accepted",
        "subresource_uris": {"media": uri.replace(".json", "/Media.json"),
                             "feedback": uri.replace(".json", "/Feedback.json")},
        "to": request.to, "uri": uri,
    }  # fmt: skip


def apply_step(resource: dict[str, Any], step: Step, now: datetime) -> None:
    """Move the resource to the step's status at ``now``: error fields, date_updated,
    date_sent once ``sent``, the service's sender once it has a status past ``accepted``."""
    status, code, text = step
    resource.update(status=status, date_updated=rfc2822(now), error_code=code,
                    error_message=text)  # fmt: skip
    if resource["from"] is None:
        resource["from"] = SERVICE_SENDER
    if status == "sent":
        resource["date_sent"] = rfc2822(now)


def callback_params(resource: Mapping[str, Any]) -> dict[str, str]:
    """The form a StatusCallback receives for the resource's current status."""
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
    return params


# --- listing ------------------------------------------------------------------------------


def date_filter(query: Mapping[str, list[str]]) -> Callable[[datetime], bool] | None:
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


def list_page(
    items: list[dict[str, Any]], query: Mapping[str, list[str]], path: str
) -> dict[str, Any]:
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
