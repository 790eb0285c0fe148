"""OpenDKIM's verifier (``opendkim-testmsg``) against keys served by a real DNS server.

``opendkim-testmsg`` looks keys up through the system resolver, and resolv.conf
cannot name a port: so the lab DNS server listens on port 53 of a private loopback
address, and the verifier runs in its own mount namespace where /etc/resolv.conf
is a bind mount naming that address. Needs root (port 53, ``unshare``), as CI has.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.zones import ZoneData
from tests.servers.dns import DnsServerProcess
from tests.servers.ports import in_ci, require_program

__all__ = ["OpenDkimVerifier", "opendkim_verifier"]


@dataclass(frozen=True)
class Verdict:
    returncode: int
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class OpenDkimVerifier:
    def __init__(self, zone: ZoneData) -> None:
        self.testmsg = require_program("/usr/sbin/opendkim-testmsg", "opendkim-tools")
        self.unshare = require_program("unshare", "util-linux")
        if os.geteuid() != 0:
            message = "opendkim-testmsg needs root here (DNS on port 53, a private resolv.conf)"
            if in_ci():
                pytest.fail(message)
            pytest.skip(message)
        address = f"127.{random.randint(64, 127)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.dns = DnsServerProcess(zone, host=address, port=53)
        self._dir = Path(tempfile.mkdtemp(prefix="opendkim-"))
        self.resolv = self._dir / "resolv.conf"
        self.resolv.write_text(f"nameserver {address}\noptions timeout:2 attempts:1\n")

    def __enter__(self) -> OpenDkimVerifier:
        self.dns.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.dns.stop()
        for f in self._dir.iterdir():
            f.unlink()
        self._dir.rmdir()

    def verify(self, message: bytes) -> Verdict:
        script = f"mount --bind {self.resolv} /etc/resolv.conf && exec {self.testmsg}"
        result = subprocess.run(
            [self.unshare, "--mount", "sh", "-c", script],
            input=message,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return Verdict(result.returncode, result.stderr.decode(errors="replace").strip())


@pytest.fixture
def opendkim_verifier() -> Iterator[type[OpenDkimVerifier]]:
    yield OpenDkimVerifier
