"""The open SPF test suite (RFC 7208, openspf.org 2014.04) through :func:`probes.spf.evaluate`.

Each section's ``zonedata`` is served by its own real DNS server process
(:func:`lab.spf_suite.zone_from_spf_suite`; a ``TIMEOUT`` name never answers); every case
runs pyspf with all lookups made by our resolver, and must give one of its expected
results (and, for ``fail``, the expected explanation). The servers start together, in
threads, when the module's first case needs them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from deliver.dns import Resolver
from lab.spf_suite import zone_from_spf_suite
from probes.spf import evaluate
from tests.servers.dns import DnsServerProcess

yaml = pytest.importorskip("yaml")

SUITE = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "spf" / "rfc7208-tests.yml"
#: short, so the cases whose names never answer take half a second each
TIMEOUT = 0.5


def _sections() -> list[dict[str, Any]]:
    if not SUITE.exists():
        return []
    with SUITE.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


SECTIONS = _sections()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


CASES = [
    pytest.param(index, name, id=f"{_slug(section['description'])}/{name}")
    for index, section in enumerate(SECTIONS)
    for name in section["tests"]
]


@pytest.fixture(scope="module")
def servers() -> Iterator[Mapping[int, DnsServerProcess]]:
    """One DNS server per section, started in parallel; all stopped after the module."""
    processes = {i: DnsServerProcess(zone_from_spf_suite(s["zonedata"]))
                 for i, s in enumerate(SECTIONS)}  # fmt: skip
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(DnsServerProcess.start, processes.values()))
        yield processes
    finally:
        for process in processes.values():
            process.stop()


def test_suite_is_complete() -> None:
    if not SECTIONS:
        pytest.skip(f"the SPF test suite is not at {SUITE}")
    assert len(CASES) == 203


@pytest.mark.parametrize(("section", "name"), CASES)
def test_case(servers: Mapping[int, DnsServerProcess], section: int, name: str) -> None:
    case = SECTIONS[section]["tests"][name]
    resolver = Resolver([servers[section].nameserver], timeout=TIMEOUT)
    got = asyncio.run(
        evaluate(resolver, case["host"], case.get("mailfrom", ""), case.get("helo", ""))
    )
    expected = case["result"] if isinstance(case["result"], list) else [case["result"]]
    assert got.result in expected, f"{case.get('description', '')} ({case.get('spec')})"
    explanation = case.get("explanation")
    if got.result == "fail" and explanation not in (None, "DEFAULT"):
        assert got.explanation == explanation
