"""Bounces that come later: the lab accepts some mail at SMTP time and sends a delivery
status notification (RFC 3464) afterwards, as real providers do for accounts disabled
after the fact (Yahoo and AOL are known for it).

:func:`build_dsn` writes the DSN; :class:`LaterBounces` holds them until they are due and
hands them to a delivery function (the lab files them in the sender's bounce mailbox,
addressed to the VERP return path, so a bounce processor can trace each to its message).
"""

from __future__ import annotations

import email.utils
import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable

__all__ = ["LaterBounces", "build_dsn", "original_headers"]


def original_headers(raw: bytes) -> bytes:
    """The header section of ``raw`` (what ``text/rfc822-headers`` carries)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = raw.find(sep)
        if end >= 0:
            return raw[: end + len(sep)]
    return raw


def build_dsn(
    *,
    reporting_mta: str,
    return_path: str,
    rcpt: str,
    status: str,
    diagnostic: str,
    original: bytes,
    arrival: float,
) -> bytes:
    """A ``multipart/report; report-type=delivery-status`` message (RFC 3464, RFC 6522):
    a human-readable part, the ``message/delivery-status`` part and the original header
    section; sent from the null reverse path, so the envelope sender is ``<>``."""
    boundary = f"=_dsn_{uuid.uuid4().hex}"
    now = email.utils.formatdate(localtime=False)
    human = (f"Your message to {rcpt} could not be delivered after it was accepted.\r\n\r\n"
             f"The recipient's server said: {diagnostic}\r\n")  # fmt: skip
    arrived = email.utils.formatdate(arrival, localtime=False)
    per_message = f"Reporting-MTA: dns; {reporting_mta}\r\nArrival-Date: {arrived}\r\n"
    per_recipient = (f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
                     f"Remote-MTA: dns; {reporting_mta}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n"
                     f"Last-Attempt-Date: {now}\r\n")  # fmt: skip
    headers = original_headers(original).decode("utf-8", "replace").rstrip("\r\n") + "\r\n"
    parts = [
        f"From: Mail Delivery Subsystem <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: {return_path}\r\nSubject: Delivery Status Notification (Failure)\r\n"
        f"Date: {now}\r\nMessage-ID: {email.utils.make_msgid('dsn', reporting_mta)}\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"  # RFC 3834 §5
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
        "\r\n\r\n",
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{human}\r\n",
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"{per_message}\r\n{per_recipient}\r\n",
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n",
        f"--{boundary}--\r\n",
    ]
    return "".join(parts).encode("utf-8")


class LaterBounces:
    """DSNs waiting for their time. ``deliver(return_path, dsn)`` is called from a
    background thread when each is due; :meth:`stop` delivers what is still waiting, so
    stopping the lab loses no bounce it promised."""

    def __init__(self, deliver: Callable[[str, bytes], None], delay: float = 5.0) -> None:
        self.delay = delay
        self._deliver = deliver
        self._due: list[tuple[float, int, str, bytes]] = []
        self._order = itertools.count()
        self._lock = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lab-later-bounces", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def schedule(self, return_path: str, dsn: bytes) -> None:
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + self.delay, next(self._order),
                                       return_path, dsn))  # fmt: skip
            self._lock.notify()

    def pending(self) -> int:
        with self._lock:
            return len(self._due)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and (not self._due or self._due[0][0] > time.monotonic()):
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._lock.wait(wait)
                if self._stopping:
                    return
                _, _, return_path, dsn = heapq.heappop(self._due)
            self._send(return_path, dsn)

    def _send(self, return_path: str, dsn: bytes) -> None:
        self._deliver(return_path, dsn)
        with self._lock:
            self.sent += 1

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
            left, self._due = self._due, []
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for _, _, return_path, dsn in sorted(left):
            self._send(return_path, dsn)
