"""SMTP sessions over aiosmtplib: connect along a route, send messages, report replies.

The transport decides nothing about retries or shaping; it returns what the server
said (an :class:`SmtpReply`, ``code`` None when there was no reply at all) and
whether the session can carry another message. TLS per the provider's policy:
``opportunistic`` upgrades with STARTTLS when offered and falls back to plain text if
the handshake fails (RFC 7435: unauthenticated encryption beats none),
``required`` refuses to send in clear, ``disabled`` never upgrades.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import time
from dataclasses import dataclass
from typing import NamedTuple

import aiosmtplib
from aiosmtplib import (
    SMTPConnectError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from deliver.classify import split_enhanced
from deliver.routing import MxHost, Route

__all__ = ["Delivery", "SmtpReply", "SmtpSession", "open_session"]


class SmtpReply(NamedTuple):
    code: int | None
    enhanced: str | None
    text: str

    @classmethod
    def of(cls, code: int | None, message: str) -> SmtpReply:
        enhanced, text = split_enhanced(message)
        return cls(code, enhanced, text)

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code is not None and self.code >= 500

    def __str__(self) -> str:
        parts = [str(self.code) if self.code is not None else "---"]
        if self.enhanced:
            parts.append(self.enhanced)
        parts.append(self.text)
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Delivery:
    reply: SmtpReply
    #: the SMTP step that gave the reply: connect, ehlo, starttls, mail, rcpt, data
    stage: str
    #: the session can send another message
    usable: bool
    seconds: float


def _tls_context() -> ssl.SSLContext:
    # Opportunistic TLS between MTAs does not authenticate the server (RFC 7435);
    # MTA-STS / DANE are what add authentication, and they are separate policies.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_TLS = _tls_context()


class SmtpSession:
    """One SMTP connection to one address of one MX host."""

    def __init__(
        self,
        host: MxHost,
        address: str,
        port: int,
        *,
        helo: str,
        tls: str,
        connect_timeout: float,
        command_timeout: float,
    ) -> None:
        self.host = host
        self.address = address
        self.port = port
        self.helo = helo
        self.tls_mode = tls
        self.connect_timeout = connect_timeout
        self.tls = False
        self.sent = 0
        self._smtp = aiosmtplib.SMTP(
            hostname=address,
            port=port,
            local_hostname=helo,
            timeout=command_timeout,
            start_tls=False,
            validate_certs=False,
        )

    async def open(self, *, allow_tls: bool = True) -> Delivery:
        """Connect, EHLO, STARTTLS per policy; the reply says whether it worked."""
        started = time.monotonic()
        stage = "connect"
        try:
            await self._smtp.connect(timeout=self.connect_timeout)
            stage = "ehlo"
            await self._smtp.ehlo()
            if (
                self.tls_mode != "disabled"
                and allow_tls
                and self._smtp.supports_extension("starttls")
            ):
                stage = "starttls"
                await self._smtp.starttls(tls_context=_TLS, server_hostname=self.host.name)
                self.tls = True
                stage = "ehlo"
                await self._smtp.ehlo()
            elif self.tls_mode == "required":
                self.close()
                return Delivery(
                    SmtpReply(
                        None,
                        "4.7.10",
                        f"{self.host.name} does not offer STARTTLS and TLS is required",
                    ),
                    "starttls",
                    False,
                    _since(started),
                )
        except SMTPResponseException as exc:
            self.close()
            return Delivery(SmtpReply.of(exc.code, exc.message), stage, False, _since(started))
        except (SMTPException, OSError, ssl.SSLError) as exc:
            self.close()
            return Delivery(
                SmtpReply(None, None, self._describe(stage, exc)), stage, False, _since(started)
            )
        return Delivery(SmtpReply(220, None, "ready"), stage, True, _since(started))

    async def send(self, envelope_from: str, rcpt: str, data: bytes) -> Delivery:
        """One transaction: MAIL, RCPT, DATA. Leaves the session ready for the next."""
        started = time.monotonic()
        stage = "mail"
        try:
            await self._smtp.mail(envelope_from)
            stage = "rcpt"
            await self._smtp.rcpt(rcpt)
            stage = "data"
            response = await self._smtp.data(data)
        except SMTPResponseException as exc:
            reply = SmtpReply.of(exc.code, exc.message)
            usable = exc.code != 421 and await self._reset()
            return Delivery(reply, stage, usable, _since(started))
        except (SMTPServerDisconnected, SMTPTimeoutError, SMTPException, OSError) as exc:
            self.close()
            return Delivery(
                SmtpReply(None, None, self._describe(stage, exc)), stage, False, _since(started)
            )
        self.sent += 1
        return Delivery(SmtpReply.of(response.code, response.message), stage, True, _since(started))

    async def _reset(self) -> bool:
        try:
            await self._smtp.rset()
        except (SMTPException, OSError):
            self.close()
            return False
        return True

    async def quit(self) -> None:
        if self._smtp.is_connected:
            with contextlib.suppress(SMTPException, OSError):
                await self._smtp.quit()
        self.close()

    def close(self) -> None:
        self._smtp.close()

    @property
    def connected(self) -> bool:
        return self._smtp.is_connected

    def _describe(self, stage: str, exc: BaseException) -> str:
        where = f"{self.host.name}[{self.address}]:{self.port}"
        if isinstance(exc, SMTPTimeoutError):
            return f"timeout during {stage} with {where}"
        if isinstance(exc, SMTPServerDisconnected):
            return f"connection lost during {stage} with {where}"
        if isinstance(exc, SMTPConnectError | OSError):
            cause = exc.__cause__ or exc
            return f"cannot connect to {where}: {getattr(cause, 'strerror', None) or cause}"
        if isinstance(exc, ssl.SSLError):
            return f"TLS handshake failed with {where}: {exc.reason or exc}"
        return f"{stage} failed with {where}: {exc}"


async def open_session(
    route: Route, *, helo: str, tls: str, connect_timeout: float, command_timeout: float
) -> tuple[SmtpSession | None, Delivery]:
    """A session with the first host of the route that answers; else the last failure.

    A host that cannot be reached or greets with an error is skipped for the next one
    (RFC 5321 §5.1). With opportunistic TLS, a failed handshake is retried in clear.
    """
    last: Delivery | None = None
    for host in route.hosts:
        for address in host.addresses:
            session = functools.partial(
                SmtpSession,
                host,
                address,
                route.port,
                helo=helo,
                tls=tls,
                connect_timeout=connect_timeout,
                command_timeout=command_timeout,
            )
            first = session()
            result = await first.open()
            if result.usable:
                return first, result
            if result.stage == "starttls" and tls == "opportunistic" and result.reply.code is None:
                clear = session()
                result = await clear.open(allow_tls=False)
                if result.usable:
                    return clear, result
            last = result
    assert last is not None
    return None, last


def _since(started: float) -> float:
    return time.monotonic() - started
