"""A real DNS server process on loopback for tests: ``lab.dns_server`` serving a ZoneData.

Code under test is pointed at ``server.nameserver`` ("127.0.0.1:PORT"); DNS lookups are
never patched. The function-scoped ``dns_server`` fixture starts servers and stops them
all at teardown::

    from tests.servers.dns import dns_server as dns_server  # the fixture

    def test_routes_by_mx(dns_server):
        mx = Record("MX", (10, "mx.example.test"))
        server = dns_server(ZoneData(["example.test"], {"example.test": [mx]}))
        ...  # resolve against server.host, server.port
        server.update(new_zone)  # rewritten, SIGHUP, confirmed by the server before returning

For a server shared by a whole module, use :class:`DnsServerProcess` as a context manager
in a module-scoped fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lab.dns_process import REPO_ROOT, DnsServerError, DnsServerProcess
from lab.zones import ZoneData

__all__ = ["REPO_ROOT", "DnsServerError", "DnsServerProcess", "DnsServers", "dns_server"]


class DnsServers:
    """What the ``dns_server`` fixture yields: call it to start a server for a zone."""

    def __init__(self) -> None:
        self.started: list[DnsServerProcess] = []

    def __call__(self, zone: ZoneData, **options: Any) -> DnsServerProcess:
        server = DnsServerProcess(zone, **options)
        self.started.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in reversed(self.started):
            server.stop()


@pytest.fixture
def dns_server() -> Iterator[DnsServers]:
    """Start DNS server processes for this test; all stopped at teardown."""
    servers = DnsServers()
    try:
        yield servers
    finally:
        servers.stop_all()
