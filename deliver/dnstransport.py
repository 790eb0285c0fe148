"""The sockets under :mod:`deliver.dns`: UDP channels, blocking UDP and TCP exchanges.

Only bytes move here; which server to ask, for how long and what a reply means is
decided by :mod:`deliver.dns` (its ``_Resolution``), which drives these helpers.

* :class:`UdpChannel`: one connected, non-blocking UDP socket per nameserver and event
  loop, read by the loop; replies are matched to the pending :class:`Exchange` by a random
  16-bit id and the question (anything else is ignored).
* :func:`connected_udp` and :func:`receive_reply`: the same on a blocking socket, for
  the synchronous path (``Resolver.query_sync``).
* :func:`tcp_exchange` and :func:`tcp_exchange_sync`: one query over TCP when a UDP
  reply is truncated (RFC 7766 §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from dataclasses import dataclass

from deliver.dnswire import DnsWireError, Response, decode_response, is_reply, question_of
from deliver.errors import ConfigError

__all__ = [
    "SOCKET_BUFFER", "Exchange", "Server", "UdpChannel", "connected_udp", "expire",
    "receive_reply", "server_for", "tcp_exchange", "tcp_exchange_sync",
]  # fmt: skip

#: socket buffers large enough for hundreds of queries in flight (the kernel may cap them)
SOCKET_BUFFER = 4 << 20
#: datagrams read per readiness event before letting other callbacks run
_READ_BATCH = 64


@dataclass(frozen=True, slots=True)
class Server:
    """A nameserver to ask, its address resolved once (when the resolver is built)."""

    label: str  # host:port, for details
    family: int
    address: tuple[str, int] | tuple[str, int, int, int]


def server_for(host: str, port: int) -> Server:
    """The nameserver at ``host``:``port``; :class:`ConfigError` when it cannot be found."""
    label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConfigError(f"nameserver {label}: {exc}") from None
    family, _, _, _, address = infos[0]
    return Server(label, family, address)  # type: ignore[arg-type]


# --- the async path ------------------------------------------------------------------


class Exchange:
    """One lookup's replies: whatever server answers, the current try's waiter learns."""

    __slots__ = ("query", "question", "waiter")

    def __init__(self, query: bytes) -> None:
        self.query = query  # with id 0: each server gets its own
        self.question = question_of(query)
        self.waiter: asyncio.Future[tuple[int, Response | str | None]] | None = None

    def finish(self, index: int, outcome: Response | str | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((index, outcome))


def expire(exchange: Exchange, index: int) -> None:
    """A try's timer ran out: its waiter learns ``None``."""
    exchange.finish(index, None)


class UdpChannel:
    """A connected UDP socket to one nameserver, read by the event loop; replies are
    matched to the pending lookups by id. Being connected, the kernel drops datagrams
    from other addresses."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: Server, index: int) -> None:
        self.loop, self.index = loop, index
        self.pending: dict[int, Exchange] = {}
        sock = socket.socket(server.family, socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.setblocking(False)
            sock.connect(server.address)
            loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def register(self, exchange: Exchange) -> int:
        """A random id no other pending lookup on this socket holds (spoof resistance)."""
        while True:
            qid = secrets.randbits(16)
            if qid not in self.pending:
                self.pending[qid] = exchange
                return qid

    def send(self, data: bytes) -> str | None:
        try:
            self.sock.send(data)
        except OSError as exc:  # ICMP errors surface here too (a closed port)
            return f"cannot send: {exc}"
        return None

    def _readable(self) -> None:
        for _ in range(_READ_BATCH):
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. port unreachable: every lookup here fails
                for exchange in list(self.pending.values()):
                    exchange.finish(self.index, f"no reply: {exc}")
                return
            self._received(data)

    def _received(self, data: bytes) -> None:
        if len(data) < 12:
            return
        exchange = self.pending.get((data[0] << 8) | data[1])
        if exchange is None or not is_reply(data, data[:2], exchange.question):
            return  # unknown id or another question: late, or forged
        try:
            response: Response | str = decode_response(data)
        except DnsWireError as exc:
            response = f"malformed reply: {exc}"
        exchange.finish(self.index, response)

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for exchange in self.pending.values():
            exchange.finish(self.index, "resolver closed")


# --- the sync path and TCP -----------------------------------------------------------


def connected_udp(server: Server) -> socket.socket:
    """A blocking UDP socket connected to ``server``, for the synchronous path."""
    sock = socket.socket(server.family, socket.SOCK_DGRAM)
    try:
        sock.connect(server.address)
    except BaseException:
        sock.close()
        raise
    return sock


def receive_reply(
    sock: socket.socket, qid: bytes, question: bytes, until: float
) -> Response | str | None:
    """The reply to our query on a blocking socket, a failure, or None when ``until`` passed;
    other datagrams are ignored."""
    while (remaining := until - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
        if is_reply(data, qid, question):
            try:
                return decode_response(data)
            except DnsWireError as exc:
                return f"malformed reply: {exc}"
    return None


async def tcp_exchange(
    server: Server, wire: bytes, question: bytes, remaining: float
) -> Response | str | None:
    """One query over TCP, length-prefixed (RFC 1035 §4.2.2, RFC 7766); None on timeout."""
    if remaining <= 0:
        return None
    try:
        async with asyncio.timeout(remaining):
            reader, writer = await asyncio.open_connection(*server.address[:2])
            try:
                writer.write(len(wire).to_bytes(2, "big") + wire)
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                    if is_reply(data, wire[:2], question):
                        return decode_response(data)
            finally:
                writer.close()
    except TimeoutError:
        return None
    except (OSError, asyncio.IncompleteReadError) as exc:
        return f"over TCP: {exc}"
    except DnsWireError as exc:
        return f"malformed reply over TCP: {exc}"


def tcp_exchange_sync(
    server: Server, wire: bytes, question: bytes, remaining: float
) -> Response | str | None:
    """:func:`tcp_exchange` on a blocking socket (each read within ``remaining``)."""
    if remaining <= 0:
        return None
    try:
        with socket.create_connection(server.address[:2], timeout=remaining) as sock:
            sock.sendall(len(wire).to_bytes(2, "big") + wire)
            stream = sock.makefile("rb")
            while len(prefix := stream.read(2)) == 2:
                data = stream.read(int.from_bytes(prefix, "big"))
                if is_reply(data, wire[:2], question):
                    return decode_response(data)
            return "over TCP: the server closed the connection"
    except TimeoutError:
        return None
    except OSError as exc:
        return f"over TCP: {exc}"
    except DnsWireError as exc:
        return f"malformed reply over TCP: {exc}"
